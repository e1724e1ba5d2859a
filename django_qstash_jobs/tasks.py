"""A backend for Django's Tasks framework that runs tasks through QStash.

``TASKS = {"default": {"BACKEND": "django_qstash_jobs.tasks.QStashBackend"}}`` makes every
``@task`` function a ``django_task`` job: recorded as a ``JobExecution``, published through the
same outbox and transport, run by the receiver, and read back as a ``TaskResult``.

Needs Django 6.0+ or, on Django 5.2, the ``django-tasks`` backport; without either, importing this
module raises ``ImportError`` saying so.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.apps import apps
from django.core.checks import CheckMessage, Error
from django.core.exceptions import ImproperlyConfigured
from django.utils import timezone
from django.utils.module_loading import import_string
from pydantic import ValidationError

if not apps.is_installed("django_qstash_jobs"):
    # The models imported below would fail with a RuntimeError that does not say this.
    raise ImproperlyConfigured(
        "django_qstash_jobs.tasks.QStashBackend records tasks as jobs: add "
        '"django_qstash_jobs" to INSTALLED_APPS.'
    )

from django_qstash_jobs import outbox, signals, statements, storable
from django_qstash_jobs.conf import get_config
from django_qstash_jobs.dispatcher import job_dispatcher
from django_qstash_jobs.exceptions import PermanentJobError
from django_qstash_jobs.models import JobExecution
from django_qstash_jobs.options import OPTION_KEYS, check_keys, parse_options
from django_qstash_jobs.task_jobs import (
    DJANGO_TASK,
    BaseTaskBackend,
    InvalidTask,
    Task,
    TaskCancelled,
    TaskPayload,
    TaskResult,
    TaskResultDoesNotExist,
    normalize_json,
    send_task_signal,
    task_enqueued,
    task_result,
)

__all__ = ["QStashBackend", "QStashTask", "TaskCancelled"]

#: What a backend's ``OPTIONS`` may set: the enqueue options, except ``delay``, which a task
#: gets from its ``run_after``.
BACKEND_OPTION_KEYS = OPTION_KEYS - {"delay"}


@dataclass(frozen=True, slots=True, kw_only=True)
class QStashTask(Task):
    """A ``Task`` with its own QStash retry count: ``@task(retries=5)`` with ``QStashBackend``."""

    #: Retries after the first attempt. ``None``: the backend's ``OPTIONS["retries"]``, else
    #: ``QSTASH_JOBS["DEFAULT_RETRIES"]``.
    retries: int | None = None


class QStashBackend(BaseTaskBackend):
    """Enqueues tasks as ``django_task`` jobs published to QStash; results are their rows."""

    # Django's task() decorator builds the backend's task_class with any extra keyword
    # arguments, which is how @task(retries=...) reaches QStashTask.
    task_class = QStashTask
    supports_defer = True
    supports_async_task = True
    supports_get_result = True
    # QStash delivers in its own order; there is no priority to honour.
    supports_priority = False
    # aenqueue and the base class's: enqueue in a thread, since publishing is blocking I/O.

    def validate_task(self, task: Task) -> None:
        """Django's checks, and a retry count QStash accepts."""
        super().validate_task(task)
        retries = getattr(task, "retries", None)
        if retries is not None:
            try:
                parse_options({"retries": retries})
            except ValueError as exc:
                raise InvalidTask(f"Invalid retries {retries!r} for {task.name}: {exc}") from exc

    def enqueue(self, task: Task, args: Any, kwargs: Any) -> TaskResult:
        """Record the task as a job and publish it; return its result, ``READY``.

        Inside ``transaction.atomic()`` the publish waits for the commit, as for any job;
        outside, a failed publish raises ``EnqueueError`` and the row waits for
        ``republish_jobs``. Arguments that do not survive a JSON round trip raise ``TypeError``,
        and nothing is recorded.
        """
        self.validate_task(task)
        # Not in validate_task, which Task runs as it is made: its module is still importing.
        _check_importable(task)
        payload = TaskPayload(
            task=task.module_path,
            args=_json_arguments(args, "args"),
            kwargs=_json_arguments(kwargs, "kwargs"),
            backend=task.backend,
            queue_name=task.queue_name,
            run_after=task.run_after,
        )
        execution = job_dispatcher._prepare(DJANGO_TASK, payload, None, self._options_for(task))
        statements.insert(execution)
        result = task_result(execution, task)
        signals.send_lifecycle(signals.job_enqueued, execution)
        # Before the publish: the immediate transport runs the task inside it, and Django's
        # backends send task_enqueued before task_started.
        send_task_signal(task_enqueued, task, result)
        outbox.publish_on_commit([execution])
        return result

    def get_result(self, result_id: str) -> TaskResult:
        """The task's result, read from its row; ``TaskResultDoesNotExist`` for an unknown id."""
        execution = JobExecution.objects.filter(job_id=result_id, job_type=DJANGO_TASK).first()
        return _result_of(result_id, execution)

    async def aget_result(self, result_id: str) -> TaskResult:
        """See :meth:`get_result`."""
        execution = await JobExecution.objects.filter(
            job_id=result_id, job_type=DJANGO_TASK
        ).afirst()
        return _result_of(result_id, execution)

    def check(self, **kwargs: Any) -> list[CheckMessage]:
        """What this backend needs to publish: valid ``OPTIONS``, a QStash destination."""
        where = f"Task backend {self.alias!r}"
        # Without the app installed this module cannot be imported (see above): no check here.
        messages: list[CheckMessage] = []
        try:
            config = get_config()
        except ImproperlyConfigured:
            return messages  # QSTASH_JOBS is no dict: the app's own check (E019) says so
        try:
            options = self._options
        except ImproperlyConfigured as exc:
            messages.append(Error(str(exc), id="django_qstash_jobs.tasks.E002"))
        else:
            if options.get("callback") and options["callback"] == config.receiver_url:
                messages.append(
                    Error(
                        f"{where}: OPTIONS['callback'] is RECEIVER_URL, which every enqueue "
                        "refuses (the receiver records every attempt already).",
                        hint="Point callback at a view of your own, or leave it out.",
                        id="django_qstash_jobs.tasks.E002",
                    )
                )
        if config.transport == "qstash" and not config.receiver_url:
            messages.append(
                Error(
                    f"{where} cannot publish tasks: QSTASH_JOBS['RECEIVER_URL'] is not set.",
                    hint="Set it (or QSTASH_RECEIVER_URL) to the absolute URL of the "
                    "'django_qstash_jobs:receive' view, e.g. https://example.com/jobs/receive/.",
                    id="django_qstash_jobs.tasks.E003",
                )
            )
        if config.transport == "qstash" and not config.token:
            messages.append(
                Error(
                    f"{where} cannot publish tasks: there is no QStash token.",
                    hint="Set QSTASH_JOBS['TOKEN'] or the QSTASH_TOKEN environment variable.",
                    id="django_qstash_jobs.tasks.E004",
                )
            )
        return messages

    @functools.cached_property
    def _options(self) -> dict[str, Any]:
        """The backend's ``OPTIONS``, checked; ``ImproperlyConfigured`` names what is wrong.

        Checked once: they are fixed for the backend's life (a failed check is not kept).
        """
        what = f"TASKS[{self.alias!r}]['OPTIONS']"
        try:
            options = dict(self.options)
            check_keys(options, BACKEND_OPTION_KEYS, what)
            parse_options(options)
        except (TypeError, ValueError) as exc:
            raise ImproperlyConfigured(f"{what} is invalid: {exc}") from exc
        return options

    def _options_for(self, task: Task) -> dict[str, Any]:
        """The enqueue options of one task: the backend's, its retries, its run_after."""
        options = dict(self._options)
        retries = getattr(task, "retries", None)
        if retries is not None:
            options["retries"] = retries
        if task.run_after is not None:
            # A delay from now: QStash waits at least this long (rounded up to a second).
            # Aware, the run_after is compared with an aware now, even where USE_TZ is off.
            now = (
                datetime.now(tz=task.run_after.tzinfo)
                if timezone.is_aware(task.run_after)
                else timezone.now()
            )
            delay = task.run_after - now
            if delay > timedelta(0):
                options["delay"] = delay
        return options


