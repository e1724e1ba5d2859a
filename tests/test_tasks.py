"""QStashBackend: Django's Tasks framework on top of jobs, from enqueue to TaskResult."""

from __future__ import annotations

import dataclasses
import importlib
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime, timedelta
from datetime import timezone as dt_timezone
from decimal import Decimal
from pathlib import Path
from types import ModuleType
from typing import Any, ClassVar

import pytest
from asgiref.sync import async_to_sync
from django.conf import settings
from django.core.checks import run_checks
from django.core.exceptions import ImproperlyConfigured
from django.db import connection, transaction
from django.db.models.signals import post_save
from django.test import override_settings
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from django_qstash_jobs import job_dispatcher
from django_qstash_jobs.execution import Delivery, Outcome, execute
from django_qstash_jobs.models import JobExecution, JobStatus
from django_qstash_jobs.signals import job_enqueued
from django_qstash_jobs.transports import BaseTransport, OutgoingMessage
from tests.testapp.models import SideEffect

try:
    import django.tasks.checks  # noqa: F401  (Django's check of every task backend)
    from django.tasks import TaskResultStatus, task_backends
    from django.tasks.exceptions import InvalidTask, TaskResultDoesNotExist
    from django.tasks.signals import task_enqueued, task_finished, task_started
except ImportError:
    try:  # Django 5.2 with the django-tasks backport
        import django_tasks.checks  # noqa: F401
        from django_tasks import TaskResultStatus, task_backends
        from django_tasks.exceptions import InvalidTaskError as InvalidTask
        from django_tasks.exceptions import TaskResultDoesNotExist
        from django_tasks.signals import task_enqueued, task_finished, task_started
    except ImportError:
        pytest.skip(
            "Django's Tasks framework is not installed (Django 6+, or django-tasks on 5.2)",
            allow_module_level=True,
        )

from django_qstash_jobs.task_jobs import worker_id
from django_qstash_jobs.tasks import QStashBackend, QStashTask, TaskCancelled

pytestmark = pytest.mark.django_db(transaction=True)

READY, RUNNING = TaskResultStatus.READY, TaskResultStatus.RUNNING
SUCCESSFUL, FAILED = TaskResultStatus.SUCCESSFUL, TaskResultStatus.FAILED
ROOT = Path(__file__).resolve().parents[1]


def tasks_setting(**options: Any) -> dict[str, Any]:
    backend: dict[str, Any] = {"BACKEND": "django_qstash_jobs.tasks.QStashBackend"}
    if options:
        backend["OPTIONS"] = options
    return {"default": backend}


class HeldTransport(BaseTransport):
    """Publishes nothing: each job stays queued until the test delivers it."""

    published: ClassVar[list[OutgoingMessage]] = []

    def publish(self, messages: Sequence[OutgoingMessage]) -> list[str]:
        self.published.extend(messages)
        return [f"msg_held_{uuid.uuid4().hex}" for _ in messages]

    def cancel(self, message_id: str) -> None:
        """Nothing was sent, so nothing to cancel."""


@pytest.fixture(autouse=True)
def qstash_tasks() -> Iterator[None]:
    with override_settings(TASKS=tasks_setting()):
        yield


@pytest.fixture
def tasks(qstash_tasks: None) -> ModuleType:
    """The test tasks, imported once QStashBackend is the default backend."""
    return importlib.import_module("tests.testapp.tasks")


@pytest.fixture
def held() -> Iterator[list[OutgoingMessage]]:
    """Jobs are published to a transport that keeps them, as QStash does before delivering."""
    HeldTransport.published.clear()
    jobs_settings = {**settings.QSTASH_JOBS, "TRANSPORT": f"{__name__}.HeldTransport"}
    with override_settings(QSTASH_JOBS=jobs_settings):
        yield HeldTransport.published


def run_delivery(job_id: str, retried: int = 0) -> Outcome:
    """Run one delivery through the receiver's execution path."""
    return execute(Delivery(job_id=job_id, message_id=f"msg_{job_id}", retried=retried))


