"""Django's Tasks framework end to end: @task, the local QStash server, the receiver."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator
from datetime import timedelta
from types import ModuleType
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from django.test import override_settings
from django.utils import timezone
from qstash import QStash

from django_qstash_jobs import job_dispatcher
from django_qstash_jobs.models import JobStatus
from tests.e2e.conftest import wait_for, wait_until
from tests.servers import TOKEN, DevServerProcess, qstash_settings
from tests.testapp.models import SideEffect

try:
    from django.tasks import TaskResultStatus
except ImportError:
    try:  # Django 5.2 with the django-tasks backport
        from django_tasks import TaskResultStatus
    except ImportError:
        pytest.skip(
            "Django's Tasks framework is not installed (Django 6+, or django-tasks on 5.2)",
            allow_module_level=True,
        )

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

TASKS = {"default": {"BACKEND": "django_qstash_jobs.tasks.QStashBackend"}}


def import_tasks() -> ModuleType:
    """The test tasks; imported under the TASKS override, since @task(retries=...) needs it."""
    return importlib.import_module("tests.testapp.tasks")


@pytest.fixture
def tasks(through_qstash: DevServerProcess) -> Iterator[ModuleType]:
    with override_settings(TASKS=TASKS):
        yield import_tasks()


def test_a_task_goes_through_qstash_and_reads_successful(tasks: ModuleType) -> None:
    result = tasks.add.enqueue(2, 3)
    execution = wait_for(result.id, JobStatus.COMPLETED)
    assert execution.message_id and execution.message_id.startswith("msg")

    result.refresh()
    assert result.status == TaskResultStatus.SUCCESSFUL
    assert result.return_value == 5
    assert result.attempts == 1
    assert SideEffect.objects.filter(label="add 2 3").count() == 1


def test_a_task_taking_context_runs_over_http(tasks: ModuleType) -> None:
    result = tasks.describe.enqueue(label="over http")
    wait_for(result.id, JobStatus.COMPLETED)
    result.refresh()
    assert result.return_value["id"] == result.id
    assert result.return_value["attempt"] == 1
    assert result.return_value["status_from_get_result"] == "RUNNING"


def test_an_async_task_runs_over_http(tasks: ModuleType) -> None:
    result = async_to_sync(tasks.multiply.aenqueue)(6, 7)
    wait_for(result.id, JobStatus.COMPLETED)
    fetched = async_to_sync(tasks.multiply.aget_result)(result.id)
    assert fetched.return_value == 42


def test_qstash_retries_a_failing_task_until_it_succeeds(tasks: ModuleType) -> None:
    result = tasks.flaky.enqueue(fail_times=1)
    wait_for(result.id, JobStatus.COMPLETED)
    result.refresh()
    assert result.return_value == "ok on attempt 2"
    assert result.attempts == 2
    [error] = result.errors
    assert error.exception_class is RuntimeError


def test_a_path_that_is_not_a_task_is_refused_without_retries(
    through_qstash: DevServerProcess,
) -> None:
    job_id = job_dispatcher.enqueue(
        "django_task", {"task": "tests.testapp.tasks.not_a_task"}, options={"retries": 3}
    )
    execution = wait_for(job_id, JobStatus.FAILED)
    assert execution.attempts == 1
    assert "is not a task" in execution.error
    assert not SideEffect.objects.exists()
    # QStash was told not to retry: the message went straight to its dead-letter queue.
    client = QStash(TOKEN, base_url=through_qstash.url)
    wait_until(
        lambda: any(m.message_id == execution.message_id for m in client.dlq.list().messages),
        what="the message in the DLQ",
    )


def test_run_after_holds_the_delivery_back(
    devserver_factory: Callable[..., DevServerProcess], live_server: Any
) -> None:
    server = devserver_factory(backoff_scale=1.0)  # delays are real here
    settings = qstash_settings(server.url, live_server.url)
    with override_settings(QSTASH_JOBS=settings, TASKS=TASKS):
        run_after = timezone.now() + timedelta(seconds=2)
        result = import_tasks().add.using(run_after=run_after).enqueue(1, 1)
        assert wait_for(result.id, JobStatus.QUEUED).started_at is None
        execution = wait_for(result.id, JobStatus.COMPLETED)
    assert execution.started_at is not None
    assert execution.started_at >= run_after
