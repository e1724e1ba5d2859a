"""Schedules on the in-process transport: the API, declarations, sync_schedules and the admin."""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Callable, Iterator
from datetime import timedelta
from io import StringIO
from typing import Any

import pytest
from django.conf import settings
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection, transaction
from django.db.models.signals import pre_save
from django.test import Client, override_settings
from django.utils import timezone

from django_qstash_jobs import job_dispatcher
from django_qstash_jobs.checks import check_schedules
from django_qstash_jobs.exceptions import JobValidationError, ScheduleError, UnknownJobTypeError
from django_qstash_jobs.execution import PAUSED_FIRING_ERROR, Delivery, Outcome, execute
from django_qstash_jobs.models import JobExecution, JobSchedule, JobStatus, ScheduleSource
from django_qstash_jobs.registry import register_job, registry
from django_qstash_jobs.schedules import (
    SCHEDULE_ID_PREFIX,
    apply_action,
    plan_sync,
    push,
    schedule_id_for,
)
from django_qstash_jobs.transports import get_transport
from django_qstash_jobs.transports.base import OutgoingSchedule, RemoteSchedule
from django_qstash_jobs.transports.immediate import ImmediateTransport, clear_schedules
from tests.concurrency import InThread, at_once
from tests.signing_helpers import qstash_token
from tests.testapp.models import SideEffect

pytestmark = pytest.mark.django_db

RECEIVER_URL = settings.QSTASH_JOBS["RECEIVER_URL"]
NIGHTLY = {
    "name": "nightly-echo",
    "job_type": "echo",
    "cron": "0 2 * * *",
    "payload": {"message": "night"},
    "metadata": {"organization_id": 456},
}
HOURLY = {
    "name": "hourly-echo",
    "job_type": "echo",
    "cron": "0 * * * *",
    "payload": {"message": "h"},
}


@pytest.fixture(autouse=True)
def _empty_schedule_store() -> Iterator[None]:
    clear_schedules()
    yield
    clear_schedules()


def transport() -> ImmediateTransport:
    current = get_transport()
    assert isinstance(current, ImmediateTransport)
    return current


def remote() -> dict[str, RemoteSchedule]:
    return {schedule.schedule_id: schedule for schedule in transport().list_schedules()}


def declaring(*declarations: dict[str, Any], **extra: Any) -> Any:
    return override_settings(
        QSTASH_JOBS={**settings.QSTASH_JOBS, "SCHEDULES": list(declarations), **extra}
    )


def sync(*arguments: str) -> str:
    out = StringIO()
    call_command("sync_schedules", *arguments, stdout=out)
    return out.getvalue()


def actions(output: str) -> dict[str, str]:
    """The table's rows as {name: action}."""
    rows = [line.split() for line in output.splitlines()[1:] if line and line[0].islower()]
    return {row[1]: row[0] for row in rows}


# -- job_dispatcher.schedule and friends ----------------------------------------------------


def test_schedule_records_the_schedule_and_creates_it_on_qstash() -> None:
    schedule_id = job_dispatcher.schedule(
        "echo", "0 2 * * *", {"message": "night"}, {"user_id": 7}, name="nightly"
    )

    row = JobSchedule.objects.get(schedule_id=schedule_id)
    assert (row.name, row.job_type, row.cron) == ("nightly", "echo", "0 2 * * *")
    assert row.payload == {"message": "night", "times": 1}  # as the schema stores it
    assert row.user_id == "7"
    assert row.source == ScheduleSource.CODE
    assert row.last_synced_at is not None
    assert remote()[schedule_id] == RemoteSchedule(
        schedule_id=schedule_id,
        destination=RECEIVER_URL,
        cron="0 2 * * *",
        body={"schedule_id": schedule_id, "job_type": "echo"},
        retries=2,  # the echo job type's retries
        paused=False,
        failure_callback=RECEIVER_URL,
    )


def test_schedule_ids_are_prefixed_safe_and_distinct_per_site() -> None:
    schedule_id = schedule_id_for("Nightly cleanup / org #4")
    assert schedule_id.startswith(SCHEDULE_ID_PREFIX + "Nightly-cleanup-org-4-")
    assert re.fullmatch(r"[A-Za-z0-9_.-]+", schedule_id)
    with override_settings(
        QSTASH_JOBS={**settings.QSTASH_JOBS, "RECEIVER_URL": "https://staging.example.com/r/"}
    ):
        assert schedule_id_for("Nightly cleanup / org #4") != schedule_id


def test_scheduling_the_same_name_again_updates_the_one_schedule() -> None:
    first = job_dispatcher.schedule("echo", "0 2 * * *", {"message": "a"}, name="nightly")
    second = job_dispatcher.schedule("echo", "30 3 * * *", {"message": "b"}, name="nightly")

    assert second == first
    row = JobSchedule.objects.get()
    assert (row.cron, row.payload["message"]) == ("30 3 * * *", "b")
    assert list(remote()) == [first]
    assert remote()[first].cron == "30 3 * * *"


def test_a_paused_schedule_stays_paused_when_it_is_scheduled_again() -> None:
    schedule_id = job_dispatcher.schedule("echo", "0 2 * * *", {"message": "a"}, name="nightly")
    job_dispatcher.pause_schedule(schedule_id)
    job_dispatcher.schedule("echo", "0 4 * * *", {"message": "a"}, name="nightly")
    assert JobSchedule.objects.get().paused is True
    assert remote()[schedule_id].paused is True


