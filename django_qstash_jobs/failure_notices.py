"""QStash's failure callback: a job QStash stopped delivering is marked failed, with the reason.

Every publish names the receiver as its failure callback (a job's own is forwarded to).
QStash calls it once, after the message's last attempt failed, with that attempt's answer and
the original message. A handler that failed on its last attempt has already failed its job, so
the notice is only acknowledged; but a job whose attempts never reached an outcome (a worker
killed by the platform's request timeout, the site unreachable, the database down) would
otherwise stay ``queued`` or ``running`` for ever.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
from dataclasses import dataclass
from typing import Any

from django.db.models import Q
from django.utils import timezone

from django_qstash_jobs import signals, statements, storable
from django_qstash_jobs.exceptions import DeliveryAbandoned
from django_qstash_jobs.execution import Delivery, Outcome, job_id_for_schedule_firing
from django_qstash_jobs.models import FINISHED_STATUSES, JobExecution, JobStatus
from django_qstash_jobs.transports import get_transport

logger = logging.getLogger("django_qstash_jobs")

#: How much of the last answer's body the job's error keeps.
MAX_RESPONSE_CHARS = 500


@dataclass(frozen=True)
class FailureNotice:
    """What QStash's failure callback says about the message it gave up on."""

    message_id: str
    job_id: str | None
    #: The publish the message came from (the job's deduplication id, new for each retry).
    deduplication_id: str | None
    schedule_id: str | None
    #: The last attempt's HTTP status; 0 when there was no answer (a timeout, a refused connection).
    status: int
    response: str
    error: str | None
    attempts: int

    @classmethod
    def parse(cls, body: Any) -> FailureNotice | None:
        """The notice in a delivery's decoded JSON body, or None if the body is not one."""
        if not isinstance(body, dict):
            return None
        message_id = identifier(body.get("sourceMessageId"))
        if message_id is None or "sourceBody" not in body:
            return None
        source = _source(body.get("sourceBody"))
        return cls(
            message_id=message_id,
            job_id=identifier(source.get("job_id")),
            deduplication_id=identifier(source.get("deduplication_id")),
            schedule_id=identifier(body.get("scheduleId")) or identifier(source.get("schedule_id")),
            status=_integer(body.get("status")),
            # One line: an HTML error page reads better in the admin's list that way.
            response=" ".join(_printable(_decoded(body.get("body"))).split())[:MAX_RESPONSE_CHARS],
            error=_printable(body.get("error"))[:MAX_RESPONSE_CHARS] or None,
            attempts=_integer(body.get("retried")) + 1,
        )

    @property
    def reason(self) -> str:
        """The job's error: how many attempts QStash made, and what the last one got."""
        if self.status:
            last = f"HTTP {self.status}" + (f": {self.response}" if self.response else "")
        else:
            last = f"no answer ({self.error})" if self.error else "no answer"
        attempts = "1 attempt" if self.attempts == 1 else f"{self.attempts} attempts"
        return f"QStash stopped delivering this job after {attempts}; the last got {last}"


