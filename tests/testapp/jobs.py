"""Job types used by the tests, discovered like any app's jobs.py."""

from __future__ import annotations

import time

from django.db import connection
from pydantic import BaseModel

from django_qstash_jobs import JobContext, register_job
from django_qstash_jobs.exceptions import PermanentJobError
from tests.testapp.models import SideEffect


class Echo(BaseModel):
    message: str
    times: int = 1


@register_job("echo", schema=Echo, retries=2)
def echo(payload: Echo, ctx: JobContext) -> dict[str, object]:
    SideEffect.objects.create(job_id=ctx.job_id, label="echo")
    ctx.set_progress(50, "halfway")
    return {"echo": payload.message * payload.times, "attempt": ctx.attempt}


class Flaky(BaseModel):
    fail_times: int


@register_job("flaky", schema=Flaky, retries=3)
def flaky(payload: Flaky, ctx: JobContext) -> str:
    SideEffect.objects.create(job_id=ctx.job_id, label=f"attempt-{ctx.attempt}")
    if ctx.attempt <= payload.fail_times:
        raise RuntimeError(f"secret-internal-detail attempt {ctx.attempt}")
    return "ok"


@register_job("permanent")
def permanent(payload: dict[str, object], ctx: JobContext) -> None:
    SideEffect.objects.create(job_id=ctx.job_id, label="permanent")
    raise PermanentJobError("this can never work")


class Sleep(BaseModel):
    seconds: float


@register_job("sleep", schema=Sleep, retries=0)
def sleep(payload: Sleep, ctx: JobContext) -> str:
    SideEffect.objects.create(job_id=ctx.job_id, label="sleep")
    time.sleep(payload.seconds)
    return "slept"


class Effect(BaseModel):
    seconds: float = 0.0


@register_job("effect", schema=Effect, retries=10)
def effect(payload: Effect, ctx: JobContext) -> str:
    """Records each run ("start"), then a side effect idempotent by job id ("effect")."""
    SideEffect.objects.create(job_id=ctx.job_id, label="start")
    time.sleep(payload.seconds)
    SideEffect.objects.get_or_create(job_id=ctx.job_id, label="effect")
    return "done"


@register_job("inspect", retries=0)
def inspect(payload: dict[str, object], ctx: JobContext) -> dict[str, object]:
    """Reads fields of its row that a delivery does not load up front."""
    execution = ctx.execution
    return {
        "created_at": execution.created_at.isoformat(),
        "options": execution.options,
        "user_id": execution.user_id,
        "metadata": ctx.metadata,
        "attempt": ctx.attempt,
        "last_attempt": ctx.is_last_attempt,
    }


class Returns(BaseModel):
    kind: str


@register_job("returns", schema=Returns, retries=0)
def returns(payload: Returns, ctx: JobContext) -> object:
    """Returns, or raises with, what a database may refuse to store."""
    if payload.kind == "error with a NUL":
        raise RuntimeError("bad\x00byte")
    return {
        "NaN": {"ratio": float("nan")},
        "Infinity": [float("inf")],
        "a NUL": {"text": "a\x00b"},
        "a NUL in a key": {"a\x00b": 1},
        "a lone surrogate": {"text": "\ud800"},
        "an escaped backslash": {"text": "\\u0000"},
    }[payload.kind]


class Failing(BaseModel):
    #: "database": a statement the database refuses; anything else: an exception of Python's.
    how: str


@register_job("failing", schema=Failing, retries=1)
def failing(payload: Failing, ctx: JobContext) -> None:
    """Records its attempt, then fails the way the payload says."""
    SideEffect.objects.create(job_id=ctx.job_id, label=f"attempt-{ctx.attempt}")
    if payload.how == "database":
        with connection.cursor() as cursor:
            cursor.execute("SELECT * FROM no_such_table")
    raise RuntimeError("the handler failed")
