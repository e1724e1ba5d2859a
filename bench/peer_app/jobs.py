"""Our side of the receiver benchmark: a job that does nothing, so only the receiver is timed."""

from __future__ import annotations

from django_qstash_jobs import JobContext, register_job


@register_job("noop", retries=0)
def noop(payload: dict[str, object], ctx: JobContext) -> None:
    """Nothing: the claim and the outcome are the two writes measured."""
