"""Behind a router that reads from a replica: what the enqueue side writes, it reads back there."""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Sequence
from contextlib import nullcontext
from typing import Any

import pytest
from django.db import transaction
from django.test import override_settings

from django_qstash_jobs import job_dispatcher
from django_qstash_jobs.models import JobExecution, JobStatus
from django_qstash_jobs.transports.base import BaseTransport, OutgoingMessage

pytestmark = pytest.mark.django_db(databases=["default", "other"], transaction=True)

#: Deduplication ids of the messages published, in order.
PUBLISHED: list[str | None] = []


class RecordingTransport(BaseTransport):
    """Publishes nothing; remembers each message's deduplication id."""

    def publish(self, messages: Sequence[OutgoingMessage]) -> list[str]:
        PUBLISHED.extend(message.options.deduplication_id for message in messages)
        return [f"msg_{uuid.uuid4().hex}" for _ in messages]

    def cancel(self, message_id: str) -> None:
        pass


class ReplicaRouter:
    """Writes to "default", reads from "other": a replica that has not caught up (ever)."""

    def db_for_read(self, model: Any, **hints: Any) -> str:
        return "other"

    def db_for_write(self, model: Any, **hints: Any) -> str:
        return "default"

    def allow_relation(self, *args: Any, **kwargs: Any) -> bool:
        return True


@pytest.fixture(autouse=True)
def replica(settings: Any) -> Iterator[None]:
    settings.DATABASE_ROUTERS = [ReplicaRouter()]
    PUBLISHED.clear()
    with override_settings(
        QSTASH_JOBS={
            "TRANSPORT": f"{__name__}.RecordingTransport",
            "RECEIVER_URL": "http://testserver/jobs/receive/",
        }
    ):
        yield


@pytest.mark.parametrize("in_transaction", [False, True])
def test_enqueue_many_with_idempotency_keys(in_transaction: bool) -> None:
    jobs = [
        {"job_type": "echo", "payload": {"message": "a"}, "metadata": {"idempotency_key": "k1"}},
        {"job_type": "echo", "payload": {"message": "b"}},
    ]
    with transaction.atomic() if in_transaction else nullcontext():
        job_ids = job_dispatcher.enqueue_many(jobs)

    rows = JobExecution.objects.using("default").filter(job_id__in=job_ids)
    assert sorted(rows.values_list("status", flat=True)) == [JobStatus.QUEUED] * 2
    assert len(PUBLISHED) == 2


def test_a_retry_is_published_under_a_new_deduplication_id() -> None:
    # QStash drops a message whose deduplication id it saw in the last minutes: under the first
    # one, the retried job would be marked queued and never delivered.
    job_id = job_dispatcher.enqueue("echo", {"message": "a"})
    JobExecution.objects.using("default").filter(job_id=job_id).update(status=JobStatus.FAILED)

    job_dispatcher.retry(job_id)

    assert PUBLISHED[0] == job_id
    assert PUBLISHED[1] is not None and PUBLISHED[1].startswith(f"{job_id}:retry:")
    row = JobExecution.objects.using("default").get(job_id=job_id)
    assert row.status == JobStatus.QUEUED