def record(notice: FailureNotice) -> tuple[Outcome, str | None]:
    """Fail the job the notice is about, unless it finished, was published again since, or a
    delivery still holds it.

    Returns the outcome to answer with, and the job's id. A job held by a live lease may still
    be running (QStash stopped waiting, the worker did not stop): the notice is answered busy,
    and QStash brings it back once the lease could have run out.
    """
    job_id = notice.job_id or _job_id_for_message(notice)
    if job_id is None:
        logger.warning("QStash gave up on message %s, which is no job here.", notice.message_id)
        return Outcome.ACKNOWLEDGED, None
    now = timezone.now()
    # Only the job's current publish: one retried since (job_dispatcher.retry) went out again
    # under a new deduplication id, and a notice about the earlier message must not fail it.
    # A schedule's firing carries no deduplication id: its row is keyed by the message id, and
    # has none until a retry gives it one.
    this_publish = (
        Q(options__deduplication_id=notice.deduplication_id)
        if notice.deduplication_id
        else Q(message_id=notice.message_id, options__deduplication_id__isnull=True)
    )
    held = Q(status=JobStatus.RUNNING, lease_expires_at__gte=now)
    # The handler's traceback, if an attempt raised, stays: it may say why QStash gave up.
    failed = (
        JobExecution.objects.filter(this_publish, job_id=job_id)
        .exclude(status__in=FINISHED_STATUSES)
        .exclude(held)
        .update(
            status=JobStatus.FAILED,
            error=notice.reason,
            finished_at=now,
            lease_expires_at=None,
            updated_at=now,
        )
    )
    if failed:
        execution = statements.job_rows().get(job_id=job_id)
        signals.send_job_failed(execution, notice.reason, DeliveryAbandoned(notice.reason))
        return Outcome.ACKNOWLEDGED, job_id
    current = statements.job_rows().filter(this_publish, job_id=job_id)
    status = current.values_list("status", flat=True).first()
    if status is None and not statements.job_rows().filter(job_id=job_id).exists():
        # No row at all: perhaps its transaction has not committed yet (ENQUEUE_ON_COMMIT off).
        # Busy, so that QStash brings the notice back and a job committed late is failed,
        # visibly, instead of waiting queued for ever for a message that is gone.
        return Outcome.BUSY, job_id
    if status is None or status in FINISHED_STATUSES:
        # Finished, gone, or published again since: nothing for this notice to do.
        return Outcome.ACKNOWLEDGED, job_id
    return Outcome.BUSY, job_id


def forward(notice: FailureNotice, body: bytes, job_id: str) -> None:
    """Pass the notice on to the job's own ``failure_callback``, if the job failed.

    QStash calls one failure callback per message, and it is always the receiver, so that a job
    whose attempts never finished is failed; a job that asked for its own hears from it here.
    Not a job that completed (its last answer lost, or a retry by hand that succeeded): QStash
    gave up on a message, not on the job. Through QStash, so that it arrives signed and retried;
    its deduplication id lets a notice QStash sends again (after a 500 here) go out once.
    """
    row = statements.job_rows().filter(job_id=job_id).values_list("status", "options").first()
    if row is None or row[0] != JobStatus.FAILED:
        return
    url = row[1].get("failure_callback") if isinstance(row[1], dict) else None
    if url:
        get_transport().forward(url, body, deduplication_id=f"{notice.message_id}:failure-notice")


def _job_id_for_message(notice: FailureNotice) -> str | None:
    # A job's row carries its message id once published. A schedule's firing is keyed by it,
    # and one that never reached this site is recorded now, so that its failure is visible.
    if notice.schedule_id:
        firing = Delivery(job_id=None, message_id=notice.message_id, schedule_id=notice.schedule_id)
        return job_id_for_schedule_firing(firing)
    recorded = statements.job_rows().filter(message_id=notice.message_id)
    return recorded.values_list("job_id", flat=True).first()


def _source(value: Any) -> dict[str, Any]:
    """The original message's body, when it is a JSON object (ours always are)."""
    try:
        source = json.loads(_decoded(value))
    except ValueError:
        return {}
    return source if isinstance(source, dict) else {}


def _decoded(value: Any) -> str:
    if not isinstance(value, str):
        return ""
    try:
        return base64.b64decode(value, validate=True).decode("utf-8", "replace")
    except (binascii.Error, ValueError):
        return ""


def identifier(value: Any) -> str | None:
    """``value`` if it can be an id of ours (a non-empty str), else None.

    An id with a NUL in it is no id of ours, and PostgreSQL refuses it even in a query.
    """
    return value if isinstance(value, str) and value and "\x00" not in value else None


def _printable(value: Any) -> str:
    """Text to store in the job's error, what no text column holds escaped (NUL...)."""
    return storable.text(value) if isinstance(value, str) else ""


def _integer(value: Any) -> int:
    # QStash documents some numbers of this body as JSON strings.
    try:
        return max(0, int(value))
    except (TypeError, ValueError, OverflowError):  # OverflowError: Infinity, which JSON allows
        return 0
