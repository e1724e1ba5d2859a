"""Schedules end to end: the dev server holds them, fires them, and sync_schedules reconciles."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command
from django.test import override_settings
from qstash import QStash
from qstash.errors import QStashError
from qstash.schedule import Schedule

from django_qstash_jobs import job_dispatcher
from django_qstash_jobs.conf import get_config
from django_qstash_jobs.exceptions import ScheduleError
from django_qstash_jobs.models import JobExecution, JobSchedule, JobStatus, ScheduleSource
from django_qstash_jobs.schedules import SCHEDULE_ID_PREFIX
from tests.e2e.conftest import wait_for, wait_until
from tests.servers import ROOT, TOKEN, DevServerProcess, qstash_settings
from tests.testapp.models import SideEffect

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

NIGHTLY = {
    "name": "nightly-echo",
    "job_type": "echo",
    "cron": "0 2 * * *",
    "payload": {"message": "night"},
    "metadata": {"organization_id": 456},
}
WEEKLY = {
    "name": "weekly-echo",
    "job_type": "echo",
    "cron": "CRON_TZ=Europe/Paris 30 6 * * 7",
    "payload": {"message": "week"},
}


@pytest.fixture
def qstash(through_qstash: DevServerProcess) -> QStash:
    return QStash(TOKEN, base_url=through_qstash.url)


@pytest.fixture
def declare(through_qstash: DevServerProcess, live_server: Any) -> Any:
    """Run the block with these QSTASH_JOBS["SCHEDULES"] (on top of the dev server settings)."""

    def declare(*declarations: dict[str, Any]) -> Any:
        return override_settings(
            QSTASH_JOBS=qstash_settings(
                through_qstash.url, live_server.url, SCHEDULES=list(declarations)
            )
        )

    return declare


def on_qstash(client: QStash) -> dict[str, Schedule]:
    return {schedule.schedule_id: schedule for schedule in client.schedule.list()}


def sync(*arguments: str) -> str:
    out = StringIO()
    call_command("sync_schedules", *arguments, stdout=out)
    return out.getvalue()


def actions(output: str) -> dict[str, str]:
    rows = [line.split() for line in output.splitlines()[1:] if line and line[0].islower()]
    return {row[1]: row[0] for row in rows}


def trigger(client: QStash, schedule_id: str) -> str:
    """Fire a schedule now through the dev server's trigger endpoint; return the message id."""
    response = client.http.request(path=f"/v2/schedules/{schedule_id}/trigger", method="POST")
    message_id: str = response["messageId"]
    return message_id


# -- job_dispatcher.schedule and friends ----------------------------------------------------


def test_schedule_creates_it_on_qstash_pointing_at_the_receiver(qstash: QStash) -> None:
    schedule_id = job_dispatcher.schedule(
        "echo", "0 3 * * 1", {"message": "tick"}, {"user_id": 3}, name="ticker"
    )

    schedule = qstash.schedule.get(schedule_id)
    assert schedule.destination == get_config().receiver_url
    assert schedule.cron == "0 3 * * 1"
    assert json.loads(schedule.body or "") == {"schedule_id": schedule_id, "job_type": "echo"}
    assert schedule.retries == 2  # the echo job type's retries
    assert schedule.paused is False
    # A firing QStash gives up on is reported back, so that its job is failed visibly.
    assert schedule.failure_callback == get_config().receiver_url
    assert JobSchedule.objects.get(schedule_id=schedule_id).last_synced_at is not None


def test_scheduling_a_name_again_updates_the_same_qstash_schedule(qstash: QStash) -> None:
    first = job_dispatcher.schedule("echo", "0 2 * * *", {"message": "a"}, name="nightly")
    second = job_dispatcher.schedule(
        "echo", "CRON_TZ=America/New_York 0 4 * * *", {"message": "b"}, name="nightly"
    )
    assert second == first
    assert list(on_qstash(qstash)) == [first]
    assert qstash.schedule.get(first).cron == "CRON_TZ=America/New_York 0 4 * * *"


