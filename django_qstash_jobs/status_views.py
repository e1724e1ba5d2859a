"""A job's status for its owner and for staff: a JSON snapshot and a Server-Sent Events stream.

Both answer 404, never 403, to anyone else (anonymous included), so job ids cannot be probed.
The stream is an async generator under ASGI and a plain generator under WSGI (runserver,
gunicorn, the test client), where Django would otherwise buffer an async stream to its end
before sending anything. Either way an open stream holds a thread and a database connection
while it lasts; under WSGI it ends sooner, before a sync worker's timeout.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, replace
from datetime import datetime

from asgiref.sync import sync_to_async
from django.contrib.auth.models import AnonymousUser
from django.core.handlers.asgi import ASGIRequest
from django.core.serializers.json import DjangoJSONEncoder
from django.http import HttpRequest, HttpResponseBase, JsonResponse, StreamingHttpResponse
from django.utils.cache import add_never_cache_headers
from django.views.decorators.http import require_GET

from django_qstash_jobs.models import JobExecution
from django_qstash_jobs.views import non_atomic_on_every_database


@dataclass(frozen=True)
class StreamTiming:
    """How the events stream polls, keeps the connection alive, and when it ends."""

    #: Seconds between two reads of the job's ``updated_at``.
    poll_interval: float = 0.5
    #: Seconds of silence after which a comment is sent, so proxies keep the connection open.
    keepalive_interval: float = 15.0
    #: Seconds after which the stream ends; EventSource reconnects and gets the current state.
    max_duration: float = 300.0
    #: The same under WSGI: gunicorn's sync workers abort (and restart) past their --timeout,
    #: 30 s by default, a request they serve.
    wsgi_max_duration: float = 25.0
    #: The reconnection delay the browser is asked to use, in milliseconds.
    reconnect_ms: int = 3000


#: Read at every request, so tests (and projects) can replace it.
STREAM_TIMING = StreamTiming()


#: Columns ``as_status()`` never reads: a stream re-reads the row at every change.
_NOT_IN_STATUS = ("payload", "metadata", "options", "traceback")


async def _visible_job(request: HttpRequest, job_id: str) -> JobExecution | None:
    """The job, if the requesting user is staff or the user the job was enqueued for."""
    auser = getattr(request, "auser", None)
    user = await auser() if auser is not None else AnonymousUser()
    if not user.is_authenticated or "\x00" in job_id:
        # No job id holds a NUL, and PostgreSQL refuses one even in a query.
        return None
    job = await JobExecution.objects.filter(job_id=job_id).defer(*_NOT_IN_STATUS).afirst()
    if job is None:
        return None
    if user.is_staff or job.user_id == str(user.pk):
        return job
    return None


def _not_found() -> JsonResponse:
    response = JsonResponse({"error": "not found"}, status=404)
    add_never_cache_headers(response)
    return response


# Async views cannot run in ATOMIC_REQUESTS' transaction, which Django refuses with a 500; they
# only read, so they opt out on every database, as the receiver does.
@non_atomic_on_every_database
@require_GET
async def job_status(request: HttpRequest, job_id: str) -> HttpResponseBase:
    """``jobs/status/<job_id>/``: the job's :meth:`~JobExecution.as_status` as JSON."""
    job = await _visible_job(request, job_id)
    if job is None:
        return _not_found()
    response = JsonResponse(job.as_status())
    add_never_cache_headers(response)
    return response


@non_atomic_on_every_database
@require_GET
async def job_status_events(request: HttpRequest, job_id: str) -> HttpResponseBase:
    """``jobs/status/<job_id>/events/``: a ``status`` event per change, then ``done``."""
    job = await _visible_job(request, job_id)
    if job is None:
        return _not_found()
    events: AsyncIterator[bytes] | Iterator[bytes]
    if isinstance(request, ASGIRequest):
        events = _EventStream(job, STREAM_TIMING).async_events()
    else:
        timing = replace(
            STREAM_TIMING,
            max_duration=min(STREAM_TIMING.max_duration, STREAM_TIMING.wsgi_max_duration),
        )
        events = _EventStream(job, timing).sync_events()
    response = StreamingHttpResponse(events, content_type="text/event-stream")
    add_never_cache_headers(response)
    # nginx buffers proxied responses by default, which would hold events back.
    response["X-Accel-Buffering"] = "no"
    return response


#: The poll found the row unchanged.
_UNCHANGED = object()


class _EventStream:
    """Decides what to send; the sync and async generators only wait and read the database."""

    def __init__(self, job: JobExecution, timing: StreamTiming) -> None:
        self.pk = job.pk
        self.first = job
        self.seen: datetime = job.updated_at
        self.timing = timing
        self.started = self.last_sent = time.monotonic()
        self.over = False

    def opening(self) -> bytes:
        """The reconnection delay and the job's state as it is now."""
        return f"retry: {self.timing.reconnect_ms}\n\n".encode() + self._event(self.first)

    def poll(self) -> JobExecution | object | None:
        """The row if it changed since the last event, ``_UNCHANGED``, or None if it is gone.

        Reads only ``updated_at`` unless it moved: most polls find nothing new.
        """
        updated_at = (
            JobExecution.objects.filter(pk=self.pk).values_list("updated_at", flat=True).first()
        )
        if updated_at is None:
            return None
        if updated_at == self.seen:
            return _UNCHANGED
        return JobExecution.objects.filter(pk=self.pk).defer(*_NOT_IN_STATUS).first()

    def after_poll(self, found: JobExecution | object | None) -> bytes:
        """What to send after a poll ("" for nothing); sets ``over`` when the stream ends."""
        now = time.monotonic()
        if found is None:
            self.over = True
            return b": job deleted\n\n"
        frame = b""
        if isinstance(found, JobExecution):
            self.last_sent = now
            frame = self._event(found)
        elif now - self.last_sent >= self.timing.keepalive_interval:
            self.last_sent = now
            frame = b": keep-alive\n\n"
        if not self.over and now - self.started >= self.timing.max_duration:
            # Not a final event: EventSource reconnects and carries on from the current state.
            self.over = True
            frame += b": stream time limit, reconnect\n\n"
        return frame

    def _event(self, job: JobExecution) -> bytes:
        self.seen = job.updated_at
        name = "done" if job.is_finished else "status"
        if job.is_finished:
            self.over = True
        data = json.dumps(job.as_status(), cls=DjangoJSONEncoder, separators=(",", ":"))
        return f"event: {name}\ndata: {data}\n\n".encode()

    def sync_events(self) -> Iterator[bytes]:
        yield self.opening()
        while not self.over:
            time.sleep(self.timing.poll_interval)
            frame = self.after_poll(self.poll())
            if frame:
                yield frame

    async def async_events(self) -> AsyncIterator[bytes]:
        yield self.opening()
        # Thread-sensitive, like Django's async ORM: the request's one database connection.
        poll = sync_to_async(self.poll, thread_sensitive=True)
        while not self.over:
            await asyncio.sleep(self.timing.poll_interval)
            frame = self.after_poll(await poll())
            if frame:
                yield frame
