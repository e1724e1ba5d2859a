"""The ``django_task`` job type: a task of Django's Tasks framework, run when QStash delivers it.

:class:`~django_qstash_jobs.tasks.QStashBackend` records each task as a ``JobExecution`` of this
type, and the receiver runs it like any job. The row's columns give most of Django's
``TaskResult``; its ``result`` adds the rest (:class:`TaskRecord`): the return value, the error of
each failed attempt and the worker of each attempt.

Importing this module registers the job type. It needs Django 6.0+ (``django.tasks``) or, on
Django 5.2, the ``django-tasks`` backport; the app's ``ready()`` imports it only when one is there.
"""

from __future__ import annotations

import os
import socket
import traceback
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from django.core.exceptions import ImproperlyConfigured
from django.dispatch import Signal
from django.utils.dateparse import parse_datetime
from django.utils.module_loading import import_string
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from django_qstash_jobs import signals, statements, storable
from django_qstash_jobs.context import JobContext
from django_qstash_jobs.exceptions import PermanentJobError
from django_qstash_jobs.models import JobExecution, JobStatus
from django_qstash_jobs.registry import qualified_name, register_job

if TYPE_CHECKING:
    # Type-checked against Django 6's own framework; the backport has the same names and API.
    from django.tasks import (
        DEFAULT_TASK_BACKEND_ALIAS,
        DEFAULT_TASK_QUEUE_NAME,
        Task,
        TaskContext,
        TaskResult,
        TaskResultStatus,
    )
    from django.tasks.backends.base import BaseTaskBackend
    from django.tasks.base import TaskError
    from django.tasks.exceptions import InvalidTask, TaskResultDoesNotExist
    from django.tasks.signals import task_enqueued, task_finished, task_started
    from django.utils.json import normalize_json
else:
    try:
        from django.tasks import (
            DEFAULT_TASK_BACKEND_ALIAS,
            DEFAULT_TASK_QUEUE_NAME,
            Task,
            TaskContext,
            TaskResult,
            TaskResultStatus,
        )
        from django.tasks.backends.base import BaseTaskBackend
        from django.tasks.base import TaskError
        from django.tasks.exceptions import InvalidTask, TaskResultDoesNotExist
        from django.tasks.signals import task_enqueued, task_finished, task_started
        from django.utils.json import normalize_json
    except ImportError:
        try:
            from django_tasks import (
                DEFAULT_TASK_BACKEND_ALIAS,
                DEFAULT_TASK_QUEUE_NAME,
                TaskContext,
                TaskResult,
                TaskResultStatus,
            )
            from django_tasks.backends.base import BaseTaskBackend
            from django_tasks.base import Task, TaskError
            from django_tasks.exceptions import InvalidTaskError as InvalidTask
            from django_tasks.exceptions import TaskResultDoesNotExist
            from django_tasks.signals import task_enqueued, task_finished, task_started
            from django_tasks.utils import normalize_json
        except ImportError as exc:
            raise ImportError(
                "django_qstash_jobs.tasks needs Django's Tasks framework: Django 6.0 or later, "
                "or on Django 5.2 the django-tasks backport (pip install django-tasks)."
            ) from exc

__all__ = [
    "DJANGO_TASK",
    "BaseTaskBackend",
    "InvalidTask",
    "Task",
    "TaskCancelled",
    "TaskPayload",
    "TaskRecord",
    "TaskResult",
    "TaskResultDoesNotExist",
    "load_task",
    "normalize_json",
    "send_task_signal",
    "task_enqueued",
    "task_result",
]

#: The job type of every task enqueued through ``QStashBackend``.
DJANGO_TASK = "django_task"
#: Stands in for the worker of an attempt that recorded none: the one running now, seen from
#: elsewhere, or one whose worker died before it could record anything.
UNKNOWN_WORKER = "unknown"

#: The columns a ``TaskResult`` is read from, beyond those every delivery reads.
_RESULT_FIELDS = frozenset({"result", "created_at", "started_at", "finished_at", "updated_at"})

#: How each job status reads in Django's four. ``retrying`` is READY: "ready to be executed again".
#: ``cancelled`` is FAILED, which Django defines as failed "or was unable to start".
_STATUSES = {
    JobStatus.PENDING: TaskResultStatus.READY,
    JobStatus.QUEUED: TaskResultStatus.READY,
    JobStatus.RETRYING: TaskResultStatus.READY,
    JobStatus.RUNNING: TaskResultStatus.RUNNING,
    JobStatus.COMPLETED: TaskResultStatus.SUCCESSFUL,
    JobStatus.FAILED: TaskResultStatus.FAILED,
    JobStatus.CANCELLED: TaskResultStatus.FAILED,
}


class TaskCancelled(Exception):
    """The error in a cancelled task's result (``job_dispatcher.cancel``): it will not run."""