def test_pause_and_resume_reach_qstash(qstash: QStash) -> None:
    schedule_id = job_dispatcher.schedule("echo", "0 2 * * *", {"message": "a"}, name="nightly")
    job_dispatcher.pause_schedule(schedule_id)
    assert qstash.schedule.get(schedule_id).paused is True
    job_dispatcher.resume_schedule(schedule_id)
    assert qstash.schedule.get(schedule_id).paused is False


def test_unschedule_deletes_it_from_qstash(qstash: QStash) -> None:
    schedule_id = job_dispatcher.schedule("echo", "0 2 * * *", {"message": "a"}, name="nightly")
    job_dispatcher.unschedule(schedule_id)
    with pytest.raises(QStashError, match="404"):
        qstash.schedule.get(schedule_id)
    assert not JobSchedule.objects.exists()


def test_operations_on_a_schedule_qstash_lost_still_work(qstash: QStash) -> None:
    schedule_id = job_dispatcher.schedule("echo", "0 2 * * *", {"message": "a"}, name="nightly")
    qstash.schedule.delete(schedule_id)

    job_dispatcher.pause_schedule(schedule_id)  # recreated, paused
    assert qstash.schedule.get(schedule_id).paused is True
    assert qstash.schedule.get(schedule_id).cron == "0 2 * * *"

    qstash.schedule.delete(schedule_id)
    job_dispatcher.unschedule(schedule_id)  # already gone from QStash: not an error
    assert not JobSchedule.objects.exists()


def test_a_refusal_from_qstash_is_a_schedule_error_saying_so(qstash: QStash) -> None:
    from django_qstash_jobs.transports import get_transport
    from django_qstash_jobs.transports.base import OutgoingSchedule

    with pytest.raises(ScheduleError, match="QStash refused to save schedule bad id!"):
        get_transport().upsert_schedule(OutgoingSchedule("bad id!", "echo", "0 2 * * *", 2))


# -- firings --------------------------------------------------------------------------------


def test_a_triggered_schedule_runs_its_job_recorded_with_the_schedule(qstash: QStash) -> None:
    schedule_id = job_dispatcher.schedule(
        "echo", "0 2 * * *", {"message": "fired"}, {"organization_id": 456}, name="nightly"
    )
    message_id = trigger(qstash, schedule_id)

    wait_until(lambda: JobExecution.objects.filter(message_id=message_id).exists(), what="a row")
    execution = wait_for(JobExecution.objects.get(message_id=message_id).job_id, "completed")
    assert execution.schedule == JobSchedule.objects.get(schedule_id=schedule_id)
    assert execution.result == {"echo": "fired", "attempt": 1}
    assert execution.organization_id == "456"


def test_a_firing_qstash_retries_stays_one_job(qstash: QStash) -> None:
    schedule_id = job_dispatcher.schedule("flaky", "0 2 * * *", {"fail_times": 1}, name="flaky")
    message_id = trigger(qstash, schedule_id)

    wait_until(lambda: JobExecution.objects.filter(message_id=message_id).exists(), what="a row")
    execution = wait_for(JobExecution.objects.get(message_id=message_id).job_id, "completed")
    assert execution.attempts == 2
    assert JobExecution.objects.count() == 1
    assert SideEffect.objects.filter(job_id=execution.job_id).count() == 2


def test_a_firing_of_a_schedule_paused_while_qstash_was_unreachable_is_not_run(
    qstash: QStash,
) -> None:
    schedule_id = job_dispatcher.schedule("echo", "0 2 * * *", {"message": "x"}, name="nightly")
    JobSchedule.objects.filter(schedule_id=schedule_id).update(paused=True)  # only the row knows
    message_id = trigger(qstash, schedule_id)

    wait_until(lambda: JobExecution.objects.filter(message_id=message_id).exists(), what="a row")
    execution = wait_for(JobExecution.objects.get(message_id=message_id).job_id, "cancelled")
    assert execution.attempts == 0
    assert not SideEffect.objects.exists()


