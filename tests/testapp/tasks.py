"""Tasks of Django's Tasks framework used by the tests.

Import it with the QStash backend as the default (``@task(retries=...)`` needs its task class):
the tests' ``tasks`` fixtures do.
"""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

from django_qstash_jobs.exceptions import PermanentJobError
from tests.testapp.models import SideEffect

try:
    from django.tasks import TaskContext, task
except ImportError:  # Django 5.2 with the django-tasks backport
    from django_tasks import TaskContext, task  # type: ignore[no-redef]


class TaskBoom(Exception):
    """Raised by :func:`explode`, so that results can name a class outside builtins."""


@dataclasses.dataclass(frozen=True)
class FrozenRefusal(PermanentJobError):
    """A frozen dataclass exception: it refuses any attribute set on it after creation."""

    code: int = 7


@task
def add(a: int, b: int) -> int:
    SideEffect.objects.create(job_id="", label=f"add {a} {b}")
    return a + b


@task(takes_context=True)
def describe(context: TaskContext, label: str) -> dict[str, Any]:
    """Report what the context says, and what get_result says while the task runs."""
    result = context.task_result
    seen_from_outside = result.task.get_result(result.id)
    SideEffect.objects.create(job_id=result.id, label=label)
    return {
        "id": result.id,
        "attempt": context.attempt,
        "status": str(result.status),
        "status_from_get_result": str(seen_from_outside.status),
        "args": result.args,
        "kwargs": result.kwargs,
    }


@task(takes_context=True, retries=2)
def flaky(context: TaskContext, fail_times: int) -> str:
    SideEffect.objects.create(job_id=context.task_result.id, label=f"attempt-{context.attempt}")
    if context.attempt <= fail_times:
        raise RuntimeError(f"attempt {context.attempt} fails")
    return f"ok on attempt {context.attempt}"


@task
def explode(message: str) -> None:
    raise TaskBoom(message)


@task
def give_up() -> None:
    SideEffect.objects.create(job_id="", label="give_up")
    raise PermanentJobError("this task can never succeed")


@task
def return_an_object() -> object:
    return object()


@task
async def multiply(a: int, b: int) -> int:
    await asyncio.sleep(0)
    return a * b


def not_a_task() -> None:
    """A plain function: a django_task job naming it must never call it."""
    SideEffect.objects.create(job_id="", label="not_a_task ran")


@task
def return_nan() -> float:
    return float("nan")


@task
def exit_the_process() -> None:
    raise SystemExit(3)


def _aliased() -> None:
    """Held as ``aliased``: its module_path names this function, not the task."""


aliased = task(_aliased)


@task
def refuse_frozen() -> None:
    raise FrozenRefusal()