class TaskPayload(BaseModel):
    """The payload of a ``django_task`` job: the task, its arguments, and how it was enqueued."""

    model_config = ConfigDict(extra="forbid")

    #: Dotted path of the module attribute that holds the ``Task`` (its ``module_path``).
    task: str = Field(min_length=1)
    args: list[Any] = Field(default_factory=list)
    kwargs: dict[str, Any] = Field(default_factory=dict)
    backend: str = DEFAULT_TASK_BACKEND_ALIAS
    queue_name: str = DEFAULT_TASK_QUEUE_NAME
    run_after: datetime | None = None


@dataclass
class TaskRecord:
    """What a task's row keeps in ``result``, beyond its columns."""

    #: One per attempt that recorded its worker, oldest first.
    worker_ids: list[str] = field(default_factory=list)
    #: ``{"exception_class_path", "traceback"}`` of each failed attempt, oldest first.
    errors: list[dict[str, str]] = field(default_factory=list)
    last_attempted_at: datetime | None = None
    return_value: Any = None

    @classmethod
    def from_json(cls, stored: Any) -> TaskRecord:
        """Read a stored record; anything else (``None`` before the first attempt) is empty."""
        if not isinstance(stored, dict):
            return cls()
        attempted = stored.get("last_attempted_at")
        return cls(
            worker_ids=[str(worker) for worker in stored.get("worker_ids") or []],
            errors=[error for error in stored.get("errors") or [] if isinstance(error, dict)],
            last_attempted_at=parse_datetime(attempted) if isinstance(attempted, str) else None,
            return_value=stored.get("return_value"),
        )

    def as_json(self) -> dict[str, Any]:
        return {
            "return_value": self.return_value,
            "errors": self.errors,
            "worker_ids": self.worker_ids,
            "last_attempted_at": (
                self.last_attempted_at.isoformat() if self.last_attempted_at else None
            ),
        }


def load_task(payload: TaskPayload) -> Task:
    """The task the payload names, as it was enqueued; :class:`PermanentJobError` if none.

    The path is imported, but only a ``Task`` found there is accepted: a row naming any other
    callable never runs it.
    """
    try:
        target = import_string(payload.task)
    except ImportError as exc:
        raise PermanentJobError(f"Task {payload.task!r} cannot be imported: {exc}") from exc
    if not isinstance(target, Task):
        raise PermanentJobError(
            f"{payload.task!r} is not a task but a {type(target).__name__}: only functions "
            f"decorated with @task run as {DJANGO_TASK} jobs."
        )
    try:
        # The decorated Task carries the decorator's settings; using() restores what was
        # changed for this enqueue, and validates it with the backend as Django does.
        return target.using(
            backend=payload.backend, queue_name=payload.queue_name, run_after=payload.run_after
        )
    except (InvalidTask, ImproperlyConfigured) as exc:
        raise PermanentJobError(f"Task {payload.task!r} cannot run here: {exc}") from exc


def task_result(
    execution: JobExecution,
    task: Task | None = None,
    *,
    record: TaskRecord | None = None,
) -> TaskResult:
    """The ``TaskResult`` a ``django_task`` row stands for.

    ``task`` saves importing it again; ``record`` replaces the stored one (the running attempt's).
    Raises :class:`PermanentJobError` when the row's task cannot be loaded.
    """
    payload = TaskPayload.model_validate(execution.payload)
    if task is None:
        task = load_task(payload)
    _load_result_fields(execution)
    if record is None:
        record = TaskRecord.from_json(execution.result)
    status = _STATUSES[JobStatus(execution.status)]
    # The claim sets updated_at, and nothing else writes a running task's row: while it runs,
    # updated_at is when its attempt started.
    last_attempted_at: datetime | None
    if status == TaskResultStatus.RUNNING:
        last_attempted_at = execution.updated_at
    else:
        last_attempted_at = record.last_attempted_at or execution.started_at
    result: TaskResult[Any, Any] = TaskResult(
        task=task,
        id=execution.job_id,
        status=status,
        enqueued_at=execution.created_at,
        started_at=execution.started_at,
        finished_at=execution.finished_at,
        last_attempted_at=last_attempted_at,
        args=payload.args,
        kwargs=payload.kwargs,
        backend=payload.backend,
        errors=_errors(execution, record),
        worker_ids=_padded(record.worker_ids, execution.attempts),
    )
    if status == TaskResultStatus.SUCCESSFUL:
        # Frozen, and not an __init__ argument: Django's own backends set it the same way.
        object.__setattr__(result, "_return_value", record.return_value)
    return result


def _load_result_fields(execution: JobExecution) -> None:
    """Load, in one query, the columns a result needs that a delivery's claim left unread."""
    deferred = execution.get_deferred_fields() & _RESULT_FIELDS
    if deferred:
        # From the database written to: a replica may not have the row, or this claim, yet.
        execution.refresh_from_db(from_queryset=statements.job_rows(), fields=sorted(deferred))


def _padded(worker_ids: list[str], attempts: int) -> list[str]:
    # Django counts attempts as len(worker_ids); the row's count is the truth.
    return worker_ids + [UNKNOWN_WORKER] * max(0, attempts - len(worker_ids))


