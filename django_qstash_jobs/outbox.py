"""The outbox: publishing recorded rows, now or after the commit, and again if that failed.

A job is written to the database before anything is sent to QStash. If the publish fails the
row stays ``pending``, and :func:`republish_pending` (``manage.py republish_jobs``) sends it later.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import timedelta

from django.db import DatabaseError, router, transaction
from django.db.models import Q
from django.utils import timezone

from django_qstash_jobs import signals, statements
from django_qstash_jobs.conf import get_config
from django_qstash_jobs.exceptions import EnqueueError, PublishRefused
from django_qstash_jobs.models import JobExecution, JobStatus
from django_qstash_jobs.options import PublishOptions
from django_qstash_jobs.transports import OutgoingMessage, get_transport

logger = logging.getLogger("django_qstash_jobs")


def outgoing(execution: JobExecution) -> OutgoingMessage:
    """The message that carries ``execution`` to the receiver."""
    options = PublishOptions.from_json(execution.options)
    if options.delay_seconds:
        options = replace(options, delay_seconds=remaining_delay(execution, options.delay_seconds))
    return OutgoingMessage(
        job_id=execution.job_id,
        job_type=execution.job_type,
        max_retries=execution.max_retries,
        options=options,
    )


def remaining_delay(execution: JobExecution, delay_seconds: int) -> int:
    """What is left of a delay counted from the enqueue, in whole seconds, rounded up.

    QStash counts a delay from the publish. A row published late (by ``republish_jobs`` after an
    outage, or after a long transaction's commit) must not wait its whole delay again, nor run
    before it is due; a manual retry runs once the original delay, counted from the enqueue,
    is over (at once for a job past it).
    """
    elapsed = (timezone.now() - execution.created_at).total_seconds()
    # Bounded by the delay: a publishing server whose clock is behind never adds to it.
    return min(delay_seconds, max(0, math.ceil(delay_seconds - elapsed)))


def publish(executions: Sequence[JobExecution]) -> None:
    """Publish now; on failure raise :class:`EnqueueError` and leave the rows ``pending``.

    QStash refuses a whole batch for one message it will not take. The batch is then sent one
    message at a time: the others are published, and the refused ones, shown to be refused for
    their own sake, are ``failed`` with QStash's answer (:class:`PublishRefused` with ``failed``).
    A refusal of every message (of a single one, too) may be the site's, a ``RECEIVER_URL``
    QStash will not deliver to: those rows stay ``pending`` until it is fixed.
    """
    if not executions:
        return
    try:
        message_ids = get_transport().publish([outgoing(execution) for execution in executions])
    except PublishRefused as exc:
        if len(executions) == 1:
            _release(executions)
            exc.refusals = {executions[0]: exc}
            raise
        _publish_one_by_one(executions)
        return
    except EnqueueError as exc:
        _release(executions)
        # The transport names the chunk that failed; the chunks before it were taken but not
        # marked, those after it never sent: every row is pending.
        exc.job_ids = [execution.job_id for execution in executions]
        raise
    try:
        mark_published(executions, message_ids)
    except DatabaseError:
        # The jobs are published: failing the caller now would report a job that will run as
        # not enqueued. The rows stay pending; a republish reuses their deduplication ids, and
        # the receiver claims a pending row like a queued one, so nothing runs twice.
        logger.warning(
            "Published %d jobs but could not record their message ids.",
            len(executions),
            exc_info=True,
        )


def publish_on_commit(
    executions: Sequence[JobExecution], *, after_commit: bool | None = None
) -> None:
    """Publish once the current transaction commits, or now outside a transaction.

    After a commit there is no caller left to raise to: a failure is logged and the rows wait
    for ``republish_jobs``. A rolled-back transaction publishes nothing. ``after_commit``
    overrides ``ENQUEUE_ON_COMMIT`` (``enqueue_on`` always waits for the commit).
    """
    using = router.db_for_write(JobExecution)
    connection = transaction.get_connection(using)
    if after_commit is None:
        after_commit = get_config().enqueue_on_commit
    if not (after_commit and connection.in_atomic_block):
        publish(executions)
        return

    def publish_after_commit() -> None:
        try:
            publish(executions)
        except PublishRefused as exc:
            logger.error("Publishing after commit: %s", exc)
        except Exception as exc:
            # Whatever it was, the rows stay pending for republish_jobs; and the transaction's
            # other on-commit callbacks (other enqueues among them) must still run.
            logger.error(
                "Publishing after commit failed; left for republish_jobs: %s", exc, exc_info=True
            )

    transaction.on_commit(publish_after_commit, using=using)


def mark_published(executions: Sequence[JobExecution], message_ids: Sequence[str]) -> None:
    """Store message ids and move rows still ``pending`` to ``queued``, in one UPDATE.

    A row may already be past ``pending``: QStash (or the immediate transport) can deliver
    before this runs, and the receiver's state wins.
    """
    now = timezone.now()
    if len(executions) == 1:
        statements.mark_one_published(executions[0].job_id, message_ids[0], now)
    else:
        statements.mark_many_published(
            [
                (execution.job_id, mid)
                for execution, mid in zip(executions, message_ids, strict=True)
            ],
            now,
        )
    for execution, mid in zip(executions, message_ids, strict=True):
        execution.message_id = mid
        if execution.status == JobStatus.PENDING:
            execution.status = JobStatus.QUEUED


def _publish_one_by_one(executions: Sequence[JobExecution]) -> None:
    refused: list[tuple[JobExecution, PublishRefused]] = []
    published = 0
    for index, execution in enumerate(executions):
        try:
            publish([execution])
        except PublishRefused as exc:
            refused.append((execution, exc))
        except EnqueueError as exc:
            _release(executions[index + 1 :])
            pending = [row.job_id for row, _refusal in refused]
            pending += [row.job_id for row in executions[index:]]
            raise EnqueueError(str(exc), job_ids=pending) from exc
        else:
            published += 1
    if not refused:
        return
    job_ids = [execution.job_id for execution, _refusal in refused]
    if not published:
        first = refused[0][1]
        every_one = PublishRefused(
            f"QStash refused every one of {len(executions)} jobs ({first}); they stay pending, "
            "and `manage.py republish_jobs` publishes them once what QStash names is fixed.",
            job_ids=job_ids,
        )
        every_one.refusals = dict(refused)
        raise every_one
    for execution, refusal in refused:
        _fail_refused(execution, refusal)
    raise PublishRefused(
        f"QStash refused {len(refused)} of {len(executions)} jobs and accepted the others; the "
        "refused ones are failed, with its answer as their error.",
        job_ids=job_ids,
        failed=True,
    )


def _fail_refused(execution: JobExecution, exc: PublishRefused) -> None:
    now = timezone.now()
    error = f"PublishRefused: {exc}"
    failed = JobExecution.objects.filter(pk=execution.pk, status=JobStatus.PENDING).update(
        status=JobStatus.FAILED,
        error=error,
        finished_at=now,
        publish_claimed_at=None,
        updated_at=now,
    )
    if failed:
        execution.status, execution.error, execution.finished_at = JobStatus.FAILED, error, now
        signals.send_job_failed(execution, error, exc)


def _release(executions: Sequence[JobExecution]) -> None:
    # Let the next republish run take these rows at once instead of waiting for the claim to age.
    claimed = [execution.pk for execution in executions if execution.publish_claimed_at]
    if claimed:
        JobExecution.objects.filter(pk__in=claimed).update(publish_claimed_at=None)


@dataclass
class RepublishReport:
    """What one republish run did."""

    published: int = 0
    failed: int = 0
    #: Rows another run had claimed, or that left ``pending`` meanwhile.
    skipped: int = 0
    #: Rows whose message QStash refused: ``failed`` now, with its answer.
    refused: int = 0


def republish_pending(
    *, older_than: timedelta | None = None, batch_size: int = 100, limit: int | None = None
) -> RepublishReport:
    """Publish rows left ``pending`` for longer than ``older_than``.

    Safe to run several times at once: each row is claimed by a conditional UPDATE before it is
    published, so only one run publishes it. A claim older than three publish timeouts (the
    transport's attempts) plus a minute, left by a run that died, may be taken again.
    """
    config = get_config()
    if older_than is None:
        older_than = timedelta(seconds=config.republish_grace_seconds)
    report = RepublishReport()
    stale_claim = timedelta(seconds=config.publish_timeout * 3 + 60)
    # Rows another run claimed first: still pending, they would be selected again. Rows this
    # run published left ``pending`` and need no exclusion, so this stays small.
    skipped: set[int] = set()
    refused: dict[JobExecution, PublishRefused] = {}

    def handled() -> int:
        return report.published + report.failed + len(refused)

    while limit is None or handled() < limit:
        now = timezone.now()
        unclaimed = Q(publish_claimed_at__isnull=True) | Q(publish_claimed_at__lt=now - stale_claim)
        waiting = statements.job_rows().filter(
            unclaimed, status=JobStatus.PENDING, created_at__lt=now - older_than
        )
        size = batch_size if limit is None else min(batch_size, limit - handled())
        candidates = list(waiting.exclude(pk__in=skipped).order_by("created_at", "pk")[:size])
        if not candidates:
            break
        claimed = []
        for execution in candidates:
            if waiting.filter(pk=execution.pk).update(publish_claimed_at=now):
                execution.publish_claimed_at = now
                claimed.append(execution)
            else:
                skipped.add(execution.pk)
                report.skipped += 1
        try:
            publish(claimed)
        except EnqueueError as exc:
            if isinstance(exc, PublishRefused) and exc.failed:
                # The refused rows are failed, the others published: the run goes on.
                report.refused += len(exc.job_ids)
                report.published += len(claimed) - len(exc.job_ids)
                continue
            if isinstance(exc, PublishRefused):
                # Every row of the batch refused, one at a time: the site's doing (its
                # RECEIVER_URL) or the rows' own (a delay past the plan's limit). Set aside,
                # so that they cannot hold back the rows behind them, run after run.
                refused.update(exc.refusals)
                skipped.update(execution.pk for execution in claimed)
                if report.published or len(refused) < _REFUSED_BEFORE_GIVING_UP * batch_size:
                    continue
                # Nothing taken, batch after batch: most likely the site's own RECEIVER_URL.
                # Trying every pending row, one request each, would not change that.
                break
            left = len(exc.job_ids) or len(claimed)  # those of a batch sent one by one, or all
            report.failed += left
            report.published += len(claimed) - left
            logger.error("Republishing %d jobs failed: %s", left, exc)
            break
        report.published += len(claimed)
    _settle_refused(refused, report)
    return report


#: Whole batches QStash may refuse, with nothing published yet, before a run gives up.
_REFUSED_BEFORE_GIVING_UP = 3


def _settle_refused(refused: dict[JobExecution, PublishRefused], report: RepublishReport) -> None:
    """Fail the rows QStash refused if it took others in the same run; else leave them pending.

    Taking other messages shows the refusals are the rows' own: failed, with QStash's answer.
    Refusing everything may be the site's: the rows wait until what QStash names is fixed.
    """
    if not refused:
        return
    if report.published:
        for execution, refusal in refused.items():
            _fail_refused(execution, refusal)
        report.refused += len(refused)
        return
    _release(list(refused))
    report.failed += len(refused)
    first = next(iter(refused.values()))
    logger.error("QStash refused all %d jobs it was sent: %s", len(refused), first)