def test_the_payload_is_validated_when_scheduling() -> None:
    with pytest.raises(ScheduleError, match="message") as caught:
        job_dispatcher.schedule("echo", "0 2 * * *", {"times": "x"}, name="bad")
    # Also a JobValidationError, as from enqueue, with the field named.
    assert isinstance(caught.value, JobValidationError)
    assert {error["field"] for error in caught.value.errors} == {"message", "times"}
    assert not JobSchedule.objects.exists()
    assert remote() == {}


def test_an_unknown_job_type_is_refused() -> None:
    with pytest.raises(ScheduleError, match="Unknown job type 'nope'") as caught:
        job_dispatcher.schedule("nope", "0 2 * * *", {}, name="bad")
    assert isinstance(caught.value, UnknownJobTypeError)
    assert not JobSchedule.objects.exists()


def test_a_bad_cron_expression_is_refused_before_anything_is_saved() -> None:
    with pytest.raises(ScheduleError, match="The hour field '25' is out of range"):
        job_dispatcher.schedule("echo", "0 25 * * *", {"message": "x"}, name="bad")
    with pytest.raises(ScheduleError, match="Invalid minute field"):
        job_dispatcher.schedule("echo", "\u0661 * * * *", {"message": "x"}, name="bad")
    assert not JobSchedule.objects.exists()
    assert remote() == {}


def test_schedule_metadata_is_checked() -> None:
    with pytest.raises(TypeError, match="Unknown metadata key 'tenant'"):
        job_dispatcher.schedule("echo", "0 2 * * *", {"message": "x"}, {"tenant": 1}, name="m")
    with pytest.raises(ScheduleError, match="idempotency_key"):
        job_dispatcher.schedule(
            "echo", "0 2 * * *", {"message": "x"}, {"idempotency_key": "k"}, name="m"
        )
    with pytest.raises(ScheduleError, match="schedule name"):
        job_dispatcher.schedule("echo", "0 2 * * *", {"message": "x"}, name=" ")
    assert not JobSchedule.objects.exists()


def test_pause_and_resume_change_the_row_and_qstash() -> None:
    schedule_id = job_dispatcher.schedule("echo", "0 2 * * *", {"message": "x"}, name="n")

    job_dispatcher.pause_schedule(schedule_id)
    assert JobSchedule.objects.get().paused is True
    assert remote()[schedule_id].paused is True

    job_dispatcher.resume_schedule("n")  # by name works too
    assert JobSchedule.objects.get().paused is False
    assert remote()[schedule_id].paused is False


def test_pausing_a_schedule_qstash_lost_recreates_it_paused() -> None:
    schedule_id = job_dispatcher.schedule("echo", "0 2 * * *", {"message": "x"}, name="n")
    clear_schedules()
    job_dispatcher.pause_schedule(schedule_id)
    assert remote()[schedule_id].paused is True
    assert remote()[schedule_id].cron == "0 2 * * *"


def test_a_push_sends_the_row_as_it_is_now_not_as_the_caller_loaded_it() -> None:
    schedule_id = job_dispatcher.schedule("echo", "0 2 * * *", {"message": "x"}, name="n")
    loaded = JobSchedule.objects.get()  # e.g. by the admin's sync action, just before a pause
    job_dispatcher.pause_schedule(schedule_id)
    push(loaded)
    assert remote()[schedule_id].paused is True
    assert loaded.paused is True


def qstash_unreachable(self: ImmediateTransport, schedule_id: str) -> None:
    raise ScheduleError("QStash could not be reached (test)")