def _errors(execution: JobExecution, record: TaskRecord) -> list[TaskError]:
    errors = [
        TaskError(
            exception_class_path=error.get("exception_class_path", "builtins.Exception"),
            traceback=error.get("traceback", ""),
        )
        for error in record.errors
    ]
    if execution.status == JobStatus.CANCELLED:
        errors.append(
            TaskError(
                exception_class_path=qualified_name(TaskCancelled),
                traceback=f"{TaskCancelled.__name__}: the job was cancelled; it will not run.",
            )
        )
    return errors


def worker_id() -> str:
    """This worker: host and process, which is what an operator looks for."""
    # Django's own columns hold 64 characters.
    return f"{socket.gethostname()}:{os.getpid()}"[:64]


def send_task_signal(signal: Signal, task: Task, result: TaskResult) -> None:
    """Send one of Django's task signals as its backends do; a failing receiver is logged only."""
    signals.send_logging_failures(
        signal, type(task.get_backend()), ("task", "task", result.id), task_result=result
    )


@register_job(DJANGO_TASK, schema=TaskPayload)
def run_task(payload: TaskPayload, ctx: JobContext) -> dict[str, Any]:
    """Run the task the payload names; return its record, which becomes the job's result."""
    execution = ctx.execution
    _load_result_fields(execution)
    record = TaskRecord.from_json(execution.result)
    record.worker_ids = [*_padded(record.worker_ids, execution.attempts - 1), worker_id()]
    record.last_attempted_at = execution.updated_at  # the claim's time: this attempt's start
    try:
        task = load_task(payload)
        result = task_result(execution, task, record=record)
        send_task_signal(task_started, task, result)
        if task.takes_context:
            value = task.call(TaskContext(task_result=result), *result.args, **result.kwargs)
        else:
            value = task.call(*result.args, **result.kwargs)
        record.return_value = _json_value(payload.task, value)
    except BaseException as exc:
        # BaseException: a task's sys.exit(), or an async task's CancelledError, fails the
        # attempt as Django's own backends count it; the receiver records it and lets it go on.
        record.errors.append(_task_error(exc))
        # On the row's object, not the exception: a frozen exception refuses new attributes.
        setattr(execution, _STORED_MARK, exc)
        _save_failed_attempt(execution, record)
        raise
    return record.as_json()


#: Set on the delivery's row object to the exception whose error run_task stored. A failure the
#: receiver records after the task returned (a result it cannot store), or with no task running
#: (QStash gave up, or refused the publish), has no mark: its error is added when job_failed is
#: sent.
_STORED_MARK = "_django_qstash_jobs_task_error_stored"


def _task_error(exc: BaseException) -> dict[str, str]:
    return {
        "exception_class_path": qualified_name(type(exc)),
        "traceback": storable.text("".join(traceback.format_exception(exc))),
    }


def _json_value(path: str, value: Any) -> Any:
    try:
        return storable.json_value(normalize_json(value))
    except (TypeError, ValueError) as exc:
        # The same value comes back on every attempt: retrying cannot help.
        raise PermanentJobError(
            f"Task {path!r} returned a {type(value).__name__}, which is not JSON-serialisable "
            f"({exc})."
        ) from exc


def _save_failed_attempt(execution: JobExecution, record: TaskRecord) -> None:
    # The execution path records the failure itself but not the result: keep this attempt's
    # error and worker there, if the row is still ours (see update_if_claimed).
    stored = record.as_json()
    statements.update_if_claimed(execution, result=stored)
    execution.result = stored


def _send_finished(sender: Any, execution: JobExecution, **kwargs: Any) -> None:
    """Send Django's ``task_finished`` once a task's outcome is recorded, success or failure."""
    if execution.job_type != DJANGO_TASK:
        return
    try:
        payload = TaskPayload.model_validate(execution.payload)
        task = load_task(payload)
    except (ValidationError, PermanentJobError):
        return  # Not a task: nothing a task signal could describe.
    send_task_signal(task_finished, task, task_result(execution, task))


def _send_failed(
    sender: Any, execution: JobExecution, exception: BaseException, **kwargs: Any
) -> None:
    """``task_finished`` for a failed task, its last error stored first if the task did not."""
    if execution.job_type != DJANGO_TASK:
        return
    if getattr(execution, _STORED_MARK, None) is not exception:
        _load_result_fields(execution)
        record = TaskRecord.from_json(execution.result)
        record.errors.append(_task_error(exception))
        stored = record.as_json()
        JobExecution.objects.filter(pk=execution.pk, status=JobStatus.FAILED).update(result=stored)
        execution.result = stored
    _send_finished(sender, execution)


# After the row is written, so a receiver that reads the result sees the outcome. A retried
# attempt is not finished: job_retrying sends nothing here.
signals.job_succeeded.connect(_send_finished, dispatch_uid="django_qstash_jobs.task_finished.ok")
signals.job_failed.connect(_send_failed, dispatch_uid="django_qstash_jobs.task_finished.failed")
signals.job_cancelled.connect(
    _send_finished, dispatch_uid="django_qstash_jobs.task_finished.cancelled"
)