def test_run_now_from_a_schedule_goes_through_qstash(qstash: QStash) -> None:
    from django_qstash_jobs.schedules import run_schedule_now

    job_dispatcher.schedule("echo", "0 2 * * *", {"message": "now"}, name="nightly")
    job_id = run_schedule_now("nightly")
    execution = wait_for(job_id, JobStatus.COMPLETED)
    assert execution.schedule is not None and execution.schedule.name == "nightly"


# -- sync_schedules -------------------------------------------------------------------------


def test_sync_on_an_empty_qstash_creates_the_declared_schedules(
    qstash: QStash, declare: Any
) -> None:
    with declare(NIGHTLY, {**WEEKLY, "paused": True}):
        output = sync()
    assert actions(output) == {"nightly-echo": "create", "weekly-echo": "create"}

    rows = {row.name: row for row in JobSchedule.objects.all()}
    remote = on_qstash(qstash)
    assert set(remote) == {row.schedule_id for row in rows.values()}
    nightly = remote[rows["nightly-echo"].schedule_id]
    assert (nightly.cron, nightly.paused) == ("0 2 * * *", False)
    weekly = remote[rows["weekly-echo"].schedule_id]
    assert (weekly.cron, weekly.paused) == ("CRON_TZ=Europe/Paris 30 6 * * 7", True)
    assert all(row.source == ScheduleSource.SETTINGS for row in rows.values())


def test_sync_twice_changes_nothing_the_second_time(qstash: QStash, declare: Any) -> None:
    job_dispatcher.schedule("echo", "0 4 1 * *", {"message": "x"}, name="from-code")
    with declare(NIGHTLY, WEEKLY):
        sync()
        remote_before = [vars(schedule) for schedule in qstash.schedule.list()]
        rows_before = list(JobSchedule.objects.values().order_by("name"))
        output = sync()
    assert set(actions(output).values()) == {"unchanged"}
    assert "(no changes)" in output
    assert [vars(schedule) for schedule in qstash.schedule.list()] == remote_before
    assert list(JobSchedule.objects.values().order_by("name")) == rows_before


def test_sync_after_an_edit_updates_the_schedule_in_place(qstash: QStash, declare: Any) -> None:
    with declare(NIGHTLY):
        sync()
    schedule_id = JobSchedule.objects.get().schedule_id
    with declare({**NIGHTLY, "cron": "15 3 * * 1-5", "payload": {"message": "weekdays"}}):
        output = sync()
    assert actions(output) == {"nightly-echo": "update"}
    assert list(on_qstash(qstash)) == [schedule_id]
    assert qstash.schedule.get(schedule_id).cron == "15 3 * * 1-5"

    # The next firing uses the edited payload.
    message_id = trigger(qstash, schedule_id)
    wait_until(lambda: JobExecution.objects.filter(message_id=message_id).exists(), what="a row")
    execution = wait_for(JobExecution.objects.get(message_id=message_id).job_id, "completed")
    assert execution.result == {"echo": "weekdays", "attempt": 1}


def test_sync_adds_the_failure_notice_to_a_schedule_that_lacks_it(
    qstash: QStash, declare: Any
) -> None:
    with declare(NIGHTLY):
        sync()
    schedule_id = JobSchedule.objects.get().schedule_id
    before = qstash.schedule.get(schedule_id)
    # The same schedule, as saved before failure notices existed.
    qstash.schedule.create_json(
        destination=before.destination, cron=before.cron, body=json.loads(before.body or ""),
        retries=before.retries, schedule_id=schedule_id,
    )  # fmt: skip
    assert qstash.schedule.get(schedule_id).failure_callback is None

    with declare(NIGHTLY):
        output = sync()

    assert actions(output) == {"nightly-echo": "update"}
    assert "failure notice" in output
    assert qstash.schedule.get(schedule_id).failure_callback == get_config().receiver_url


def test_sync_after_a_removal_deletes_it_and_keeps_code_schedules(
    qstash: QStash, declare: Any
) -> None:
    code_id = job_dispatcher.schedule("echo", "0 4 1 * *", {"message": "x"}, name="from-code")
    with declare(NIGHTLY, WEEKLY):
        sync()
    weekly_id = JobSchedule.objects.get(name="weekly-echo").schedule_id
    with declare(NIGHTLY):
        output = sync()
    assert actions(output)["weekly-echo"] == "delete"
    assert weekly_id not in on_qstash(qstash)
    assert code_id in on_qstash(qstash)
    assert set(JobSchedule.objects.values_list("name", flat=True)) == {"nightly-echo", "from-code"}


