"""The receiver: QStash delivers each job here, signed."""

from __future__ import annotations

import hashlib
import json
import logging
import math
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any, TypeVar

# Exempt from LoginRequiredMiddleware (Django 5.1+): QStash cannot log in.
from django.contrib.auth.decorators import login_not_required
from django.core.cache import cache
from django.db import connections, transaction
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils import timezone
from django.utils.decorators import method_decorator
from django.views import View
from django.views.decorators.csrf import csrf_exempt

from django_qstash_jobs import failure_notices, statements
from django_qstash_jobs.conf import get_config
from django_qstash_jobs.exceptions import SignatureError
from django_qstash_jobs.execution import (
    Delivery,
    Outcome,
    execute,
    job_id_for_schedule_firing,
)
from django_qstash_jobs.failure_notices import FailureNotice, identifier
from django_qstash_jobs.signing import verify_signature

logger = logging.getLogger("django_qstash_jobs.receiver")
V = TypeVar("V", bound=Callable[..., Any])

#: What QStash is told for each outcome. 489 with ``Upstash-NonRetryable-Error`` stops retries.
_ANSWERS: dict[Outcome, int] = {
    Outcome.COMPLETED: 200,
    Outcome.ACKNOWLEDGED: 200,
    Outcome.RETRY: 500,
    Outcome.FAILED: 500,
    Outcome.REJECTED: 489,
    Outcome.BUSY: 503,
}


def _answer(
    outcome: Outcome, job_id: str | None = None, *, first_delivery: bool = True
) -> HttpResponse:
    response = JsonResponse({"status": outcome.value}, status=_ANSWERS[outcome])
    if outcome is Outcome.REJECTED:
        response["Upstash-NonRetryable-Error"] = "true"
    elif outcome is Outcome.BUSY:
        retry_after = _retry_after(job_id, first_delivery=first_delivery)
        if retry_after is not None:
            response["Retry-After"] = str(retry_after)
    return response


#: How long a first delivery for a job not recorded yet waits: its enqueue's transaction is
#: committing.
NOT_RECORDED_RETRY_SECONDS = 10


def _retry_after(job_id: str | None, *, first_delivery: bool) -> int | None:
    """Whole seconds until the job may be free to run; None to leave it to QStash's backoff.

    What is left of the running delivery's lease (at least 1); a whole lease when there is no
    lease to go by. For a job whose row is not there, a few seconds at first (its transaction
    is committing), then QStash's own backoff, which waits longer at each retry: a transaction
    that runs long still finds its job delivered once it commits.
    """
    # A tuple per row, so that a row without a lease is told from no row at all.
    row = (
        statements.job_rows().filter(job_id=job_id).values_list("lease_expires_at").first()
        if job_id
        else None
    )
    if row is None:
        return NOT_RECORDED_RETRY_SECONDS if first_delivery else None
    (expires,) = row
    if expires is None:
        return get_config().lease_seconds
    return max(1, math.ceil((expires - timezone.now()).total_seconds()))


def non_atomic_on_every_database(view: V) -> V:
    """Keep ``view`` out of ``ATOMIC_REQUESTS``' transaction on every database.

    The receiver commits its claim, progress and outcome as it goes, on whichever database a
    router gives the jobs; inside one request-long transaction none of them would be seen until
    the end. Async views cannot run in that transaction at all (Django answers 500).
    """
    for alias in connections:
        view = transaction.non_atomic_requests(using=alias)(view)
    return view


