"""Exports: declare what an ``export_data`` job may export, and which filters it accepts.

::

    register_export(
        "users",
        queryset=lambda: User.objects.all(),
        fields=["id", "email", "date_joined"],
        filters={"created_after": "date_joined__gte"},
        scope=lambda queryset, ctx: queryset.filter(
            organization_id=ctx.metadata["organization_id"]
        ),
    )

Only the declared filters are accepted, each mapped to one ORM lookup, so a caller can never
filter on a column the export does not offer (a password hash, say). Filter values are checked
against the model field (its type, and for equality its choices and validators) and by the ORM
itself (a value behind a transform, ``date_joined__year``) when the job is enqueued.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time
from typing import TYPE_CHECKING, Any

from django.core.exceptions import FieldDoesNotExist, FieldError
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import models
from django.db.models import QuerySet
from django.utils import timezone
from django.utils.dateparse import parse_date, parse_datetime

from django_qstash_jobs import storable
from django_qstash_jobs.naming import snake_case

if TYPE_CHECKING:
    from django_qstash_jobs.context import JobContext

QuerySetSource = QuerySet[Any] | Callable[[], QuerySet[Any]]
#: Limits a queryset to what the job's requester may see: ``scope(queryset, ctx)``.
Scope = Callable[[QuerySet[Any], "JobContext"], QuerySet[Any]]


@dataclass(frozen=True)
class ExportDefinition:
    """One registered export."""

    name: str
    #: A queryset, or a function returning one (evaluated when the job runs).
    queryset: QuerySetSource
    #: The exported columns: field names or lookups (``"organization__name"``), in order.
    fields: tuple[str, ...]
    #: Public filter name -> ORM lookup (``{"created_after": "date_joined__gte"}``).
    filters: Mapping[str, str] = field(default_factory=dict)
    #: Applied to every run of the export, e.g. to keep an organisation's rows only.
    scope: Scope | None = None
    #: Rows fetched from the database at a time.
    chunk_size: int = 2000

    def get_queryset(self) -> QuerySet[Any]:
        """A fresh queryset, ordered so that the file's rows come in a stable order."""
        source = self.queryset
        queryset = source() if callable(source) else source.all()
        if not queryset.ordered:
            queryset = queryset.order_by("pk")
        return queryset

    def lookups(self, filters: Mapping[str, Any]) -> dict[str, Any]:
        """Turn the payload's filters into ORM lookups with values of the right type.

        Raises ``ValueError`` for a filter that is not declared or a value its field refuses.
        Filter names may be camelCase (``createdAfter``).
        """
        return {lookup: value for _, lookup, value in self._resolve(filters)}

    def check_filters(self, filters: Mapping[str, Any]) -> None:
        """Refuse what :meth:`lookups` refuses, and any value the ORM would refuse at run time.

        Each lookup is built into a filter (which runs no query): that is where the ORM prepares
        a value behind a transform (an integer for ``date_joined__year``), the only check such
        a value gets. ``ValueError`` names the filter.
        """
        queryset = self.get_queryset()
        for given_name, lookup, value in self._resolve(filters):
            try:
                queryset.filter(**{lookup: value})
            except FieldError as exc:
                # The export's own mistake, but the job could never run: refused all the same.
                raise ValueError(
                    f"filter {given_name!r}: the export's lookup {lookup!r} is invalid: {exc}"
                ) from None
            except (DjangoValidationError, ValueError, TypeError) as exc:
                raise _filter_error(given_name, exc) from None

    def _resolve(self, filters: Mapping[str, Any]) -> Iterator[tuple[str, str, Any]]:
        """Each filter as given, its lookup, and its value converted for that lookup."""
        model = self.get_queryset().model
        for given_name, given_value in filters.items():
            lookup = self._lookup_of(given_name)
            try:
                value = _coerce(model, lookup, given_value)
            except (DjangoValidationError, ValueError, TypeError) as exc:
                raise _filter_error(given_name, exc) from None
            yield given_name, lookup, value

    def _lookup_of(self, given_name: str) -> str:
        try:
            return self.filters[snake_case(given_name)]
        except KeyError:
            allowed = ", ".join(sorted(self.filters)) or "none"
            raise ValueError(
                f"unknown filter {given_name!r} for export {self.name!r}; "
                f"allowed filters: {allowed}"
            ) from None


def _filter_error(given_name: str, exc: Exception) -> ValueError:
    detail = "; ".join(exc.messages) if isinstance(exc, DjangoValidationError) else exc
    return ValueError(f"filter {given_name!r}: {detail}")


def _walk(
    model: type[models.Model], path: str
) -> tuple[models.Field[Any, Any] | None, list[str]] | None:
    """Follow ``path`` through relations: the last field named and the parts after it.

    None when the path crosses a reverse relation (left to the database to check).
    """
    parts = path.split("__")
    current: type[models.Model] | None = model
    target: models.Field[Any, Any] | None = None
    for index, part in enumerate(parts):
        if current is None:
            return target, parts[index:]
        try:
            found = current._meta.get_field(part)
        except FieldDoesNotExist:
            return target, parts[index:]
        if not isinstance(found, models.Field):
            return None
        target = found
        related = found.related_model if found.is_relation else None
        current = related if isinstance(related, type) else None
    return target, []


def _concrete(field: models.Field[Any, Any]) -> models.Field[Any, Any]:
    # A foreign key holds (and compares with) the value of the field it points to.
    return field.target_field if isinstance(field, models.ForeignKey) else field