def backend() -> QStashBackend:
    default = task_backends["default"]
    assert isinstance(default, QStashBackend)
    return default


# The backend and its tasks


def test_the_backend_supports_defer_results_and_async_but_not_priority(tasks: ModuleType) -> None:
    assert QStashBackend.supports_defer
    assert QStashBackend.supports_get_result
    assert QStashBackend.supports_async_task
    assert not QStashBackend.supports_priority
    with pytest.raises(InvalidTask, match="priority"):
        tasks.add.using(priority=10)


def test_task_accepts_retries_with_this_backend(tasks: ModuleType) -> None:
    assert isinstance(tasks.flaky, QStashTask)
    assert tasks.flaky.retries == 2
    assert tasks.add.retries is None
    # using() keeps the retries: it copies the task.
    assert tasks.flaky.using(queue_name="default").retries == 2


@pytest.mark.parametrize("retries", [-1, 101, True, "3"])
def test_invalid_retries_are_refused_when_the_task_is_made(tasks: ModuleType, retries: Any) -> None:
    with pytest.raises(InvalidTask, match="retries"):
        dataclasses.replace(tasks.flaky, retries=retries)


def test_retries_come_from_the_task_then_the_options_then_the_settings(
    tasks: ModuleType, held: list[OutgoingMessage]
) -> None:
    from_task = tasks.flaky.enqueue(fail_times=0)
    from_settings = tasks.add.enqueue(1, 2)
    with override_settings(TASKS=tasks_setting(retries=5)):
        from_options = tasks.add.enqueue(1, 2)
        task_still_wins = tasks.flaky.enqueue(fail_times=0)

    def max_retries(result: Any) -> int:
        return JobExecution.objects.get(job_id=result.id).max_retries

    assert max_retries(from_task) == 2
    assert max_retries(from_settings) == 3  # QSTASH_JOBS["DEFAULT_RETRIES"]
    assert max_retries(from_options) == 5
    assert max_retries(task_still_wins) == 2
    assert [message.max_retries for message in held] == [2, 3, 5, 2]


def test_backend_options_reach_the_publish(tasks: ModuleType, held: list[OutgoingMessage]) -> None:
    options = {"headers": {"X-Team": "tasks"}, "failure_callback": "https://example.com/failed"}
    with override_settings(TASKS=tasks_setting(**options)):
        tasks.add.enqueue(1, 2)
    [message] = held
    assert message.options.headers == {"X-Team": "tasks"}
    assert message.options.failure_callback == "https://example.com/failed"


# Enqueue


def test_enqueue_records_a_django_task_job_and_runs_it(tasks: ModuleType) -> None:
    result = tasks.add.enqueue(2, 3)

    assert result.status == READY  # as enqueued; the row has moved on since
    assert result.backend == "default"
    assert (result.args, result.kwargs) == ([2, 3], {})
    execution = JobExecution.objects.get(job_id=result.id)
    assert execution.job_type == "django_task"
    assert execution.payload == {
        "task": "tests.testapp.tasks.add",
        "args": [2, 3],
        "kwargs": {},
        "backend": "default",
        "queue_name": "default",
        "run_after": None,
    }
    assert execution.status == JobStatus.COMPLETED
    assert SideEffect.objects.filter(label="add 2 3").count() == 1

    result.refresh()
    assert result.status == SUCCESSFUL
    assert result.return_value == 5
    assert result.attempts == 1
    assert result.worker_ids == [worker_id()]
    assert result.errors == []
    assert result.enqueued_at == execution.created_at
    assert result.started_at and result.finished_at and result.last_attempted_at
    assert result.started_at <= result.finished_at


def test_enqueue_sends_the_signals_of_any_job(tasks: ModuleType) -> None:
    recorded: list[str] = []

    def receiver(execution: JobExecution, **kwargs: Any) -> None:
        recorded.append(execution.job_type)

    def saved(instance: JobExecution, **kwargs: Any) -> None:
        recorded.append(f"post_save {instance.status}")

    job_enqueued.connect(receiver)
    post_save.connect(saved, sender=JobExecution)
    try:
        tasks.add.enqueue(1, 2)
    finally:
        job_enqueued.disconnect(receiver)
        post_save.disconnect(saved, sender=JobExecution)
    # Like every job's row, a task's is written without model signals: job_enqueued is the one.
    assert recorded == ["django_task"]