def _json_arguments(values: Any, name: str) -> Any:
    """``values`` as JSON gives them back, or ``TypeError``: the task gets them from JSON."""
    try:
        normalized = normalize_json(values)
        round_trip = json.loads(json.dumps(normalized, allow_nan=False))
        storable.json_value(round_trip)  # NUL characters, lone surrogates
    except (TypeError, ValueError) as exc:
        raise TypeError(f"Task {name} must be JSON-serialisable: {exc}") from exc
    if round_trip != normalized:
        # Normalised but not round-trippable: a dict with non-str keys comes back with str keys.
        raise TypeError(f"Task {name} must survive JSON unchanged (dict keys must be str).")
    return round_trip


def _check_importable(task: Task) -> None:
    """``InvalidTask`` unless the receiver will find this very task at its ``module_path``.

    The row stores the path, and the receiver imports it: a task held under another name than
    its function's (``process = task(_process)``) would be recorded, then fail every delivery.
    """
    try:
        found = import_string(task.module_path)
    except ImportError:
        found = None
    if not isinstance(found, Task) or found.func is not task.func:
        raise InvalidTask(
            f"{task.module_path} is not this task, so QStashBackend could not run it: define "
            "the task with @task on a module-level function, under the function's own name."
        )


def _result_of(result_id: str, execution: JobExecution | None) -> TaskResult:
    if execution is None:
        raise TaskResultDoesNotExist(result_id)
    try:
        return task_result(execution)
    except (PermanentJobError, ValidationError) as exc:
        # A django_task row whose path is not (or no longer) a task has no TaskResult.
        raise TaskResultDoesNotExist(f"{result_id}: {exc}") from exc
