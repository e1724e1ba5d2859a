"""Behind a router that reads from a replica: what the enqueue side writes, it reads back there."""

from __future__ import annotations

import importlib
import uuid
from collections.abc import Iterator, Sequence
from contextlib import nullcontext
from io import StringIO
from types import ModuleType
from typing import Any

import pytest
from django.core.management import call_command
from django.db import transaction
from django.test import override_settings

from django_qstash_jobs import job_dispatcher
from django_qstash_jobs.execution import Outcome
from django_qstash_jobs.models import JobExecution, JobSchedule, JobStatus
from django_qstash_jobs.task_jobs import task_result
from django_qstash_jobs.transports import get_transport
from django_qstash_jobs.transports.base import BaseTransport, OutgoingMessage
from django_qstash_jobs.transports.immediate import ImmediateTransport, clear_schedules
from tests.testapp.models import SideEffect

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


@pytest.fixture
def held_tasks(settings: Any) -> Iterator[ModuleType]:
    """The test app's Django tasks, published to a transport that only holds the messages."""
    from tests.test_tasks import HeldTransport, tasks_setting

    HeldTransport.published.clear()
    jobs = {**settings.QSTASH_JOBS, "TRANSPORT": "tests.test_tasks.HeldTransport"}
    with override_settings(TASKS=tasks_setting(), QSTASH_JOBS=jobs):
        yield importlib.import_module("tests.testapp.tasks")


def test_a_task_delivered_before_the_replica_has_its_row_runs(held_tasks: ModuleType) -> None:
    from tests.test_tasks import run_delivery

    result = held_tasks.add.enqueue(2, 3)

    assert run_delivery(result.id) is Outcome.COMPLETED
    assert SideEffect.objects.using("default").count() == 1


def test_a_task_retried_behind_a_lagging_replica_keeps_each_attempt(
    held_tasks: ModuleType,
) -> None:
    from tests.test_tasks import run_delivery

    result = held_tasks.flaky.enqueue(fail_times=1)
    # The replica as of the enqueue: it has not seen the first attempt's error, nor any claim.
    JobExecution.objects.using("default").get(job_id=result.id).save(
        using="other", force_insert=True
    )

    assert run_delivery(result.id) is Outcome.RETRY
    assert run_delivery(result.id, retried=1) is Outcome.COMPLETED

    done = task_result(JobExecution.objects.using("default").get(job_id=result.id))
    assert len(done.errors) == 1
    assert len(done.worker_ids) == 2
    assert done.last_attempted_at is not None
    assert (
        done.last_attempted_at
        >= JobExecution.objects.using("default").get(job_id=result.id).started_at
    )


@pytest.fixture
def schedules_in_process(settings: Any) -> Iterator[None]:
    """Schedules on the in-process transport, which keeps them as QStash would."""
    clear_schedules()
    with override_settings(QSTASH_JOBS={**settings.QSTASH_JOBS, "TRANSPORT": "immediate"}):
        yield
    clear_schedules()


@pytest.mark.usefixtures("schedules_in_process")
def test_a_sync_keeps_a_schedule_just_made_in_code() -> None:
    # The replica has no row for it yet: read there, its QStash copy looked like a stranger's
    # leftover, and the sync deleted it. It stopped firing.
    schedule_id = job_dispatcher.schedule("echo", "0 2 * * *", {"message": "x"}, name="code")

    call_command("sync_schedules", stdout=StringIO())

    transport = get_transport()
    assert isinstance(transport, ImmediateTransport)
    assert schedule_id in {remote.schedule_id for remote in transport.list_schedules()}


@pytest.mark.usefixtures("schedules_in_process")
def test_a_schedule_just_made_can_be_paused_at_once() -> None:
    schedule_id = job_dispatcher.schedule("echo", "0 2 * * *", {"message": "x"}, name="code")

    job_dispatcher.pause_schedule(schedule_id)

    assert JobSchedule.objects.using("default").get(schedule_id=schedule_id).paused
