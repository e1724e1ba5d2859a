"""The receiver: QStash delivers each job here, signed."""

from __future__ import annotations

import json
import logging
import math
from typing import Any

# Exempt from LoginRequiredMiddleware (Django 5.1+): QStash cannot log in.
from django.contrib.auth.decorators import login_not_required
from django.db import transaction
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils import timezone
from django.utils.decorators import method_decorator
from django.views import View
from django.views.decorators.csrf import csrf_exempt

from django_qstash_jobs import failure_notices, statements
from django_qstash_jobs.conf import get_config
from django_qstash_jobs.exceptions import SignatureError
from django_qstash_jobs.execution import Delivery, Outcome, execute
from django_qstash_jobs.failure_notices import FailureNotice, identifier
from django_qstash_jobs.signing import verify_signature

logger = logging.getLogger("django_qstash_jobs.receiver")

#: What QStash is told for each outcome. 489 with ``Upstash-NonRetryable-Error`` stops retries.
_ANSWERS: dict[Outcome, int] = {
    Outcome.COMPLETED: 200,
    Outcome.ACKNOWLEDGED: 200,
    Outcome.RETRY: 500,
    Outcome.FAILED: 500,
    Outcome.REJECTED: 489,
    Outcome.BUSY: 503,
}


def _answer(outcome: Outcome, job_id: str | None = None) -> HttpResponse:
    response = JsonResponse({"status": outcome.value}, status=_ANSWERS[outcome])
    if outcome is Outcome.REJECTED:
        response["Upstash-NonRetryable-Error"] = "true"
    elif outcome is Outcome.BUSY:
        response["Retry-After"] = str(_retry_after(job_id))
    return response


#: How long a delivery for a job not recorded yet waits: its enqueue's transaction is committing.
NOT_RECORDED_RETRY_SECONDS = 10


def _retry_after(job_id: str | None) -> int:
    """Whole seconds until the job may be free to run.

    What is left of the running delivery's lease (at least 1); a few seconds for a job whose row
    is not there yet; a whole lease when there is no lease to go by.
    """
    # A tuple per row, so that a row without a lease is told from no row at all.
    row = (
        statements.job_rows().filter(job_id=job_id).values_list("lease_expires_at").first()
        if job_id
        else None
    )
    if row is None:
        return NOT_RECORDED_RETRY_SECONDS
    (expires,) = row
    if expires is None:
        return get_config().lease_seconds
    return max(1, math.ceil((expires - timezone.now()).total_seconds()))


@method_decorator(
    [csrf_exempt, login_not_required, transaction.non_atomic_requests], name="dispatch"
)
class ReceiveView(View):
    """Verifies a delivery's signature, then runs its job, or records QStash's failure notice.

    Nothing runs before the check.
    """

    http_method_names = ["post"]

    def post(self, request: HttpRequest) -> HttpResponse:
        config = get_config()
        try:
            verify_signature(
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
            logger.error("Rejected a signed delivery whose body names no job.")
            return _answer(Outcome.REJECTED)
        try:
            outcome = execute(delivery)
        except Exception:
            # The database or our own code failed, not the handler: QStash should try again.
            # The traceback goes to the log only, even with DEBUG on.
            logger.exception("Executing delivery %s failed.", delivery.message_id)
            return JsonResponse({"status": "error"}, status=500)
        return _answer(outcome, delivery.job_id)


def _record_notice(notice: FailureNotice, body: bytes) -> HttpResponse:
    try:
        outcome, job_id = failure_notices.record(notice)
        if outcome is Outcome.ACKNOWLEDGED and job_id is not None:
            failure_notices.forward(notice, body, job_id)
    except Exception:
        logger.exception("Recording QStash's failure notice for %s failed.", notice.message_id)
        return JsonResponse({"status": "error"}, status=500)
    return _answer(outcome, job_id)


def _delivery(request: HttpRequest, body: Any) -> Delivery | None:
    if body is None:  # not JSON
        return None
    try:
        retried = int(request.headers.get("Upstash-Retried", "0"))
    except ValueError:
        return None
    job_id = identifier(body.get("job_id")) if isinstance(body, dict) else None
    schedule_id = request.headers.get("Upstash-Schedule-Id")
    if job_id is None and not schedule_id:
        return None
    return Delivery(
        job_id=job_id,
        message_id=request.headers.get("Upstash-Message-Id"),
        retried=max(0, retried),
        schedule_id=schedule_id,
    )


receive = ReceiveView.as_view()