@pytest.mark.django_db(transaction=True)
@pytest.mark.skipif(
    connection.vendor == "sqlite", reason="SQLite locks no rows: no lock is held across QStash"
)
def test_a_pause_and_a_resume_at_once_leave_qstash_as_the_row(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A resume arrives while a pause is on its way to QStash. Unserialised, the resume's write
    # and QStash call both came between the pause's: the row said running, QStash paused.
    schedule_id = job_dispatcher.schedule("echo", "0 2 * * *", {"message": "x"}, name="n")
    resumer = InThread(lambda: job_dispatcher.resume_schedule(schedule_id))
    pause_on_qstash = ImmediateTransport.pause_schedule

    def pause_while_a_resume_arrives(self: ImmediateTransport, schedule_id: str) -> None:
        resumer.start()
        resumer.join(timeout=0.5)  # the resume waits for this pause to finish
        pause_on_qstash(self, schedule_id)

    monkeypatch.setattr(ImmediateTransport, "pause_schedule", pause_while_a_resume_arrives)
    job_dispatcher.pause_schedule(schedule_id)
    resumer.join()

    assert JobSchedule.objects.get().paused is False  # the resume came last
    assert remote()[schedule_id].paused is False


@pytest.mark.django_db(transaction=True)
def test_a_firing_is_recorded_while_a_pause_waits_for_qstash(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    schedule_id = job_dispatcher.schedule("echo", "0 2 * * *", {"message": "x"}, name="n")
    firing = InThread(
        lambda: execute(Delivery(job_id=None, message_id="msg_meanwhile", schedule_id=schedule_id))
    )
    pause_on_qstash = ImmediateTransport.pause_schedule

    def slow_pause(self: ImmediateTransport, schedule_id: str) -> None:
        firing.start()
        firing.join(timeout=5)
        # The job row references the schedule: a lock that blocks that reference (FOR UPDATE)
        # would hold the delivery until QStash answered the pause.
        assert not firing.is_alive()
        pause_on_qstash(self, schedule_id)

    monkeypatch.setattr(ImmediateTransport, "pause_schedule", slow_pause)
    job_dispatcher.pause_schedule(schedule_id)
    firing.join()
    # SQLite has no row lock: the pause is committed before QStash is told, and a transaction
    # held meanwhile would stop every other write of the site (this firing's among them).
    # PostgreSQL holds the lock, the pause not yet committed: the firing runs.
    expected = JobStatus.COMPLETED if connection.vendor == "postgresql" else JobStatus.CANCELLED
    assert JobExecution.objects.get(message_id="msg_meanwhile").status == expected


def test_unknown_schedules_are_an_error() -> None:
    for operation in (
        job_dispatcher.pause_schedule,
        job_dispatcher.resume_schedule,
        job_dispatcher.unschedule,
    ):
        with pytest.raises(ScheduleError, match="No schedule has the id or name 'ghost'"):
            operation("ghost")


def test_unschedule_deletes_it_from_qstash_and_the_database_and_keeps_past_jobs() -> None:
    schedule_id = job_dispatcher.schedule("echo", "0 2 * * *", {"message": "x"}, name="n")
    transport().fire_schedule(schedule_id)
    job_dispatcher.unschedule(schedule_id)

    assert not JobSchedule.objects.exists()
    assert remote() == {}
    execution = JobExecution.objects.get()
    assert execution.status == JobStatus.COMPLETED
    assert execution.schedule is None


def test_a_declared_schedule_cannot_be_changed_or_deleted_from_code() -> None:
    with declaring(NIGHTLY):
        sync()
        with pytest.raises(ScheduleError, match="declared in QSTASH_JOBS"):
            job_dispatcher.schedule("echo", "0 5 * * *", {"message": "x"}, name="nightly-echo")
        with pytest.raises(ScheduleError, match="remove it there"):
            job_dispatcher.unschedule("nightly-echo")
    assert JobSchedule.objects.get().cron == "0 2 * * *"


def test_when_qstash_refuses_the_row_is_kept_for_sync(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(self: ImmediateTransport, schedule: OutgoingSchedule) -> None:
        raise ScheduleError("QStash could not be reached (test)")

    monkeypatch.setattr(ImmediateTransport, "upsert_schedule", refuse)
    with pytest.raises(ScheduleError, match="is saved, but QStash does not match it yet"):
        job_dispatcher.schedule("echo", "0 2 * * *", {"message": "x"}, name="n")
    row = JobSchedule.objects.get()
    assert row.last_synced_at is None
    monkeypatch.undo()

    assert actions(sync()) == {"n": "create"}
    assert remote()[row.schedule_id].cron == "0 2 * * *"


# -- firings --------------------------------------------------------------------------------


def test_a_firing_records_a_job_linked_to_its_schedule() -> None:
    schedule_id = job_dispatcher.schedule(
        "echo", "0 2 * * *", {"message": "tick"}, {"organization_id": 456}, name="n"
    )
    message_id = transport().fire_schedule(schedule_id)

    execution = JobExecution.objects.get()
    assert execution.message_id == message_id
    assert execution.schedule == JobSchedule.objects.get()
    assert execution.status == JobStatus.COMPLETED
    assert execution.result == {"echo": "tick", "attempt": 1}
    assert execution.organization_id == "456"
    assert execution.max_retries == 2


def test_a_redelivered_firing_is_the_same_job() -> None:
    schedule_id = job_dispatcher.schedule("echo", "0 2 * * *", {"message": "tick"}, name="n")
    message_id = transport().fire_schedule(schedule_id)
    transport().fire_schedule(schedule_id, message_id=message_id)

    execution = JobExecution.objects.get()
    assert execution.attempts == 1  # the second delivery found it finished and did not run it
    assert SideEffect.objects.count() == 1


@pytest.mark.django_db(transaction=True)
@pytest.mark.skipif(
    connection.vendor != "postgresql",
    reason="a failed statement aborts the transaction around it on PostgreSQL only",
)
def test_a_firing_recorded_meanwhile_by_a_concurrent_delivery_is_the_same_job() -> None:
    # The other delivery's row is committed between our lookup and our insert. Inside a
    # transaction (the immediate transport can run there), our failed insert must not poison it.
    schedule_id = job_dispatcher.schedule("echo", "0 2 * * *", {"message": "tick"}, name="n")
    schedule = JobSchedule.objects.get()

    def concurrent_delivery(sender: Any, instance: JobExecution, **kwargs: Any) -> None:
        if instance._state.adding and instance.message_id == "msg_raced":
            row = JobExecution(job_type="echo", status=JobStatus.COMPLETED, message_id="msg_raced",
                               schedule=schedule)  # fmt: skip
            at_once(lambda: JobExecution.objects.bulk_create([row]), 1)  # its own connection

    pre_save.connect(concurrent_delivery, sender=JobExecution)
    try:
        with transaction.atomic():
            outcome = execute(
                Delivery(job_id=None, message_id="msg_raced", schedule_id=schedule_id)
            )
            assert JobExecution.objects.filter(message_id="msg_raced").count() == 1
    finally:
        pre_save.disconnect(concurrent_delivery, sender=JobExecution)

    assert outcome is Outcome.ACKNOWLEDGED


def test_a_retried_firing_over_http_runs_the_same_row_again(deliver: Callable[..., Any]) -> None:
    schedule_id = job_dispatcher.schedule("flaky", "0 2 * * *", {"fail_times": 1}, name="f")
    body = {"schedule_id": schedule_id, "job_type": "flaky"}
    headers = {"Upstash-Schedule-Id": schedule_id}

    first = deliver(body, message_id="msg_fire_1", retried=0, headers=headers)
    assert first.status_code == 500
    second = deliver(body, message_id="msg_fire_1", retried=1, headers=headers)
    assert second.status_code == 200

    execution = JobExecution.objects.get()
    assert (execution.status, execution.attempts) == (JobStatus.COMPLETED, 2)
    assert execution.schedule is not None and execution.schedule.schedule_id == schedule_id
    # Another firing is another job.
    deliver(body, message_id="msg_fire_2", headers=headers)
    assert JobExecution.objects.count() == 2


def test_a_firing_runs_the_schedule_its_signed_body_names_never_the_header_s(
    deliver: Callable[..., Any],
) -> None:
    # The Upstash-Schedule-Id header is outside the signature: a captured firing of one
    # schedule must not run another by changing it.
    a = job_dispatcher.schedule("echo", "0 2 * * *", {"message": "A"}, name="a")
    b = job_dispatcher.schedule("echo", "0 3 * * *", {"message": "B"}, name="b")
    signed_for_a = {"schedule_id": a, "job_type": "echo"}

    swapped = deliver(signed_for_a, message_id="msg_a", headers={"Upstash-Schedule-Id": b})
    no_header = deliver(signed_for_a, message_id="msg_a2")

    assert swapped.status_code == 489
    assert no_header.status_code == 200
    (execution,) = JobExecution.objects.all()
    assert execution.schedule is not None and execution.schedule.schedule_id == a
    assert execution.result is not None and execution.result["echo"] == "A"


def test_a_firing_s_signature_sent_again_under_new_message_ids_runs_nothing_more(
    deliver: Callable[..., Any],
) -> None:
    schedule_id = job_dispatcher.schedule("echo", "0 2 * * *", {"message": "A"}, name="a")
    body = json.dumps({"schedule_id": schedule_id, "job_type": "echo"}).encode()
    token = qstash_token(body)
    headers = {"Upstash-Schedule-Id": schedule_id}

    answers = [
        deliver(body, token=token, message_id=message_id, headers=headers).status_code
        for message_id in ("msg_1", "msg_1", "msg_forged_2", "msg_forged_3")
    ]

    # The same message again is a redelivery, acknowledged; another message id is a replay.
    assert answers == [200, 200, 401, 401]
    assert JobExecution.objects.count() == 1
    assert SideEffect.objects.filter(label="echo").count() == 1


def test_a_busy_firing_is_told_to_come_back_when_its_lease_ends(
    deliver: Callable[..., Any],
) -> None:
    schedule_id = job_dispatcher.schedule("echo", "0 2 * * *", {"message": "A"}, name="a")
    body = {"schedule_id": schedule_id, "job_type": "echo"}
    headers = {"Upstash-Schedule-Id": schedule_id}
    assert deliver(body, message_id="msg_f", headers=headers).status_code == 200
    # As if the delivery that claimed it had died: running, with 290 s of lease left.
    JobExecution.objects.update(
        status=JobStatus.RUNNING, lease_expires_at=timezone.now() + timedelta(seconds=290)
    )

    response = deliver(body, message_id="msg_f", retried=1, headers=headers)

    # Not the few seconds of a job not recorded yet: QStash would spend its retries meanwhile.
    assert response.status_code == 503
    assert 280 <= int(response["Retry-After"]) <= 290


def test_a_paused_schedule_fired_by_qstash_is_recorded_cancelled_without_running(
    monkeypatch: pytest.MonkeyPatch, django_capture_on_commit_callbacks: Any
) -> None:
    schedule_id = job_dispatcher.schedule("echo", "0 2 * * *", {"message": "tick"}, name="n")
    monkeypatch.setattr(ImmediateTransport, "pause_schedule", qstash_unreachable)
    with pytest.raises(ScheduleError, match="is marked paused, but QStash does not match it yet"):
        job_dispatcher.pause_schedule(schedule_id)
    monkeypatch.undo()
    assert remote()[schedule_id].paused is False  # QStash missed the pause, and fires

    message_id = transport().fire_schedule(schedule_id)

    execution = JobExecution.objects.get()
    assert (execution.message_id, execution.status) == (message_id, JobStatus.CANCELLED)
    assert execution.error == PAUSED_FIRING_ERROR
    assert execution.finished_at is not None
    assert execution.schedule == JobSchedule.objects.get()
    assert execution.attempts == 0
    assert not SideEffect.objects.exists()
    # Wanted after all: a retry runs it.
    with django_capture_on_commit_callbacks(execute=True):
        job_dispatcher.retry(execution.job_id)
    execution.refresh_from_db()
    assert execution.status == JobStatus.COMPLETED


def test_a_firing_of_a_paused_schedule_is_acknowledged_and_one_recorded_before_runs_on(
    deliver: Callable[..., Any],
) -> None:
    schedule_id = job_dispatcher.schedule("flaky", "0 2 * * *", {"fail_times": 1}, name="f")
    body = {"schedule_id": schedule_id, "job_type": "flaky"}
    headers = {"Upstash-Schedule-Id": schedule_id}
    assert deliver(body, message_id="msg_before", headers=headers).status_code == 500
    job_dispatcher.pause_schedule(schedule_id)

    # Recorded before the pause: QStash's retry runs it.
    assert deliver(body, message_id="msg_before", retried=1, headers=headers).status_code == 200
    before = JobExecution.objects.get(message_id="msg_before")
    assert (before.status, before.attempts) == (JobStatus.COMPLETED, 2)
    # Fired after the pause (QStash missed it): acknowledged, not run, and so on redelivery.
    for retried in (0, 1):
        response = deliver(body, message_id="msg_after", retried=retried, headers=headers)
        assert response.status_code == 200
    after = JobExecution.objects.get(message_id="msg_after")
    assert (after.status, after.attempts) == (JobStatus.CANCELLED, 0)
    assert SideEffect.objects.count() == 2  # the two attempts of the first firing


def test_qstash_giving_up_on_a_firing_of_a_paused_schedule_records_it_cancelled(
    deliver: Callable[..., Any],
) -> None:
    schedule_id = job_dispatcher.schedule("echo", "0 2 * * *", {"message": "x"}, name="n")
    JobSchedule.objects.filter(schedule_id=schedule_id).update(paused=True)
    source = json.dumps({"schedule_id": schedule_id, "job_type": "echo"}).encode()
    failure_notice = {
        "status": 504,
        "retried": 2,
        "sourceMessageId": "msg_never_arrived",
        "sourceBody": base64.b64encode(source).decode(),
        "scheduleId": schedule_id,
    }

    assert deliver(failure_notice).status_code == 200

    execution = JobExecution.objects.get()
    assert (execution.message_id, execution.status) == ("msg_never_arrived", JobStatus.CANCELLED)
    assert execution.error == PAUSED_FIRING_ERROR


def test_a_firing_of_a_deleted_schedule_is_rejected(deliver: Callable[..., Any]) -> None:
    response = deliver(
        {"schedule_id": "djqj-gone"}, message_id="m", headers={"Upstash-Schedule-Id": "djqj-gone"}
    )
    assert response.status_code == 489
    assert not JobExecution.objects.exists()


def test_run_now_enqueues_the_job_linked_to_the_schedule(
    django_capture_on_commit_callbacks: Any,
) -> None:
    from django_qstash_jobs.schedules import run_schedule_now

    schedule_id = job_dispatcher.schedule(
        "echo", "0 2 * * *", {"message": "now"}, {"user_id": 9}, name="n"
    )
    with django_capture_on_commit_callbacks(execute=True) as published:
        job_id = run_schedule_now(schedule_id)
        # Linked inside the transaction, before the publish that waits for its commit.
        assert JobExecution.objects.get(job_id=job_id).schedule is not None
        assert published == []

    execution = JobExecution.objects.get(job_id=job_id)
    assert execution.schedule == JobSchedule.objects.get()
    assert execution.status == JobStatus.COMPLETED
    assert execution.result == {"echo": "now", "attempt": 1}
    assert execution.user_id == "9"


# -- declarations and their system check ----------------------------------------------------


def check_messages(*declarations: Any) -> list[str]:
    with override_settings(QSTASH_JOBS={**settings.QSTASH_JOBS, "SCHEDULES": list(declarations)}):
        messages = check_schedules()
    assert {message.id for message in messages} <= {"django_qstash_jobs.E009"}
    return [message.msg for message in messages]


def test_valid_declarations_pass_the_check() -> None:
    assert check_messages(NIGHTLY, HOURLY, {**HOURLY, "name": "h2", "paused": True}) == []


@pytest.mark.parametrize(
    ("declaration", "message"),
    [
        ("nightly", "must be a dict"),
        ({"job_type": "echo", "cron": "0 2 * * *"}, "lacks 'name'"),
        ({**NIGHTLY, "when": "nightly"}, "unknown keys 'when'"),
        ({**NIGHTLY, "cron": "0 2 * *"}, "has 4 fields"),
        ({**NIGHTLY, "cron": "0 2 * * 9"}, "day of week field '9' is out of range"),
        ({**NIGHTLY, "job_type": "nope"}, "Unknown job type 'nope'"),
        ({**NIGHTLY, "payload": {"times": 2}}, "message: Field required"),
        ({**NIGHTLY, "metadata": {"idempotency_key": "k"}}, "idempotency_key"),
        ({**NIGHTLY, "metadata": {"team": 1}}, "Unknown metadata key 'team'"),
        ({**NIGHTLY, "paused": "yes"}, "'paused' must be True or False"),
    ],
)
def test_each_bad_declaration_is_a_check_error(declaration: Any, message: str) -> None:
    [error] = check_messages(declaration)
    assert error.startswith("QSTASH_JOBS['SCHEDULES'][0]")
    assert message in error


def test_a_name_declared_twice_is_a_check_error() -> None:
    [error] = check_messages(NIGHTLY, {**NIGHTLY, "cron": "0 3 * * *"})
    assert "[1] ('nightly-echo')" in error
    assert "declared twice" in error


def test_sync_refuses_invalid_declarations_and_changes_nothing() -> None:
    with declaring(HOURLY, {**NIGHTLY, "cron": "0 2 * * 9"}), pytest.raises(CommandError) as caught:
        sync()
    assert "Nothing was synced" in str(caught.value)
    assert "day of week" in str(caught.value)
    assert not JobSchedule.objects.exists()
    assert remote() == {}


# -- sync_schedules -------------------------------------------------------------------------


def test_sync_creates_declared_schedules() -> None:
    with declaring(NIGHTLY, {**HOURLY, "paused": True}):
        output = sync()
    assert actions(output) == {"hourly-echo": "create", "nightly-echo": "create"}
    assert "2 created" in output

    nightly = JobSchedule.objects.get(name="nightly-echo")
    assert nightly.source == ScheduleSource.SETTINGS
    assert nightly.organization_id == "456"
    assert nightly.last_synced_at is not None
    assert remote()[nightly.schedule_id].cron == "0 2 * * *"
    hourly = JobSchedule.objects.get(name="hourly-echo")
    assert hourly.paused is True
    assert remote()[hourly.schedule_id].paused is True


def test_a_second_sync_changes_nothing() -> None:
    job_dispatcher.schedule("echo", "*/5 * * * *", {"message": "x"}, name="from-code")
    with declaring(NIGHTLY, HOURLY):
        sync()
        before = list(JobSchedule.objects.values().order_by("name"))
        remote_before = remote()
        output = sync()
    assert set(actions(output).values()) == {"unchanged"}
    assert "(no changes)" in output
    assert list(JobSchedule.objects.values().order_by("name")) == before
    assert remote() == remote_before


def test_sync_updates_an_edited_declaration_in_place() -> None:
    with declaring(NIGHTLY):
        sync()
    schedule_id = JobSchedule.objects.get().schedule_id
    with declaring({**NIGHTLY, "cron": "CRON_TZ=Europe/Paris 0 3 * * *"}):
        output = sync()
    assert actions(output) == {"nightly-echo": "update"}
    assert "cron '0 2 * * *' -> 'CRON_TZ=Europe/Paris 0 3 * * *'" in output
    assert JobSchedule.objects.get().cron == "CRON_TZ=Europe/Paris 0 3 * * *"
    assert list(remote()) == [schedule_id]
    assert remote()[schedule_id].cron == "CRON_TZ=Europe/Paris 0 3 * * *"


def test_a_payload_edit_updates_the_row_only(monkeypatch: pytest.MonkeyPatch) -> None:
    with declaring(NIGHTLY):
        sync()
    upserts: list[str] = []
    original = ImmediateTransport.upsert_schedule

    def counting(self: ImmediateTransport, schedule: OutgoingSchedule) -> None:
        upserts.append(schedule.schedule_id)
        original(self, schedule)

    monkeypatch.setattr(ImmediateTransport, "upsert_schedule", counting)
    with declaring({**NIGHTLY, "payload": {"message": "day"}}):
        output = sync()
    assert actions(output) == {"nightly-echo": "update"}
    assert JobSchedule.objects.get().payload["message"] == "day"
    assert upserts == []  # the payload lives on the row; QStash's copy did not change


def test_sync_deletes_schedules_whose_declaration_was_removed() -> None:
    code_id = job_dispatcher.schedule("echo", "*/5 * * * *", {"message": "x"}, name="from-code")
    with declaring(NIGHTLY, HOURLY):
        sync()
    nightly_id = JobSchedule.objects.get(name="nightly-echo").schedule_id
    with declaring(HOURLY):
        output = sync()
    assert actions(output)["nightly-echo"] == "delete"
    assert actions(output)["from-code"] == "unchanged"
    assert set(JobSchedule.objects.values_list("name", flat=True)) == {"hourly-echo", "from-code"}
    assert nightly_id not in remote()
    assert code_id in remote()  # created in code: kept until unscheduled


def test_sync_deletes_its_own_orphans_and_leaves_other_schedules_alone() -> None:
    t = transport()
    orphan = OutgoingSchedule(f"{SCHEDULE_ID_PREFIX}old-1234", "echo", "0 1 * * *", 2)
    t.upsert_schedule(orphan)
    # Someone else's: another tool's id pointing here, and our prefix on another site.
    t.upsert_schedule(OutgoingSchedule("their-report", "echo", "0 1 * * *", 2))
    with override_settings(
        QSTASH_JOBS={**settings.QSTASH_JOBS, "RECEIVER_URL": "https://other.example.com/r/"}
    ):
        get_transport().upsert_schedule(
            OutgoingSchedule(f"{SCHEDULE_ID_PREFIX}other-site-1", "echo", "0 1 * * *", 2)
        )

    output = sync()

    assert f"delete  -     {orphan.schedule_id}" in output
    assert "2 QStash schedules of other sites or tools left alone" in output
    assert set(remote()) == {"their-report", f"{SCHEDULE_ID_PREFIX}other-site-1"}


def test_sync_pushes_code_schedules_qstash_lost() -> None:
    schedule_id = job_dispatcher.schedule("echo", "*/5 * * * *", {"message": "x"}, name="c")
    clear_schedules()
    output = sync()
    assert actions(output) == {"c": "create"}
    assert "missing on QStash" in output
    assert remote()[schedule_id].cron == "*/5 * * * *"


def test_sync_pauses_and_resumes_qstash_to_match_the_rows() -> None:
    with declaring(NIGHTLY, HOURLY):
        sync()
        nightly = JobSchedule.objects.get(name="nightly-echo")
        hourly = JobSchedule.objects.get(name="hourly-echo")
        # Rows changed while QStash could not hear of it.
        JobSchedule.objects.filter(pk=nightly.pk).update(paused=True)
        transport().pause_schedule(hourly.schedule_id)

        output = sync()

    assert actions(output) == {"hourly-echo": "resume", "nightly-echo": "pause"}
    assert remote()[nightly.schedule_id].paused is True
    assert remote()[hourly.schedule_id].paused is False


def test_a_pause_from_the_admin_survives_sync_unless_the_declaration_says_otherwise() -> None:
    with declaring(NIGHTLY):
        sync()
        job_dispatcher.pause_schedule("nightly-echo")
        assert actions(sync()) == {"nightly-echo": "unchanged"}
    assert JobSchedule.objects.get().paused is True
    with declaring({**NIGHTLY, "paused": False}):
        assert actions(sync()) == {"nightly-echo": "resume"}
    assert JobSchedule.objects.get().paused is False
    assert not next(iter(remote().values())).paused


def test_a_sync_overtaken_by_another_sync_carries_on() -> None:
    with declaring(NIGHTLY):
        plan = plan_sync()
        sync()  # another deploy's sync, between this one's plan and its work
        for action in plan.actions:
            apply_action(action)

    row = JobSchedule.objects.get()
    assert (row.name, row.cron, row.source) == ("nightly-echo", "0 2 * * *", "settings")
    assert remote()[row.schedule_id].cron == "0 2 * * *"


def test_a_pause_made_while_a_sync_runs_is_kept() -> None:
    with declaring(NIGHTLY):
        sync()
    with declaring({**NIGHTLY, "cron": "0 3 * * *"}):
        plan = plan_sync()
        job_dispatcher.pause_schedule("nightly-echo")  # by an operator, during the deploy
        for action in plan.actions:
            apply_action(action)

    row = JobSchedule.objects.get()
    assert (row.cron, row.paused) == ("0 3 * * *", True)
    assert (remote()[row.schedule_id].cron, remote()[row.schedule_id].paused) == (
        "0 3 * * *",
        True,
    )


def test_a_declaration_takes_over_a_code_schedule_of_the_same_name() -> None:
    schedule_id = job_dispatcher.schedule(
        "echo", "0 2 * * *", {"message": "x"}, name=NIGHTLY["name"]
    )
    with declaring(NIGHTLY):
        output = sync()
    assert actions(output) == {"nightly-echo": "update"}
    assert "now declared in settings" in output
    row = JobSchedule.objects.get()
    assert (row.schedule_id, row.source) == (schedule_id, ScheduleSource.SETTINGS)


def test_sync_follows_a_change_of_the_job_types_retries() -> None:
    @register_job("retrying_echo", retries=1)
    def retrying_echo(payload: dict[str, Any], ctx: Any) -> None:
        return None

    try:
        with declaring({"name": "r", "job_type": "retrying_echo", "cron": "0 2 * * *"}):
            sync()
            register_job("retrying_echo", retries=4, replace=True)(retrying_echo)
            output = sync()
        assert actions(output) == {"r": "update"}
        assert "retries 1 -> 4" in output
        assert next(iter(remote().values())).retries == 4
    finally:
        registry.unregister("retrying_echo")


def test_dry_run_prints_the_plan_and_changes_nothing() -> None:
    job_dispatcher.schedule("echo", "*/5 * * * *", {"message": "x"}, name="from-code")
    transport().upsert_schedule(
        OutgoingSchedule(f"{SCHEDULE_ID_PREFIX}stale-1", "echo", "* * * * *", 2)
    )
    before = remote()
    with declaring(NIGHTLY):
        output = sync("--dry-run")
    assert actions(output) == {"nightly-echo": "create", "from-code": "unchanged", "-": "delete"}
    assert "Dry run, nothing changed: 1 to create" in output
    assert remote() == before
    assert list(JobSchedule.objects.values_list("name", flat=True)) == ["from-code"]


def test_sync_fails_with_the_reason_when_qstash_cannot_be_reached(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def unreachable(self: ImmediateTransport) -> list[RemoteSchedule]:
        raise ScheduleError("QStash could not be reached at http://127.0.0.1:1 (ConnectError)")

    monkeypatch.setattr(ImmediateTransport, "list_schedules", unreachable)
    with declaring(NIGHTLY), pytest.raises(CommandError, match="could not be reached"):
        sync()
    assert not JobSchedule.objects.exists()


def test_sync_stops_at_the_first_refusal_and_says_where(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(self: ImmediateTransport, schedule: OutgoingSchedule) -> None:
        raise ScheduleError("QStash refused (test)")

    monkeypatch.setattr(ImmediateTransport, "upsert_schedule", refuse)
    out = StringIO()
    with declaring(NIGHTLY), pytest.raises(CommandError, match="Stopped at create nightly-echo"):
        call_command("sync_schedules", stdout=out)
    # It stopped before doing anything: it says so, not that there was nothing to sync.
    assert "0 created, 0 updated, 0 deleted" in out.getvalue()
    assert "No schedules" not in out.getvalue()
    # The row is saved; the next sync, with QStash back, pushes it.
    monkeypatch.undo()
    with declaring(NIGHTLY):
        assert actions(sync()) == {"nightly-echo": "create"}


def test_sync_needs_the_receiver_url() -> None:
    no_receiver = {**settings.QSTASH_JOBS, "RECEIVER_URL": ""}
    with override_settings(QSTASH_JOBS=no_receiver), pytest.raises(CommandError, match="RECEIVER"):
        sync()


def test_sync_points_schedules_at_a_new_receiver_url() -> None:
    with declaring(NIGHTLY):
        sync()
    schedule_id = JobSchedule.objects.get().schedule_id
    moved = "https://new.example.com/jobs/receive/"
    with declaring(NIGHTLY, RECEIVER_URL=moved):
        output = sync()
    assert actions(output) == {"nightly-echo": "update"}
    assert "destination" in output
    assert remote()[schedule_id].destination == moved  # same id, new destination


def test_the_schedules_check_is_registered() -> None:
    from django.core.checks import run_checks

    with declaring({**NIGHTLY, "cron": "0 2 * *"}):
        ids = {message.id for message in run_checks(databases=["default"])}
    assert "django_qstash_jobs.E009" in ids


def test_a_missing_receiver_url_is_a_schedule_error_on_the_qstash_transport() -> None:
    settings_without_receiver = {
        **settings.QSTASH_JOBS,
        "TRANSPORT": "qstash",
        "URL": "http://127.0.0.1:9",  # never contacted: the check comes first
        "RECEIVER_URL": "",
    }
    with (
        override_settings(QSTASH_JOBS=settings_without_receiver),
        pytest.raises(ScheduleError, match="RECEIVER_URL'] is not set"),
    ):
        job_dispatcher.schedule("echo", "0 2 * * *", {"message": "x"}, name="n")


def test_sync_with_nothing_to_do_says_so() -> None:
    assert sync().strip() == "No schedules declared, saved or on QStash for this site."


# -- the admin ------------------------------------------------------------------------------

CHANGELIST = "/admin/django_qstash_jobs/jobschedule/"


def act(client: Client, action: str, *rows: JobSchedule) -> list[str]:
    response = client.post(
        CHANGELIST,
        {"action": action, "_selected_action": [row.pk for row in rows]},
        follow=True,
    )
    assert response.status_code == 200
    return [str(message) for message in response.context["messages"]]


@pytest.fixture
def nightly() -> JobSchedule:
    job_dispatcher.schedule("echo", "0 2 * * *", {"message": "admin"}, name="nightly")
    return JobSchedule.objects.get()


def test_the_admin_lists_schedules_with_a_description_and_the_next_run(
    admin_client: Client, nightly: JobSchedule
) -> None:
    page = admin_client.get(CHANGELIST).content.decode()
    assert "At 02:00 every day" in page
    assert "UTC" in page  # the next run
    detail = admin_client.get(f"{CHANGELIST}{nightly.pk}/change/").content.decode()
    assert detail.count("<li>20") >= 5  # the next five runs
    assert "0 jobs" in detail


def test_the_admin_lists_a_schedule_whose_cron_is_no_longer_accepted(
    admin_client: Client, nightly: JobSchedule
) -> None:
    # Saved by an older version that let Arabic-Indic digits through.
    JobSchedule.objects.filter(pk=nightly.pk).update(cron="\u0661 * * * *")
    response = admin_client.get(CHANGELIST)
    assert response.status_code == 200
    assert "Invalid: Invalid minute field" in response.content.decode()


def test_schedules_are_read_only_in_the_admin(admin_client: Client, nightly: JobSchedule) -> None:
    assert admin_client.get(f"{CHANGELIST}add/").status_code == 403
    assert admin_client.get(f"{CHANGELIST}{nightly.pk}/delete/").status_code == 403
    admin_client.post(f"{CHANGELIST}{nightly.pk}/change/", {"cron": "* * * * *"})
    assert JobSchedule.objects.get().cron == "0 2 * * *"


def test_the_admin_pause_and_resume_actions(admin_client: Client, nightly: JobSchedule) -> None:
    assert act(admin_client, "pause_selected", nightly) == ["Paused nightly."]
    assert JobSchedule.objects.get().paused is True
    assert remote()[nightly.schedule_id].paused is True
    assert '<td class="field-next_run">paused</td>' in admin_client.get(CHANGELIST).content.decode()

    assert act(admin_client, "resume_selected", nightly) == ["Resumed nightly."]
    assert JobSchedule.objects.get().paused is False
    assert remote()[nightly.schedule_id].paused is False


def test_the_admin_sync_action_pushes_the_row(admin_client: Client, nightly: JobSchedule) -> None:
    clear_schedules()
    assert act(admin_client, "sync_selected", nightly) == ["Synced nightly with QStash."]
    assert remote()[nightly.schedule_id].cron == "0 2 * * *"


def test_the_admin_run_now_action_enqueues_a_linked_job(
    admin_client: Client, nightly: JobSchedule, django_capture_on_commit_callbacks: Any
) -> None:
    with django_capture_on_commit_callbacks(execute=True):
        messages = act(admin_client, "run_selected_now", nightly)
    execution = JobExecution.objects.get()
    assert messages == ["Enqueued a job now for nightly.", f"Job ids: {execution.job_id}"]
    assert execution.schedule == nightly
    assert execution.status == JobStatus.COMPLETED


def test_the_admin_unschedule_action(admin_client: Client, nightly: JobSchedule) -> None:
    with declaring(HOURLY):
        sync()
        hourly = JobSchedule.objects.get(name="hourly-echo")
        messages = act(admin_client, "unschedule_selected", nightly, hourly)
    assert messages[0] == "Unscheduled nightly."
    assert "hourly-echo: Schedule 'hourly-echo' is declared in QSTASH_JOBS" in messages[1]
    assert list(JobSchedule.objects.values_list("name", flat=True)) == ["hourly-echo"]
    assert list(remote()) == [hourly.schedule_id]


def test_the_admin_reports_a_qstash_failure(
    admin_client: Client, nightly: JobSchedule, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(self: ImmediateTransport, schedule_id: str) -> None:
        raise ScheduleError("QStash could not be reached (test)")

    monkeypatch.setattr(ImmediateTransport, "pause_schedule", refuse)
    [message] = act(admin_client, "pause_selected", nightly)
    assert "could not be reached" in message
    assert "sync_schedules will update QStash" in message.replace("`", "")


def test_admin_actions_need_the_change_permission(
    client: Client, django_user_model: Any, nightly: JobSchedule
) -> None:
    from django.contrib.auth.models import Permission

    viewer = django_user_model.objects.create_user("viewer", password="x", is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_jobschedule"))
    client.force_login(viewer)
    page = client.get(CHANGELIST).content.decode()
    assert "At 02:00 every day" in page
    assert "pause_selected" not in page
    client.post(CHANGELIST, {"action": "pause_selected", "_selected_action": [nightly.pk]})
    assert JobSchedule.objects.get().paused is False


def test_a_cron_longer_than_its_column_is_refused_when_defined() -> None:
    # Every minute and hour listed: valid, but 200 characters are stored (PostgreSQL refused
    # the row with a DataError, out of schedule() or half-way through a sync).
    every = ",".join(map(str, range(60))) + " " + ",".join(map(str, range(24))) + " * * 1-5"
    with pytest.raises(ScheduleError, match="characters once written out"):
        job_dispatcher.schedule("echo", every, {"message": "x"}, name="long")
    declared = {"name": "long", "job_type": "echo", "cron": every, "payload": {"message": "x"}}
    with override_settings(QSTASH_JOBS={**settings.QSTASH_JOBS, "SCHEDULES": [declared]}):
        assert [problem for problem in check_schedules(None) if "characters" in problem.msg]
    assert not JobSchedule.objects.exists()