def test_the_queue_name_set_with_using_is_kept(
    tasks: ModuleType, held: list[OutgoingMessage]
) -> None:
    with override_settings(
        TASKS={"default": {**tasks_setting()["default"], "QUEUES": ["default", "emails"]}}
    ):
        result = tasks.add.using(queue_name="emails").enqueue(1, 2)
        assert backend().get_result(result.id).task.queue_name == "emails"


def test_enqueue_in_a_transaction_publishes_on_commit(tasks: ModuleType) -> None:
    with transaction.atomic():
        result = tasks.add.enqueue(1, 1)
        assert JobExecution.objects.get(job_id=result.id).status == JobStatus.PENDING
        assert backend().get_result(result.id).status == READY
        assert not SideEffect.objects.exists()
    assert backend().get_result(result.id).status == SUCCESSFUL


def test_a_rolled_back_enqueue_records_and_runs_nothing(tasks: ModuleType) -> None:
    with pytest.raises(RuntimeError), transaction.atomic():
        tasks.add.enqueue(1, 1)
        raise RuntimeError("roll back")
    assert not JobExecution.objects.exists()
    assert not SideEffect.objects.exists()


@pytest.mark.parametrize(
    ("args", "kwargs"),
    [
        ((object(), 1), {}),
        ((datetime(2030, 1, 1), 1), {}),
        (({1: "one"}, 1), {}),
        ((float("nan"), 1), {}),
        ((b"\xff", 1), {}),
        ((), {"a": Decimal("1.5"), "b": 1}),
        (("a\x00b", 1), {}),
    ],
    ids=["object", "datetime", "int-keys", "nan", "bad-bytes", "decimal-kwarg", "nul"],
)
def test_arguments_json_cannot_carry_are_refused_at_enqueue(
    tasks: ModuleType, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> None:
    with pytest.raises(TypeError, match="JSON"):
        tasks.add.enqueue(*args, **kwargs)
    assert not JobExecution.objects.exists()


def test_run_after_becomes_a_delayed_publish(
    tasks: ModuleType, held: list[OutgoingMessage]
) -> None:
    run_after = timezone.now() + timedelta(seconds=90)
    result = tasks.add.using(run_after=run_after).enqueue(1, 2)

    [message] = held
    # Rounded up to QStash's second: never delivered before run_after.
    assert 89 <= message.options.delay_seconds <= 90
    fetched = backend().get_result(result.id)
    assert fetched.status == READY
    assert fetched.task.run_after == run_after
    stored = JobExecution.objects.get(job_id=result.id).payload["run_after"]
    assert parse_datetime(stored) == run_after


@override_settings(USE_TZ=False)
def test_an_aware_run_after_is_a_delay_where_use_tz_is_off(
    tasks: ModuleType, held: list[OutgoingMessage]
) -> None:
    # Django's own check asks for an aware run_after only where USE_TZ is on.
    run_after = datetime.now(tz=dt_timezone.utc) + timedelta(seconds=90)
    tasks.add.using(run_after=run_after).enqueue(1, 2)
    [message] = held
    assert 89 <= message.options.delay_seconds <= 90


def test_a_task_held_under_another_name_is_refused_at_enqueue(tasks: ModuleType) -> None:
    # Its module_path names the function, which the receiver would find instead of a task.
    with pytest.raises(InvalidTask, match="under the function's own name"):
        tasks.aliased.enqueue()
    assert not JobExecution.objects.exists()


def test_a_run_after_in_the_past_publishes_without_delay(
    tasks: ModuleType, held: list[OutgoingMessage]
) -> None:
    tasks.add.using(run_after=timezone.now() - timedelta(minutes=5)).enqueue(1, 2)
    [message] = held
    assert message.options.delay_seconds == 0


# get_result


def test_get_result_follows_a_task_through_a_retry_to_success(
    tasks: ModuleType, held: list[OutgoingMessage]
) -> None:
    result = tasks.flaky.enqueue(fail_times=1)
    queued = tasks.flaky.get_result(result.id)
    assert queued.status == READY
    assert (queued.attempts, queued.errors, queued.started_at) == (0, [], None)

    assert run_delivery(result.id) is Outcome.RETRY
    retrying = tasks.flaky.get_result(result.id)
    assert JobExecution.objects.get(job_id=result.id).status == JobStatus.RETRYING
    assert retrying.status == READY
    assert retrying.attempts == 1
    assert not retrying.is_finished
    [error] = retrying.errors
    assert error.exception_class_path == "builtins.RuntimeError"
    assert error.exception_class is RuntimeError
    assert "attempt 1 fails" in error.traceback
    assert "Traceback" in error.traceback
    with pytest.raises(ValueError, match="not finished"):
        _ = retrying.return_value

    assert run_delivery(result.id, retried=1) is Outcome.COMPLETED
    done = tasks.flaky.get_result(result.id)
    assert done.status == SUCCESSFUL
    assert done.return_value == "ok on attempt 2"
    assert done.attempts == 2
    assert done.worker_ids == [worker_id(), worker_id()]
    assert len(done.errors) == 1  # the first attempt's, kept
    assert done.started_at and done.last_attempted_at and done.finished_at
    assert done.started_at < done.last_attempted_at <= done.finished_at


def test_a_running_task_reads_running_and_gets_its_context(tasks: ModuleType) -> None:
    result = tasks.describe.enqueue(label="ctx")
    result.refresh()
    assert result.return_value == {
        "id": result.id,
        "attempt": 1,
        "status": "RUNNING",
        "status_from_get_result": "RUNNING",
        "args": [],
        "kwargs": {"label": "ctx"},
    }


def test_a_row_running_elsewhere_reads_running_with_its_attempt(
    tasks: ModuleType, held: list[OutgoingMessage]
) -> None:
    result = tasks.add.enqueue(1, 2)
    started = timezone.now() - timedelta(minutes=1)
    claimed = timezone.now()
    # As a claim leaves it, while another worker runs it.
    JobExecution.objects.filter(job_id=result.id).update(
        status=JobStatus.RUNNING, attempts=1, started_at=started, updated_at=claimed
    )
    running = backend().get_result(result.id)
    assert running.status == RUNNING
    assert running.attempts == 1
    assert running.worker_ids == ["unknown"]  # not recorded until the attempt ends
    assert (running.started_at, running.last_attempted_at) == (started, claimed)


def test_a_task_that_keeps_failing_reads_failed_with_each_error(tasks: ModuleType) -> None:
    with override_settings(TASKS=tasks_setting(retries=1)):
        result = tasks.explode.enqueue("kaboom")
        result.refresh()
    assert result.status == FAILED
    assert result.is_finished
    assert result.attempts == 2
    assert [error.exception_class_path for error in result.errors] == [
        "tests.testapp.tasks.TaskBoom",
        "tests.testapp.tasks.TaskBoom",
    ]
    assert result.errors[0].exception_class is tasks.TaskBoom
    assert "kaboom" in result.errors[-1].traceback
    with pytest.raises(ValueError, match="failed"):
        _ = result.return_value


def test_a_cancelled_task_reads_failed_with_a_cancellation_error(
    tasks: ModuleType, held: list[OutgoingMessage]
) -> None:
    result = tasks.add.enqueue(1, 2)
    assert job_dispatcher.cancel(result.id) is True

    cancelled = backend().get_result(result.id)
    assert cancelled.status == FAILED
    assert cancelled.finished_at is not None
    [error] = cancelled.errors
    assert error.exception_class is TaskCancelled
    assert run_delivery(result.id) is Outcome.ACKNOWLEDGED
    assert not SideEffect.objects.exists()


def test_a_task_raising_permanent_job_error_is_not_retried(tasks: ModuleType) -> None:
    result = tasks.give_up.enqueue()
    result.refresh()
    assert result.status == FAILED
    assert result.attempts == 1  # of 4 allowed
    assert result.errors[0].exception_class_path.endswith("PermanentJobError")
    assert SideEffect.objects.filter(label="give_up").count() == 1


def test_a_return_value_json_cannot_carry_fails_the_task_at_once(tasks: ModuleType) -> None:
    result = tasks.return_an_object.enqueue()
    result.refresh()
    assert result.status == FAILED
    assert result.attempts == 1
    execution = JobExecution.objects.get(job_id=result.id)
    assert "not JSON-serialisable" in execution.error


def test_a_return_value_the_database_cannot_store_is_the_tasks_error(tasks: ModuleType) -> None:
    result = tasks.return_nan.enqueue()
    result.refresh()
    assert result.status == FAILED
    [error] = result.errors
    assert error.exception_class_path.endswith("PermanentJobError")
    assert "Out of range float values are not JSON compliant" in error.traceback


def test_a_task_qstash_gave_up_on_reads_failed_with_that_error(
    tasks: ModuleType, held: list[OutgoingMessage]
) -> None:
    from django_qstash_jobs.exceptions import DeliveryAbandoned
    from django_qstash_jobs.failure_notices import FailureNotice, record

    result = tasks.add.enqueue(1, 2)
    execution = JobExecution.objects.get(job_id=result.id)
    assert execution.message_id
    notice = FailureNotice(
        message_id=execution.message_id,
        job_id=result.id,
        deduplication_id=execution.options["deduplication_id"],
        schedule_id=None,
        status=504,
        response="Gateway Timeout",
        error=None,
        attempts=4,
    )
    record(notice)

    failed = backend().get_result(result.id)
    assert failed.status == FAILED
    [error] = failed.errors  # the README's result.errors[-1] has something to show
    assert error.exception_class is DeliveryAbandoned
    assert "HTTP 504" in error.traceback


def test_a_task_that_exits_fails_the_attempt_and_the_exit_goes_on(tasks: ModuleType) -> None:
    with override_settings(TASKS=tasks_setting(retries=0)), pytest.raises(SystemExit):
        tasks.exit_the_process.enqueue()
    execution = JobExecution.objects.get()
    assert execution.status == JobStatus.FAILED  # not left running until its lease ran out
    assert execution.error.startswith("SystemExit: 3 (the worker was told to exit mid-job")
    [error] = backend().get_result(execution.job_id).errors
    assert error.exception_class is SystemExit


def test_unknown_result_ids_do_not_exist(tasks: ModuleType) -> None:
    echo_job = job_dispatcher.enqueue("echo", {"message": "not a task"})
    for result_id in ("no-such-id", echo_job):
        with pytest.raises(TaskResultDoesNotExist):
            backend().get_result(result_id)
        with pytest.raises(TaskResultDoesNotExist):
            async_to_sync(backend().aget_result)(result_id)
        with pytest.raises(TaskResultDoesNotExist):
            tasks.add.get_result(result_id)


# Async


def test_an_async_task_runs_from_aenqueue_and_reads_with_aget_result(tasks: ModuleType) -> None:
    result = async_to_sync(tasks.multiply.aenqueue)(6, 7)
    fetched = async_to_sync(tasks.multiply.aget_result)(result.id)
    assert fetched.status == SUCCESSFUL
    assert fetched.return_value == 42
    assert JobExecution.objects.get(job_id=result.id).job_type == "django_task"


# What the receiver refuses


@pytest.mark.parametrize(
    ("path", "error"),
    [
        ("tests.testapp.tasks.not_a_task", "is not a task but a function"),
        ("os.getcwd", "is not a task but a builtin_function_or_method"),
        ("tests.testapp.tasks.TaskBoom", "is not a task but a type"),
        ("tests.testapp.tasks.no_such_task", "cannot be imported"),
        ("no_such_module.task", "cannot be imported"),
    ],
)
def test_a_path_that_is_not_a_task_is_refused_for_good(
    tasks: ModuleType, path: str, error: str
) -> None:
    job_id = job_dispatcher.enqueue("django_task", {"task": path}, options={"retries": 3})

    execution = JobExecution.objects.get(job_id=job_id)
    assert execution.status == JobStatus.FAILED
    assert execution.attempts == 1  # not retried
    assert error in execution.error
    assert not SideEffect.objects.exists()
    with pytest.raises(TaskResultDoesNotExist, match=r"not a task|cannot be imported"):
        backend().get_result(job_id)


def test_the_receiver_tells_qstash_not_to_retry_a_refused_task(
    held: list[OutgoingMessage], deliver: Callable[..., Any]
) -> None:
    job_id = job_dispatcher.enqueue("django_task", {"task": "tests.testapp.tasks.not_a_task"})
    response = deliver({"job_id": job_id, "job_type": "django_task"})
    assert response.status_code == 489
    assert response["Upstash-NonRetryable-Error"] == "true"
    assert JobExecution.objects.get(job_id=job_id).status == JobStatus.FAILED
    assert not SideEffect.objects.exists()


def test_a_malformed_payload_fails_with_the_validation_error(tasks: ModuleType) -> None:
    job_id = job_dispatcher.enqueue("django_task", {"task": "x.y"}, options={"retries": 2})
    # A row written by hand (or by an older version) with a payload the schema refuses.
    JobExecution.objects.filter(job_id=job_id).update(
        status=JobStatus.QUEUED, payload={"task": "tests.testapp.tasks.add", "args": "1, 2"}
    )
    assert run_delivery(job_id) is Outcome.REJECTED
    assert "JobValidationError" in JobExecution.objects.get(job_id=job_id).error
    with pytest.raises(TaskResultDoesNotExist):
        backend().get_result(job_id)


def test_a_task_for_a_backend_this_site_lacks_is_refused(tasks: ModuleType) -> None:
    payload = {"task": "tests.testapp.tasks.add", "args": [1, 2], "backend": "elsewhere"}
    job_id = job_dispatcher.enqueue("django_task", payload)
    execution = JobExecution.objects.get(job_id=job_id)
    assert (execution.status, execution.attempts) == (JobStatus.FAILED, 1)
    assert "cannot run here" in execution.error
    assert not SideEffect.objects.exists()


def test_a_delivery_reads_the_row_once_for_the_task_result(
    tasks: ModuleType, held: list[OutgoingMessage]
) -> None:
    result = tasks.add.enqueue(1, 2)
    table = JobExecution._meta.db_table
    with CaptureQueriesContext(connection) as queries:
        assert run_delivery(result.id) is Outcome.COMPLETED
    reads = [
        query["sql"]
        for query in queries.captured_queries
        if query["sql"].startswith("SELECT") and table in query["sql"]
    ]
    # The claim reads what every job needs; a task's result needs a few more columns, read
    # together (not one query per column), and then signals reuse them.
    assert len(reads) <= 1, reads


# Signals


@pytest.fixture
def task_signals() -> Iterator[list[tuple[str, type, Any]]]:
    """Every task signal sent, as (name, sender, task_result)."""
    seen: list[tuple[str, type, Any]] = []

    def recorder(name: str) -> Callable[..., None]:
        def receive(sender: type, task_result: Any, **kwargs: Any) -> None:
            seen.append((name, sender, task_result))

        return receive

    receivers = {
        task_enqueued: recorder("enqueued"),
        task_started: recorder("started"),
        task_finished: recorder("finished"),
    }
    for signal, receiver in receivers.items():
        signal.connect(receiver)
    yield seen
    for signal, receiver in receivers.items():
        signal.disconnect(receiver)


def test_signals_are_sent_as_djangos_backends_send_them(
    tasks: ModuleType, task_signals: list[tuple[str, type, Any]]
) -> None:
    result = tasks.add.enqueue(1, 2)
    assert [(name, sender, sent.status) for name, sender, sent in task_signals] == [
        ("enqueued", QStashBackend, READY),
        ("started", QStashBackend, RUNNING),
        ("finished", QStashBackend, SUCCESSFUL),
    ]
    assert {sent.id for _, _, sent in task_signals} == {result.id}
    assert task_signals[-1][2].return_value == 3


def test_a_retried_task_starts_each_attempt_and_finishes_once(
    tasks: ModuleType, task_signals: list[tuple[str, type, Any]]
) -> None:
    tasks.flaky.enqueue(fail_times=1)
    assert [name for name, _, _ in task_signals] == ["enqueued", "started", "started", "finished"]
    assert [sent.attempts for name, _, sent in task_signals if name == "started"] == [1, 2]
    finished = task_signals[-1][2]
    assert (finished.status, len(finished.errors)) == (SUCCESSFUL, 1)


def test_a_failed_task_finishes_failed_with_its_error(
    tasks: ModuleType, task_signals: list[tuple[str, type, Any]]
) -> None:
    with override_settings(TASKS=tasks_setting(retries=0)):
        tasks.explode.enqueue("boom")
    name, _, finished = task_signals[-1]
    assert (name, finished.status) == ("finished", FAILED)
    assert finished.errors[0].exception_class is tasks.TaskBoom


def test_a_cancelled_task_finishes_failed(
    tasks: ModuleType, held: list[OutgoingMessage], task_signals: list[tuple[str, type, Any]]
) -> None:
    result = tasks.add.enqueue(1, 2)
    job_dispatcher.cancel(result.id)
    assert [(name, sent.status) for name, _, sent in task_signals] == [
        ("enqueued", READY),
        ("finished", FAILED),
    ]
    assert task_signals[-1][2].errors[-1].exception_class is TaskCancelled


def test_a_refused_path_sends_no_task_signal(task_signals: list[tuple[str, type, Any]]) -> None:
    job_dispatcher.enqueue("django_task", {"task": "tests.testapp.tasks.not_a_task"})
    assert task_signals == []


def test_a_failing_signal_receiver_does_not_fail_the_task(
    tasks: ModuleType, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(**kwargs: Any) -> None:
        raise RuntimeError("receiver bug")

    for signal in (task_enqueued, task_started, task_finished):
        signal.connect(broken)
    try:
        result = tasks.add.enqueue(1, 2)
    finally:
        for signal in (task_enqueued, task_started, task_finished):
            signal.disconnect(broken)
    result.refresh()
    assert result.status == SUCCESSFUL
    logged = [r for r in caplog.records if "of a task signal raised" in r.getMessage()]
    assert len(logged) == 3
    assert all(f"for task {result.id}." in record.getMessage() for record in logged)
    assert all(record.exc_info and "receiver bug" in str(record.exc_info[1]) for record in logged)


# Checks and setup


def test_a_configured_backend_passes_its_checks(tasks: ModuleType) -> None:
    assert backend().check() == []


def test_checks_name_a_missing_receiver_url_and_token(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("QSTASH_TOKEN", "QSTASH_RECEIVER_URL"):
        monkeypatch.delenv(name, raising=False)
    with override_settings(QSTASH_JOBS={"TRANSPORT": "qstash"}):
        ids = [message.id for message in backend().check()]
        assert ids == ["django_qstash_jobs.tasks.E003", "django_qstash_jobs.tasks.E004"]
        # Django's own check of task backends reports them.
        assert "django_qstash_jobs.tasks.E003" in [
            message.id for message in run_checks(databases=["default"])
        ]
    with override_settings(QSTASH_JOBS={"TRANSPORT": "immediate"}):
        assert backend().check() == []


@pytest.mark.parametrize(
    ("options", "named"),
    [({"delay": 1000}, "'delay'"), ({"retries": -1}, "retries"), ({"headers": "x"}, "headers")],
)
def test_invalid_options_fail_the_check_and_the_enqueue(
    tasks: ModuleType, options: dict[str, Any], named: str
) -> None:
    with override_settings(TASKS=tasks_setting(**options)):
        [message] = backend().check()
        assert message.id == "django_qstash_jobs.tasks.E002"
        assert named in message.msg
        with pytest.raises(ImproperlyConfigured, match=named):
            tasks.add.enqueue(1, 2)
    assert not JobExecution.objects.exists()


def test_without_the_app_the_backend_says_to_install_it() -> None:
    # Its models cannot be imported without it: the check framework would get a RuntimeError
    # naming a model, and never reach a check of its own.
    code = (
        "import django; from django.conf import settings; "
        "settings.configure(INSTALLED_APPS=['django.contrib.contenttypes'], "
        "TASKS={'default': {'BACKEND': 'django_qstash_jobs.tasks.QStashBackend'}}); "
        "django.setup(); "
        "from django.core.exceptions import ImproperlyConfigured; "
        "from importlib import import_module\n"
        "try:\n    import_module('django_qstash_jobs.tasks')\n"
        "except ImproperlyConfigured as exc:\n    print(exc)"
    )
    completed = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env={"PATH": ""},
        capture_output=True,
        text=True,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    assert 'add "django_qstash_jobs" to INSTALLED_APPS' in completed.stdout


@pytest.mark.parametrize("options", [None, ["retries"]], ids=["None", "a list"])
def test_options_that_are_no_dict_are_reported_by_the_check(options: Any) -> None:
    setting = {"default": {"BACKEND": "django_qstash_jobs.tasks.QStashBackend", "OPTIONS": options}}
    with override_settings(TASKS=setting):
        messages = backend().check()
    assert [message.id for message in messages] == ["django_qstash_jobs.tasks.E002"]


def test_the_app_registers_the_job_type_when_it_starts() -> None:
    # In a fresh process: the app's ready() alone, nothing importing the backend.
    code = (
        "import django, sys; django.setup(); "
        "from django_qstash_jobs.registry import registry; "
        "assert 'django_qstash_jobs.tasks' not in sys.modules; "
        "print('django_task' in registry)"
    )
    completed = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env={"DJANGO_SETTINGS_MODULE": "tests.settings", "PATH": ""},
        capture_output=True,
        text=True,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.strip() == "True"


def test_without_the_tasks_framework_the_import_says_what_is_needed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Undone before the fixtures' teardown, which needs the framework back.
    with monkeypatch.context() as patch:
        for framework in ("django.tasks", "django_tasks"):
            patch.setitem(sys.modules, framework, None)
        for module in ("django_qstash_jobs.tasks", "django_qstash_jobs.task_jobs"):
            patch.delitem(sys.modules, module)
        with pytest.raises(ImportError, match=r"Django 6\.0 or later.*django-tasks backport"):
            importlib.import_module("django_qstash_jobs.tasks")


def test_a_task_raising_a_frozen_exception_keeps_its_error_and_is_not_retried(
    tasks: ModuleType,
) -> None:
    # Marking the exception as recorded would raise FrozenInstanceError in its place: the
    # task's own PermanentJobError lost, and the task run again on every attempt.
    with override_settings(TASKS=tasks_setting(retries=3)):
        result = tasks.refuse_frozen.enqueue()

    row = JobExecution.objects.get(job_id=result.id)
    assert (row.status, row.attempts) == (JobStatus.FAILED, 1)
    assert row.error.startswith("FrozenRefusal")
    failed = backend().get_result(result.id)
    assert [error.exception_class_path for error in failed.errors] == [
        "tests.testapp.tasks.FrozenRefusal"
    ]


def test_the_check_reports_a_callback_every_enqueue_would_refuse() -> None:
    receiver_url = settings.QSTASH_JOBS["RECEIVER_URL"]
    with override_settings(TASKS=tasks_setting(callback=receiver_url)):
        [message] = backend().check()
    assert message.id == "django_qstash_jobs.tasks.E002"
    assert "RECEIVER_URL" in message.msg


def test_a_qstash_jobs_that_is_no_dict_is_reported_once_not_raised() -> None:
    with override_settings(TASKS=tasks_setting(), QSTASH_JOBS=["not", "a", "dict"]):
        ids = [message.id for message in run_checks(databases=["default"])]
    assert "django_qstash_jobs.E019" in ids
