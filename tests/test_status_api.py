"""The status endpoints: who may see a job, the JSON snapshot, and the events stream."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from asgiref.sync import async_to_sync, sync_to_async
from django.contrib.auth.models import User
from django.db import connection, connections
from django.test import AsyncClient, Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from django_qstash_jobs import job_dispatcher, status_views
from django_qstash_jobs.models import JobExecution, JobStatus
from django_qstash_jobs.status_views import StreamTiming

pytestmark = pytest.mark.django_db


@dataclass
class People:
    owner: User
    other: User
    staff: User


@pytest.fixture
def people() -> People:
    return People(
        owner=User.objects.create_user("owner"),
        other=User.objects.create_user("other"),
        staff=User.objects.create_user("staff", is_staff=True),
    )


@pytest.fixture
def fast_stream(monkeypatch: pytest.MonkeyPatch) -> StreamTiming:
    """Poll without waiting; no keep-alive or time limit unless a test sets them."""
    timing = StreamTiming(poll_interval=0, keepalive_interval=3600, max_duration=3600)
    monkeypatch.setattr(status_views, "STREAM_TIMING", timing)
    return timing


def job_for(user: User | None, status: str = JobStatus.RUNNING, **fields: Any) -> JobExecution:
    return JobExecution.objects.create(
        job_type="echo",
        payload={"message": "hi"},
        status=status,
        user_id=None if user is None else str(user.pk),
        **fields,
    )


def status_url(job: JobExecution | str) -> str:
    job_id = job if isinstance(job, str) else job.job_id
    return reverse("django_qstash_jobs:status", args=[job_id])


def events_url(job: JobExecution | str) -> str:
    job_id = job if isinstance(job, str) else job.job_id
    return reverse("django_qstash_jobs:status-events", args=[job_id])


def logged_in(user: User | None) -> Client:
    client = Client()
    if user is not None:
        client.force_login(user)
    return client


def parse(frame: bytes) -> tuple[str, dict[str, Any]]:
    """One event frame as (event name, data)."""
    fields = dict(
        line.split(": ", 1) for line in frame.decode().strip().splitlines() if ": " in line
    )
    return fields["event"], json.loads(fields["data"])


def events_in(frames: Iterator[bytes]) -> Iterator[tuple[str, dict[str, Any]]]:
    for frame in frames:
        if b"event: " in frame:
            yield parse(frame[frame.index(b"event: ") :])


# -- who may see a job -----------------------------------------------------------------------


@pytest.mark.parametrize("url_for", [status_url, events_url], ids=["status", "events"])
@pytest.mark.parametrize("who", ["anonymous", "other"])
def test_anyone_but_owner_and_staff_gets_404(people: People, who: str, url_for: Any) -> None:
    job = job_for(people.owner, status=JobStatus.COMPLETED)
    client = logged_in(None if who == "anonymous" else people.other)
    response = client.get(url_for(job))
    assert response.status_code == 404
    assert response["Content-Type"] == "application/json"
    # The same answer as for an id that does not exist: nothing to learn by probing.
    unknown = client.get(url_for("no-such-job"))
    assert (unknown.status_code, unknown.json()) == (404, response.json())


@pytest.mark.parametrize("url_for", [status_url, events_url], ids=["status", "events"])
@pytest.mark.parametrize("who", ["owner", "staff"])
def test_owner_and_staff_may_see_the_job(people: People, who: str, url_for: Any) -> None:
    job = job_for(people.owner, status=JobStatus.COMPLETED)
    response = logged_in(getattr(people, who)).get(url_for(job))
    assert response.status_code == 200


@pytest.mark.parametrize("url_for", [status_url, events_url], ids=["status", "events"])
def test_a_job_without_user_is_for_staff_only(people: People, url_for: Any) -> None:
    job = job_for(None, status=JobStatus.COMPLETED)
    assert logged_in(people.owner).get(url_for(job)).status_code == 404
    assert logged_in(people.staff).get(url_for(job)).status_code == 200


@pytest.mark.parametrize("url_for", [status_url, events_url], ids=["status", "events"])
def test_the_status_answers_where_every_request_is_atomic(
    people: People, url_for: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Django refuses ATOMIC_REQUESTS for an async view that does not opt out: a 500 each time.
    # On any database: a router may keep the jobs on another one than the default.
    for alias in ("default", "other"):
        monkeypatch.setitem(connections[alias].settings_dict, "ATOMIC_REQUESTS", True)
    job = job_for(people.owner, status=JobStatus.COMPLETED)
    assert logged_in(people.owner).get(url_for(job)).status_code == 200


def test_the_status_reads_no_column_it_does_not_show(people: People) -> None:
    # A stream re-reads the row at every change; a large payload or traceback stays unread.
    job = job_for(people.owner, status=JobStatus.COMPLETED, traceback="x" * 10_000)
    with CaptureQueriesContext(connection) as queries:
        response = logged_in(people.owner).get(status_url(job))
    assert response.status_code == 200
    (read,) = [q["sql"] for q in queries.captured_queries if "jobexecution" in q["sql"]]
    for column in ("payload", "metadata", "options", "traceback"):
        assert f'"{column}"' not in read


def test_staff_gets_404_for_an_unknown_job(people: People) -> None:
    client = logged_in(people.staff)
    assert client.get(status_url("no-such-job")).status_code == 404
    # A NUL is in no job id, and PostgreSQL would refuse it in the query.
    assert client.get(status_url("nul%00byte")).status_code == 404
    assert client.get(status_url("nul%00byte") + "events/").status_code == 404


def test_an_inactive_owner_is_anonymous(people: People) -> None:
    job = job_for(people.owner)
    client = logged_in(people.owner)
    people.owner.is_active = False
    people.owner.save()
    assert client.get(status_url(job)).status_code == 404


@pytest.mark.parametrize("url_for", [status_url, events_url], ids=["status", "events"])
def test_only_get_is_allowed(people: People, url_for: Any) -> None:
    job = job_for(people.owner)
    assert logged_in(people.owner).post(url_for(job)).status_code == 405


# -- the JSON snapshot -----------------------------------------------------------------------


def test_status_is_the_jobs_as_status(people: People) -> None:
    job = job_for(people.owner, progress=40, progress_message="resizing", attempts=1)
    response = logged_in(people.owner).get(status_url(job))
    assert response.json() == json.loads(json.dumps(job.as_status()))
    assert response.json()["progress"] == 40
    assert "no-cache" in response["Cache-Control"]


@pytest.mark.django_db(transaction=True)
def test_status_of_a_job_run_for_a_user(people: People) -> None:
    job_id = job_dispatcher.enqueue("echo", {"message": "hi"}, {"user_id": people.owner.pk})
    body = logged_in(people.owner).get(status_url(job_id)).json()
    assert body["status"] == "completed"
    assert body["progress"] == 100
    assert body["result"] == {"echo": "hi", "attempt": 1}
    assert body["error"] == ""
    assert body["started_at"] is not None and body["finished_at"] is not None
    assert logged_in(people.other).get(status_url(job_id)).status_code == 404


# -- the events stream (WSGI: a plain generator) ---------------------------------------------


def open_stream(client: Client, job: JobExecution) -> Iterator[bytes]:
    response = client.get(events_url(job))
    assert response.status_code == 200
    assert response["Content-Type"] == "text/event-stream"
    assert response.streaming
    assert not response.is_async  # Under WSGI an async stream would be buffered to its end.
    assert "no-cache" in response["Cache-Control"]
    assert response["X-Accel-Buffering"] == "no"
    return iter(response.streaming_content)  # type: ignore[arg-type]


def test_stream_pushes_each_change_then_a_final_event(
    people: People, fast_stream: StreamTiming
) -> None:
    job = job_for(people.owner)
    frames = open_stream(logged_in(people.owner), job)

    opening = next(frames)
    assert opening.startswith(b"retry: 3000\n\n")
    assert parse(opening[opening.index(b"event: ") :]) == ("status", job.as_status())

    JobExecution.objects.filter(pk=job.pk).update(
        progress=40, progress_message="resizing", updated_at=timezone.now()
    )
    name, data = parse(next(frames))
    assert (name, data["status"], data["progress"], data["progress_message"]) == (
        "status",
        "running",
        40,
        "resizing",
    )

    JobExecution.objects.filter(pk=job.pk).update(
        status=JobStatus.COMPLETED, progress=100, result={"ok": True}, updated_at=timezone.now()
    )
    name, data = parse(next(frames))
    assert (name, data["status"], data["result"]) == ("done", "completed", {"ok": True})
    assert list(frames) == []  # Closed after the final event.


def test_stream_sends_nothing_while_nothing_changes(
    people: People, monkeypatch: pytest.MonkeyPatch
) -> None:
    polls = []
    real_poll = status_views._EventStream.poll

    def counting_poll(stream: status_views._EventStream) -> Any:
        polls.append(1)
        if len(polls) == 5:
            JobExecution.objects.filter(pk=stream.pk).update(
                status=JobStatus.FAILED, error="boom", updated_at=timezone.now()
            )
        return real_poll(stream)

    monkeypatch.setattr(status_views._EventStream, "poll", counting_poll)
    monkeypatch.setattr(status_views, "STREAM_TIMING", StreamTiming(poll_interval=0))
    frames = list(open_stream(logged_in(people.owner), job_for(people.owner)))
    # Four polls found nothing new and sent nothing; the fifth saw the failure.
    assert len(polls) == 5
    assert [name for name, _ in events_in(iter(frames))] == ["status", "done"]
    assert len(frames) == 2
    assert parse(frames[1])[1]["error"] == "boom"


def test_a_finished_job_gets_one_final_event(people: People, fast_stream: StreamTiming) -> None:
    job = job_for(people.owner, status=JobStatus.CANCELLED)
    frames = list(open_stream(logged_in(people.staff), job))
    assert len(frames) == 1
    assert list(events_in(iter(frames))) == [("done", job.as_status())]


def test_stream_sends_keepalive_comments(people: People, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(
        status_views,
        "STREAM_TIMING",
        StreamTiming(poll_interval=0.01, keepalive_interval=0.02, max_duration=3600),
    )
    frames = open_stream(logged_in(people.owner), job_for(people.owner))
    next(frames)
    assert next(frames) == b": keep-alive\n\n"
    assert next(frames) == b": keep-alive\n\n"


def test_a_wsgi_stream_ends_before_a_sync_worker_s_timeout(
    people: People, monkeypatch: pytest.MonkeyPatch
) -> None:
    # gunicorn's sync workers abort, and restart, past --timeout (30 s) a request they serve.
    timing = StreamTiming(
        poll_interval=0.01, keepalive_interval=3600, max_duration=3.0, wsgi_max_duration=0.05
    )
    monkeypatch.setattr(status_views, "STREAM_TIMING", timing)
    started = time.monotonic()
    frames = list(open_stream(logged_in(people.owner), job_for(people.owner)))
    assert frames[-1] == b": stream time limit, reconnect\n\n"
    assert time.monotonic() - started < 2.5  # the WSGI limit, well before the other one


def test_stream_ends_at_its_time_limit_without_a_final_event(
    people: People, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(
        status_views,
        "STREAM_TIMING",
        StreamTiming(poll_interval=0.01, keepalive_interval=3600, max_duration=0.05),
    )
    frames = list(open_stream(logged_in(people.owner), job_for(people.owner)))
    assert frames[-1] == b": stream time limit, reconnect\n\n"
    assert [name for name, _ in events_in(iter(frames))] == ["status"]


def test_stream_ends_when_the_job_is_deleted(people: People, fast_stream: StreamTiming) -> None:
    job = job_for(people.owner)
    frames = open_stream(logged_in(people.owner), job)
    next(frames)
    job.delete()
    assert list(frames) == [b": job deleted\n\n"]


# -- the events stream (ASGI: an async generator) --------------------------------------------


def test_under_asgi_the_stream_is_async(people: People, fast_stream: StreamTiming) -> None:
    job = job_for(people.owner)

    async def scenario() -> list[tuple[str, dict[str, Any]]]:
        client = AsyncClient()
        await client.aforce_login(people.owner)
        response = await client.get(events_url(job))
        assert response.status_code == 200
        assert response["Content-Type"] == "text/event-stream"
        assert response.is_async  # Waiting costs no thread.
        frames: AsyncIterator[bytes] = aiter(response.streaming_content)  # type: ignore[arg-type]
        seen = [parse((await anext(frames)).split(b"\n\n", 1)[1])]
        await sync_to_async(JobExecution.objects.filter(pk=job.pk).update, thread_sensitive=True)(
            progress=70, updated_at=timezone.now()
        )
        seen.append(parse(await anext(frames)))
        await sync_to_async(JobExecution.objects.filter(pk=job.pk).update, thread_sensitive=True)(
            status=JobStatus.COMPLETED, progress=100, updated_at=timezone.now()
        )
        seen.append(parse(await anext(frames)))
        with pytest.raises(StopAsyncIteration):
            await anext(frames)
        return seen

    seen = async_to_sync(scenario)()
    assert [(name, data["status"], data["progress"]) for name, data in seen] == [
        ("status", "running", 0),
        ("status", "running", 70),
        ("done", "completed", 100),
    ]


def test_under_asgi_strangers_get_404(people: People) -> None:
    job = job_for(people.owner)

    async def scenario() -> int:
        client = AsyncClient()
        await client.aforce_login(people.other)
        return (await client.get(events_url(job))).status_code

    assert async_to_sync(scenario)() == 404
