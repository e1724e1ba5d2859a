"""The job type registry: names, payload schemas, handlers and retry defaults.

Handlers are registered with :func:`register_job`, in an app's ``jobs.py`` (discovered at start-up
like ``admin.py``) or anywhere that is imported before jobs run.
"""

from __future__ import annotations

import inspect
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, TypeVar

from pydantic import BaseModel, ValidationError

from django_qstash_jobs import storable
from django_qstash_jobs.conf import get_config
from django_qstash_jobs.exceptions import JobValidationError, UnknownJobTypeError
from django_qstash_jobs.options import MAX_RETRIES

if TYPE_CHECKING:
    from django_qstash_jobs.context import JobContext

Handler = Callable[[Any, "JobContext"], Any]
H = TypeVar("H", bound=Handler)


class _JobTypeNames:
    """The names of the built-in job types, as attributes (``JOB_TYPES.SEND_EMAIL``)."""

    SEND_EMAIL: Final = "send_email"
    SEND_BATCH_EMAILS: Final = "send_batch_emails"
    PROCESS_WEBHOOK: Final = "process_webhook"
    PROCESS_STRIPE_WEBHOOK: Final = "process_stripe_webhook"
    GENERATE_REPORT: Final = "generate_report"
    EXPORT_DATA: Final = "export_data"
    CLEANUP_OLD_DATA: Final = "cleanup_old_data"

    def __iter__(self) -> Iterator[str]:
        return iter(value for name, value in vars(type(self)).items() if name.isupper())


JOB_TYPES: Final = _JobTypeNames()


@dataclass(frozen=True)
class JobType:
    """A registered job type."""

    name: str
    handler: Handler
    #: The pydantic model the payload must match; ``None`` accepts any JSON object.
    schema: type[BaseModel] | None
    #: Retries after the first attempt; ``None`` means ``QSTASH_JOBS["DEFAULT_RETRIES"]``.
    retries: int | None

    @property
    def max_retries(self) -> int:
        """Retries after the first attempt, the project's default filled in."""
        return get_config().default_retries if self.retries is None else self.retries

    def validate(self, payload: Any) -> Any:
        """Return the payload as the handler receives it, or raise :class:`JobValidationError`."""
        if self.schema is None:
            if not isinstance(payload, Mapping):
                raise JobValidationError(
                    f"The payload of job type {self.name!r} must be a dict, "
                    f"not {type(payload).__name__}.",
                    errors=[{"field": "", "message": "must be a dict", "type": "dict_type"}],
                )
            return dict(payload)
        if isinstance(payload, self.schema):
            return payload
        try:
            return self.schema.model_validate(payload)
        except ValidationError as exc:
            raise _validation_error(self.name, exc) from None

    def serialize(self, payload: Any) -> dict[str, Any]:
        """Validate and return the payload as the JSON stored on the row."""
        validated = self.validate(payload)
        if isinstance(validated, BaseModel):
            validated = validated.model_dump(mode="json")
        try:
            stored: dict[str, Any] = storable.json_value(dict(validated))
        except storable.NotStorable as exc:
            raise JobValidationError(
                f"The payload of job type {self.name!r} cannot be stored: {exc}. Use dicts, "
                "lists, strings, numbers (not NaN or Infinity), booleans and None.",
                errors=[{"field": "", "message": str(exc), "type": "json_type"}],
            ) from None
        return stored


def _validation_error(job_type: str, exc: ValidationError) -> JobValidationError:
    errors = [
        {
            "field": ".".join(str(part) for part in error["loc"]),
            "message": error["msg"],
            "type": error["type"],
        }
        for error in exc.errors(include_url=False)
    ]
    described = "; ".join(
        f"{error['field'] or '(payload)'}: {error['message']}" for error in errors
    )
    return JobValidationError(
        f"Invalid payload for job type {job_type!r}: {described}", errors=errors
    )


class JobRegistry:
    """Job types by name. Thread-safe to read; written at start-up."""

    def __init__(self) -> None:
        self._types: dict[str, JobType] = {}
        self._lock = threading.Lock()

    def register(self, job_type: JobType, *, replace: bool = False) -> None:
        with self._lock:
            existing = self._types.get(job_type.name)
            if (
                existing is not None
                and not replace
                and not same_function(existing.handler, job_type.handler)
            ):
                raise ValueError(
                    f"Job type {job_type.name!r} is already registered to "
                    f"{qualified_name(existing.handler)}; pass replace=True to register_job "
                    f"to replace it with {qualified_name(job_type.handler)}."
                )
            self._types[job_type.name] = job_type

    def get(self, name: str) -> JobType:
        try:
            return self._types[name]
        except KeyError:
            known = ", ".join(sorted(self._types)) or "none"
            raise UnknownJobTypeError(
                f"Unknown job type {name!r}. Registered job types: {known}. "
                "Register it with @register_job in an installed app's jobs.py."
            ) from None

    def max_retries(self, name: str) -> int:
        """The job type's retries, or the project's default for a type not registered (any more).

        Jobs of such a type are still recorded, and fail visibly when they run.
        """
        job_type = self._types.get(name)
        if job_type is None:
            return get_config().default_retries
        return job_type.max_retries

    def unregister(self, name: str) -> None:
        with self._lock:
            self._types.pop(name, None)

    def __contains__(self, name: object) -> bool:
        return name in self._types

    def __iter__(self) -> Iterator[JobType]:
        return iter(sorted(self._types.values(), key=lambda job_type: job_type.name))