def field_for(model: type[models.Model], path: str) -> models.Field[Any, Any] | None:
    """The model field ``path`` (``"organization__name"``) ends on, or None (an annotation)."""
    walked = _walk(model, path)
    if walked is None or walked[0] is None or walked[1]:
        return None
    return _concrete(walked[0])


def _coerce(model: type[models.Model], lookup: str, value: Any) -> Any:
    """Convert a JSON value to what ``lookup`` compares with, checking it on the way."""
    target, lookup_name = _field_and_lookup(model, lookup)
    if target is None:
        return value
    if lookup_name == "isnull":
        if not isinstance(value, bool):
            raise ValueError("must be true or false")
        return value
    if lookup_name in ("in", "range"):
        if not isinstance(value, list):
            raise ValueError("must be a list")
        if lookup_name == "range" and len(value) != 2:
            raise ValueError("must be a list of two values")
        items = [_coerce_value(target, item) for item in value]
        if lookup_name == "in":
            for item in items:
                _check_against_field(target, item)
        return items
    coerced = _coerce_value(target, value)
    if lookup_name == "exact":
        _check_against_field(target, coerced)
    return coerced


def _field_and_lookup(
    model: type[models.Model], lookup: str
) -> tuple[models.Field[Any, Any] | None, str]:
    walked = _walk(model, lookup)
    if walked is None:
        return None, ""
    target, rest = walked
    if target is None:
        raise ValueError(f"the lookup {lookup!r} does not name a field of {model.__name__}")
    if len(rest) > 1 or (rest and target.get_lookup(rest[0]) is None):
        return None, ""  # Behind a transform (``__year``...): the database is the judge.
    return _concrete(target), rest[0] if rest else "exact"


def _check_against_field(target: models.Field[Any, Any], value: Any) -> None:
    """Refuse a value the field could never hold: not one of its choices, or refused by a validator.

    Only for equality (``exact``, ``in``): a bound (``gte``) or a part (``contains``) of a valid
    value need not be valid itself. Such a value would only ever give an empty export.
    """
    if target.choices is not None:
        allowed = [choice for choice, _ in target.flatchoices]
        if value not in allowed:
            listed = ", ".join(str(choice) for choice in allowed)
            raise ValueError(f"{value!r} is not one of: {listed}")
    target.run_validators(value)


def _coerce_value(target: models.Field[Any, Any], value: Any) -> Any:
    if value is None:
        raise ValueError("must not be null; use an __isnull filter")
    if isinstance(target, models.DateTimeField):
        return _aware_datetime(value)
    if isinstance(target, models.DateField):
        parsed_date = parse_date(value) if isinstance(value, str) else None
        if parsed_date is None:
            raise ValueError(f"{value!r} is not a date (YYYY-MM-DD)")
        return parsed_date
    return target.to_python(value)


def _aware_datetime(value: Any) -> datetime:
    # A bare date means its midnight in the current time zone: "created after 2025-01-01".
    if not isinstance(value, str):
        raise ValueError(f"{value!r} is not a date or date-time")
    moment = parse_datetime(value)
    if moment is None:
        day: date | None = parse_date(value)
        if day is None:
            raise ValueError(f"{value!r} is not a date or date-time (ISO 8601)")
        moment = datetime.combine(day, time.min)
    if timezone.is_naive(moment):
        moment = timezone.make_aware(moment)
    return storable.moment(moment, repr(value))


class ExportRegistry:
    """Export definitions by name."""

    def __init__(self) -> None:
        self._definitions: dict[str, ExportDefinition] = {}
        self._lock = threading.Lock()

    def register(self, definition: ExportDefinition, *, replace: bool = False) -> None:
        with self._lock:
            if definition.name in self._definitions and not replace:
                raise ValueError(
                    f"Export {definition.name!r} is already registered; "
                    "pass replace=True to register_export to replace it."
                )
            self._definitions[definition.name] = definition

    def get(self, name: str) -> ExportDefinition:
        """The export named ``name``; ``KeyError`` with the known names if there is none."""
        try:
            return self._definitions[name]
        except KeyError:
            known = ", ".join(sorted(self._definitions)) or "none"
            raise KeyError(f"unknown export {name!r}; registered exports: {known}") from None

    def unregister(self, name: str) -> None:
        with self._lock:
            self._definitions.pop(name, None)


#: The process-wide export registry.
export_registry = ExportRegistry()


def register_export(
    name: str,
    *,
    queryset: QuerySetSource,
    fields: Sequence[str],
    filters: Mapping[str, str] | None = None,
    scope: Scope | None = None,
    chunk_size: int = 2000,
    replace: bool = False,
) -> ExportDefinition:
    """Declare export ``name`` (the payload's ``entity_type``) and return its definition.

    ``filters`` maps each filter a caller may pass to the ORM lookup it becomes; nothing else is
    accepted. ``scope(queryset, ctx)`` narrows every run, e.g. to the organisation in the job's
    metadata. Registering a name again needs ``replace=True``.
    """
    if not isinstance(name, str) or not name:
        raise ValueError("register_export needs a non-empty export name.")
    if isinstance(fields, str) or not fields:
        raise ValueError(f"Export {name!r} needs a non-empty list of fields.")
    if chunk_size < 1:
        raise ValueError(f"chunk_size of export {name!r} must be positive.")
    definition = ExportDefinition(
        name=name,
        queryset=queryset,
        fields=tuple(fields),
        filters=dict(filters or {}),
        scope=scope,
        chunk_size=chunk_size,
    )
    export_registry.register(definition, replace=replace)
    return definition
