"""Reports: register a function that gathers a report's data; ``generate_report`` renders it.

A report function receives the job's payload (``report_type``, ``start_date``, ``end_date``,
``format``) and its :class:`~django_qstash_jobs.JobContext`, and returns a :class:`Report`. The
``generate_report`` job renders it as HTML (a Django template), PDF (that HTML through WeasyPrint)
or CSV (its table), and writes the file to ``QSTASH_JOBS["STORAGE"]``::

    @register_report("signups")
    def signups(payload, ctx):
        rows = [...]
        return Report(title="Sign-ups", columns=["day", "count"], rows=rows)
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time
from typing import TYPE_CHECKING, Any, TypeVar

from django.utils import timezone

from django_qstash_jobs import storable
from django_qstash_jobs.registry import qualified_name, same_function

if TYPE_CHECKING:
    from django_qstash_jobs.context import JobContext
    from django_qstash_jobs.jobs.schemas import GenerateReportPayload

#: The template of reports that name none: a title, the date range and the table.
DEFAULT_TEMPLATE = "django_qstash_jobs/reports/report.html"


@dataclass
class Report:
    """What a report function returns."""

    title: str
    #: Column headings of the table: the CSV format, and the default template's table.
    columns: Sequence[str]
    rows: Sequence[Sequence[Any]]
    #: The HTML (and PDF) template; it receives ``report``, ``payload`` and ``context``'s keys.
    template_name: str = DEFAULT_TEMPLATE
    #: Extra template context (charts, summaries...).
    context: dict[str, Any] = field(default_factory=dict)


def local_midnight(day: date) -> datetime:
    """The start of ``day`` in the current time zone.

    ``ValueError`` when that moment has no UTC equivalent (0001-01-01 east of UTC): the database
    compares in UTC, and a report from it would fail the same way on every attempt.
    """
    midnight = timezone.make_aware(datetime.combine(day, time.min))
    return storable.moment(midnight, f"midnight of {day.isoformat()}")


ReportFunction = Callable[["GenerateReportPayload", "JobContext"], Report]
F = TypeVar("F", bound=ReportFunction)


class ReportRegistry:
    """Report functions by name."""

    def __init__(self) -> None:
        self._functions: dict[str, ReportFunction] = {}
        self._lock = threading.Lock()

    def register(self, name: str, function: ReportFunction, *, replace: bool = False) -> None:
        with self._lock:
            existing = self._functions.get(name)
            # The same function imported twice (autoreload) is the same report, not a conflict.
            if existing is not None and not replace and not same_function(existing, function):
                raise ValueError(
                    f"Report {name!r} is already registered to {qualified_name(existing)}; "
                    "pass replace=True to register_report to replace it."
                )
            self._functions[name] = function

    def get(self, name: str) -> ReportFunction:
        """The function of report ``name``; ``KeyError`` with the known names if there is none."""
        try:
            return self._functions[name]
        except KeyError:
            known = ", ".join(sorted(self._functions)) or "none"
            raise KeyError(f"unknown report {name!r}; registered reports: {known}") from None

    def unregister(self, name: str) -> None:
        with self._lock:
            self._functions.pop(name, None)

    def __contains__(self, name: object) -> bool:
        return name in self._functions


#: The process-wide report registry.
report_registry = ReportRegistry()


def register_report(name: str, *, replace: bool = False) -> Callable[[F], F]:
    """Register the decorated function as report ``name`` (the payload's ``report_type``)."""
    if not isinstance(name, str) or not name:
        raise ValueError("register_report needs a non-empty report name.")

    def decorator(function: F) -> F:
        report_registry.register(name, function, replace=replace)
        return function

    return decorator