def qualified_name(function: Callable[..., Any]) -> str:
    """``module.QualifiedName`` of a function or class: how handlers are named and compared."""
    return f"{function.__module__}.{getattr(function, '__qualname__', repr(function))}"


def same_function(a: Callable[..., Any], b: Callable[..., Any]) -> bool:
    # A module imported twice (autoreload, a test re-importing jobs.py) registers a new function
    # object defined at the same place; that is the same handler, not a conflict.
    return a is b or function_identity(a) == function_identity(b)


def function_identity(function: object, *, depth: int = 0) -> str:
    """What tells one registered function from another, stable when its module runs again.

    A function is known by where it is defined, since every lambda has the same name (and a
    decorator without ``functools.wraps`` gives all its wrappers one). A bound method is known
    by its instance too, and a closure by what it captured: a factory's ``make("slack")`` and
    ``make("audit")`` share their code. A captured function (the one a decorator wraps) is known
    the same way, and a captured object whose repr holds its address by its type: both change
    at every import. (An instance's id only has to hold within the process.)
    """
    code = getattr(function, "__code__", None)
    if code is None:
        return _stable_repr(function)
    bound_to = f":{id(function.__self__)}" if inspect.ismethod(function) else ""
    captured = []
    for cell in getattr(function, "__closure__", None) or ():
        try:
            value = cell.cell_contents
        except ValueError:  # a cell not filled yet
            captured.append("<empty>")
            continue
        if getattr(value, "__code__", None) is not None and depth < _MAX_CAPTURE_DEPTH:
            captured.append(function_identity(value, depth=depth + 1))
        else:
            captured.append(_stable_repr(value))
    name = getattr(function, "__qualname__", "")
    return f"{code.co_filename}:{code.co_firstlineno}:{name}{bound_to}:{captured}"


#: How deep captured functions are followed: a decorator's wrapper, and the function it wraps.
_MAX_CAPTURE_DEPTH = 3


def _stable_repr(value: object) -> str:
    text = repr(value)
    # object.__repr__'s "<... at 0x7f...>": the address differs at every import.
    return f"<{type(value).__module__}.{type(value).__qualname__}>" if " at 0x" in text else text


#: The process-wide registry.
registry = JobRegistry()


def register_job(
    name: str,
    *,
    schema: type[BaseModel] | None = None,
    retries: int | None = None,
    replace: bool = False,
) -> Callable[[H], H]:
    """Register the decorated function as the handler of job type ``name``.

    The handler is called as ``handler(payload, ctx)``: ``payload`` is an instance of ``schema``
    (or a dict when there is no schema) and ``ctx`` a :class:`~django_qstash_jobs.JobContext`.
    Its return value must be JSON-serialisable; it is stored as the job's result.
    """
    if not isinstance(name, str) or not name:
        raise ValueError("register_job needs a non-empty job type name.")
    if schema is not None and not (isinstance(schema, type) and issubclass(schema, BaseModel)):
        raise TypeError(f"schema for job type {name!r} must be a pydantic BaseModel subclass.")
    # QStash refuses more retries than MAX_RETRIES: every publish of the type would fail.
    if retries is not None and (not isinstance(retries, int) or not 0 <= retries <= MAX_RETRIES):
        raise ValueError(
            f"retries for job type {name!r} must be an integer from 0 to {MAX_RETRIES}, "
            f"not {retries!r}."
        )

    def decorator(handler: H) -> H:
        if inspect.iscoroutinefunction(handler):
            # Called without an event loop, it would return a coroutine that never runs.
            raise TypeError(
                f"The handler of job type {name!r} ({qualified_name(handler)}) is a coroutine "
                "function; handlers run synchronously: make it a plain def (wrap async code in "
                "asgiref.sync.async_to_sync)."
            )
        registry.register(
            JobType(name=name, handler=handler, schema=schema, retries=retries), replace=replace
        )
        return handler

    return decorator