def test_sync_leaves_schedules_it_does_not_own_alone(qstash: QStash, declare: Any) -> None:
    receiver = get_config().receiver_url or ""
    # Another tool's schedule firing at this site, and another site's schedule with our prefix.
    qstash.schedule.create_json(
        destination=receiver, cron="0 1 * * *", body={}, schedule_id="billing-report"
    )
    qstash.schedule.create_json(
        destination="https://staging.example.com/jobs/receive/",
        cron="0 1 * * *",
        body={},
        schedule_id=f"{SCHEDULE_ID_PREFIX}nightly-echo-0123456789",
    )
    # And a stale one of this site: our prefix, our receiver, no row and no declaration.
    stale = f"{SCHEDULE_ID_PREFIX}retired-9876543210"
    qstash.schedule.create_json(destination=receiver, cron="0 1 * * *", body={}, schedule_id=stale)

    with declare(NIGHTLY):
        output = sync()

    assert "2 QStash schedules of other sites or tools left alone" in output
    remote = on_qstash(qstash)
    assert "billing-report" in remote
    assert f"{SCHEDULE_ID_PREFIX}nightly-echo-0123456789" in remote
    assert stale not in remote
    assert len(remote) == 3  # the two foreign ones and nightly-echo


def test_sync_repairs_a_schedule_changed_on_qstash(qstash: QStash, declare: Any) -> None:
    with declare(NIGHTLY):
        sync()
    schedule_id = JobSchedule.objects.get().schedule_id
    # Someone overwrote it in the Upstash console: a text body, other retries, paused.
    qstash.schedule.create(
        destination=get_config().receiver_url or "",
        cron="0 2 * * *",
        body="hello",
        retries=0,
        schedule_id=schedule_id,
    )
    qstash.schedule.pause(schedule_id)

    with declare(NIGHTLY):
        output = sync()

    assert actions(output) == {"nightly-echo": "update"}
    assert "message body" in output
    assert "retries 0 -> 2" in output
    schedule = qstash.schedule.get(schedule_id)
    assert json.loads(schedule.body or "") == {"schedule_id": schedule_id, "job_type": "echo"}
    assert (schedule.retries, schedule.paused) == (2, False)


def test_dry_run_prints_the_plan_and_changes_nothing(qstash: QStash, declare: Any) -> None:
    with declare(NIGHTLY):
        sync()
    before = [vars(schedule) for schedule in qstash.schedule.list()]
    with declare({**NIGHTLY, "cron": "0 5 * * *"}, WEEKLY):
        output = sync("--dry-run")
    assert actions(output) == {"nightly-echo": "update", "weekly-echo": "create"}
    assert "Dry run, nothing changed" in output
    assert [vars(schedule) for schedule in qstash.schedule.list()] == before
    assert list(JobSchedule.objects.values_list("name", "cron")) == [("nightly-echo", "0 2 * * *")]


def test_sync_exits_non_zero_with_the_reason_when_qstash_is_down(
    devserver_factory: Any, live_server: Any, tmp_path: Path
) -> None:
    server = devserver_factory()
    server.stop()
    settings_module = tmp_path / "down_settings.py"
    jobs = qstash_settings(server.url, live_server.url, SCHEDULES=[NIGHTLY], PUBLISH_TIMEOUT=2)
    settings_module.write_text(
        f"from tests.settings import *  # noqa: F403\nQSTASH_JOBS = {jobs!r}\n"
    )
    environment = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(tmp_path), str(ROOT)]),
        "DJANGO_SETTINGS_MODULE": "down_settings",
    }
    result = subprocess.run(
        [sys.executable, "-m", "django", "sync_schedules"],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode != 0
    assert "could not be reached" in result.stderr
    assert server.url in result.stderr