@method_decorator([csrf_exempt, login_not_required, non_atomic_on_every_database], name="dispatch")
class ReceiveView(View):
    """Verifies a delivery's signature, then runs its job, or records QStash's failure notice.

    Nothing runs before the check.
    """

    http_method_names = ["post"]

    def post(self, request: HttpRequest) -> HttpResponse:
        config = get_config()
        try:
            claims = verify_signature(
                request.headers.get("Upstash-Signature", ""),
                request.body,
                keys=config.signing_keys,
                url=config.receiver_url or "",
                leeway=config.clock_tolerance,
            )
        except SignatureError as exc:
            logger.warning("Rejected a delivery with a bad signature: %s", exc)
            return JsonResponse({"error": "invalid signature"}, status=401)

        try:
            body: Any = json.loads(request.body)
        except ValueError:
            body = None
        notice = FailureNotice.parse(body)
        if notice is not None:
            return _record_notice(notice, request.body)
        delivery = _delivery(request, body)
        if delivery is None:
            return _answer(Outcome.REJECTED)
        if delivery.job_id is None and _replayed_firing(claims, delivery):
            return JsonResponse({"error": "invalid signature"}, status=401)
        try:
            # A firing's row is found (or made) here, so that a busy answer can name its lease.
            job_id = delivery.job_id or job_id_for_schedule_firing(delivery)
            outcome = execute(replace(delivery, job_id=job_id))
        except Exception:
            # The database or our own code failed, not the handler: QStash should try again.
            # The traceback goes to the log only, even with DEBUG on.
            logger.exception("Executing delivery %s failed.", delivery.message_id)
            return JsonResponse({"status": "error"}, status=500)
        return _answer(outcome, job_id, first_delivery=delivery.retried == 0)


def _record_notice(notice: FailureNotice, body: bytes) -> HttpResponse:
    try:
        outcome, job_id = failure_notices.record(notice)
        if outcome is Outcome.ACKNOWLEDGED and job_id is not None:
            failure_notices.forward(notice, body, job_id)
    except Exception:
        logger.exception("Recording QStash's failure notice for %s failed.", notice.message_id)
        return JsonResponse({"status": "error"}, status=500)
    # A notice about a job not recorded yet waits on QStash's backoff, as a late delivery does.
    return _answer(outcome, job_id, first_delivery=False)


def _delivery(request: HttpRequest, body: Any) -> Delivery | None:
    if body is None:  # not JSON
        return None
    try:
        retried = int(request.headers.get("Upstash-Retried", "0"))
    except ValueError:
        return None
    fields = body if isinstance(body, dict) else {}
    job_id = identifier(fields.get("job_id"))
    # A firing's schedule is the one its signed body names; the Upstash-Schedule-Id header is
    # outside the signature, and may only agree.
    schedule_id = None if job_id else identifier(fields.get("schedule_id"))
    if job_id is None and schedule_id is None:
        logger.error("Rejected a signed delivery whose body names no job and no schedule.")
        return None
    header = request.headers.get("Upstash-Schedule-Id")
    if schedule_id is not None and header is not None and header != schedule_id:
        logger.warning(
            "Rejected a firing of schedule %r delivered as schedule %r.", schedule_id, header
        )
        return None
    return Delivery(
        job_id=job_id,
        message_id=request.headers.get("Upstash-Message-Id"),
        retried=max(0, retried),
        schedule_id=schedule_id,
    )


def _replayed_firing(claims: dict[str, Any], delivery: Delivery) -> bool:
    """Whether this firing's signature was seen before on a firing with another message id.

    The message id, which makes each firing a new job, is outside the signature: a captured
    firing sent again under new ids within the token's few minutes would run the schedule's job
    again each time. QStash signs each attempt anew, so one token belongs to one message. Held
    in Django's cache: a shared one (Redis, the database) covers every worker.
    """
    token_id = claims.get("jti")
    if not isinstance(token_id, str) or not token_id:
        return False
    key = "django_qstash_jobs:firing-token:" + hashlib.sha256(token_id.encode()).hexdigest()
    lifetime = max(1, math.ceil(float(claims["exp"]) - time.time() + get_config().clock_tolerance))
    try:
        if cache.add(key, delivery.message_id, timeout=lifetime):
            return False
        replayed = bool(cache.get(key) != delivery.message_id)
    except Exception:
        # An unreachable cache must not stop the schedules; the signature was checked.
        logger.exception("The cache could not be asked about firing %s.", delivery.message_id)
        return False
    if replayed:
        logger.warning("Rejected a replayed firing signature (message %s).", delivery.message_id)
    return replayed


receive = ReceiveView.as_view()
