"""The hot path's hand-written SQL: what each statement leaves behind besides its row."""

from __future__ import annotations

import pytest
from django.db import connection, transaction

from django_qstash_jobs import statements
from django_qstash_jobs.models import JobExecution, JobStatus

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(
        connection.vendor != "postgresql", reason="synchronous_commit is PostgreSQL's"
    ),
]


def synchronous_commit() -> str:
    with connection.cursor() as cursor:
        cursor.execute("SHOW synchronous_commit")
        setting: str = cursor.fetchone()[0]
    return setting


def test_a_claim_on_its_own_leaves_the_session_committing_durably() -> None:
    # The claim commits without waiting for the disk; the handler's writes that follow must not.
    row = JobExecution.objects.create(job_type="echo", status=JobStatus.QUEUED)
    claimed = statements.claim(row.job_id, lease_seconds=60)
    assert claimed is not None
    assert claimed.status == JobStatus.RUNNING
    assert synchronous_commit() == "on"


def test_a_claim_inside_the_callers_transaction_keeps_that_transaction_durable() -> None:
    # The setting would last until this transaction's commit, and cover the caller's writes.
    row = JobExecution.objects.create(job_type="echo", status=JobStatus.QUEUED)
    with transaction.atomic():
        assert statements.claim(row.job_id, lease_seconds=60) is not None
        assert synchronous_commit() == "on"


def test_a_published_mark_leaves_the_session_committing_durably() -> None:
    row = JobExecution.objects.create(job_type="echo")
    statements.mark_one_published(row.job_id, "msg_marked", row.created_at)
    row.refresh_from_db()
    assert (row.status, row.message_id) == (JobStatus.QUEUED, "msg_marked")
    assert synchronous_commit() == "on"
