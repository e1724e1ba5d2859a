"""The job record (`JobExecution`) and cron schedules (`JobSchedule`)."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _


def new_job_id() -> str:
    """A new, unguessable job id (it appears in status URLs)."""
    return str(uuid.uuid4())


class JobStatus(models.TextChoices):
    PENDING = "pending", _("Pending")
    QUEUED = "queued", _("Queued")
    RUNNING = "running", _("Running")
    RETRYING = "retrying", _("Retrying")
    COMPLETED = "completed", _("Completed")
    FAILED = "failed", _("Failed")
    CANCELLED = "cancelled", _("Cancelled")


#: A delivery may claim a job in these states.
CLAIMABLE_STATUSES = (JobStatus.PENDING, JobStatus.QUEUED, JobStatus.RETRYING)
#: A job in these states is over; further deliveries are acknowledged without running.
FINISHED_STATUSES = (JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED)


# The nullable CharFields below are deliberate (DJ001): NULL means "not given", and for the
# unique ones (idempotency key, message id) only NULL may repeat.


class ScheduleSource(models.TextChoices):
    #: Declared in ``QSTASH_JOBS["SCHEDULES"]``: ``sync_schedules`` owns it and deletes it once
    #: the declaration is gone.
    SETTINGS = "settings", _("Settings")
    #: Created with ``job_dispatcher.schedule``: kept until ``unschedule``.
    CODE = "code", _("Code")


class JobSchedule(models.Model):
    """A cron schedule that enqueues a job type each time it fires."""

    schedule_id = models.CharField(
        _("schedule id"),
        max_length=128,
        unique=True,
        help_text=_("Also the QStash schedule id."),
    )
    name = models.CharField(_("name"), max_length=200, unique=True)
    job_type = models.CharField(_("job type"), max_length=100)
    cron = models.CharField(_("cron"), max_length=200)
    payload = models.JSONField(_("payload"), default=dict, blank=True)
    user_id = models.CharField(_("user id"), max_length=64, null=True, blank=True)  # noqa: DJ001
    organization_id = models.CharField(_("organization id"), max_length=64, null=True, blank=True)  # noqa: DJ001
    paused = models.BooleanField(_("paused"), default=False)
    source = models.CharField(
        _("source"),
        max_length=16,
        choices=ScheduleSource.choices,
        default=ScheduleSource.CODE,
        help_text=_("Where the schedule is defined; decides what sync_schedules may delete."),
    )
    last_synced_at = models.DateTimeField(_("last synced at"), null=True, blank=True)
    created_at = models.DateTimeField(_("created at"), default=timezone.now)
    updated_at = models.DateTimeField(_("updated at"), auto_now=True)

    class Meta:
        ordering = ["name"]
        verbose_name = _("job schedule")
        verbose_name_plural = _("job schedules")

    def __str__(self) -> str:
        return f"{self.name} ({self.cron})"

    def job_metadata(self) -> dict[str, str]:
        """The metadata of the jobs it starts: its ``user_id`` and ``organization_id``, if set."""
        owners = {"user_id": self.user_id, "organization_id": self.organization_id}
        return {key: value for key, value in owners.items() if value is not None}

    def next_runs(self, n: int = 5, *, after: datetime | None = None) -> list[datetime]:
        """The next ``n`` times this schedule fires (timezone-aware, UTC unless ``CRON_TZ=``)."""
        from django_qstash_jobs.cron import next_runs

        return next_runs(self.cron, n, after=after)


class JobExecution(models.Model):
    """One job: what to run, its state, and its outcome."""

    job_id = models.CharField(_("job id"), max_length=64, default=new_job_id, editable=False)
    job_type = models.CharField(_("job type"), max_length=100)
    status = models.CharField(
        _("status"), max_length=16, choices=JobStatus.choices, default=JobStatus.PENDING
    )
    payload = models.JSONField(_("payload"), default=dict, blank=True)
    user_id = models.CharField(_("user id"), max_length=64, null=True, blank=True)  # noqa: DJ001
    organization_id = models.CharField(_("organization id"), max_length=64, null=True, blank=True)  # noqa: DJ001
    # NULL rather than "" for "none": the unique constraints below allow any number of NULLs.
    idempotency_key = models.CharField(  # noqa: DJ001
        _("idempotency key"), max_length=255, null=True, blank=True
    )
    #: All metadata as given to enqueue, with its original types.
    metadata = models.JSONField(_("metadata"), default=dict, blank=True)
    message_id = models.CharField(  # noqa: DJ001
        _("QStash message id"), max_length=128, null=True, blank=True
    )
    schedule = models.ForeignKey(
        JobSchedule,
        verbose_name=_("schedule"),
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="executions",
    )
    attempts = models.PositiveIntegerField(_("attempts"), default=0)
    max_retries = models.PositiveIntegerField(_("max retries"), default=3)
    result = models.JSONField(_("result"), null=True, blank=True)
    error = models.TextField(_("error"), blank=True, default="")
    traceback = models.TextField(_("traceback"), blank=True, default="")
    progress = models.PositiveSmallIntegerField(_("progress"), default=0)
    progress_message = models.CharField(
        _("progress message"), max_length=255, blank=True, default=""
    )
    #: Publish options as given to enqueue (delay, callbacks, headers...).
    options = models.JSONField(_("options"), default=dict, blank=True)
    created_at = models.DateTimeField(_("created at"), default=timezone.now)
    started_at = models.DateTimeField(_("started at"), null=True, blank=True)
    finished_at = models.DateTimeField(_("finished at"), null=True, blank=True)
    updated_at = models.DateTimeField(_("updated at"), auto_now=True)
    #: While ``running``: when another delivery may take the job over (crashed worker).
    lease_expires_at = models.DateTimeField(_("lease expires at"), null=True, blank=True)
    #: While ``pending``: when a republish run claimed the row, so two runs never both publish.
    publish_claimed_at = models.DateTimeField(_("publish claimed at"), null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        verbose_name = _("job execution")
        verbose_name_plural = _("job executions")
        indexes = [
            models.Index(fields=["status", "created_at"], name="qstash_job_status_created"),
            models.Index(fields=["job_type", "created_at"], name="qstash_job_type_created"),
            models.Index(fields=["created_at"], name="qstash_job_created"),
            models.Index(fields=["user_id"], name="qstash_job_user"),
            models.Index(fields=["organization_id"], name="qstash_job_org"),
        ]
        # Constraints rather than unique=True: on PostgreSQL a unique CharField also gets a
        # varchar_pattern_ops index for LIKE, which nothing here runs, and every insert and
        # every status change (claim, outcome, mark) would maintain three of them for nothing.
        constraints = [
            models.UniqueConstraint(fields=["job_id"], name="qstash_job_id_unique"),
            models.UniqueConstraint(fields=["message_id"], name="qstash_job_message_id_unique"),
            models.UniqueConstraint(
                fields=["idempotency_key"], name="qstash_job_idempotency_key_unique"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.job_type} {self.job_id} ({self.status})"

    @property
    def is_finished(self) -> bool:
        return self.status in FINISHED_STATUSES

    @property
    def duration(self) -> timedelta | None:
        """Time from the first start to the end, for finished jobs."""
        if self.started_at and self.finished_at:
            return self.finished_at - self.started_at
        return None

    def as_status(self) -> dict[str, Any]:
        """The job's state as JSON for status endpoints and polling."""
        return {
            "job_id": self.job_id,
            "job_type": self.job_type,
            "status": self.status,
            "progress": self.progress,
            "progress_message": self.progress_message,
            "attempts": self.attempts,
            "max_retries": self.max_retries,
            "result": self.result,
            "error": self.error,
            "created_at": _iso(self.created_at),
            "started_at": _iso(self.started_at),
            "finished_at": _iso(self.finished_at),
        }


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


class EmailDeliveryStatus(models.TextChoices):
    #: Handed to the email backend; still in this state on a later attempt means that attempt
    #: stopped mid-send, so whether the email left is unknown.
    SENDING = "sending", _("Sending")
    SENT = "sent", _("Sent")
    #: A temporary failure: the next attempt sends it again.
    FAILED = "failed", _("Failed")
    #: Refused for good (bad recipient, broken template): never sent again.
    REJECTED = "rejected", _("Rejected")
    #: A previous attempt stopped while sending; not sent again, so it is never sent twice.
    UNKNOWN = "unknown", _("Unknown")


class EmailDelivery(models.Model):
    """One email of a ``send_email`` or ``send_batch_emails`` job and what became of it.

    Recorded as each email is sent, so a retried job skips the emails already sent.
    """

    execution = models.ForeignKey(
        JobExecution,
        verbose_name=_("job"),
        on_delete=models.CASCADE,
        related_name="email_deliveries",
    )
    #: The email's index in the job's list (0 for ``send_email``).
    position = models.PositiveIntegerField(_("position"))
    recipient = models.CharField(_("recipient"), max_length=254)
    template = models.CharField(_("template"), max_length=100)
    status = models.CharField(_("status"), max_length=16, choices=EmailDeliveryStatus.choices)
    #: The ESP's message id (django-anymail), else the Message-ID header.
    message_id = models.CharField(_("message id"), max_length=255, blank=True, default="")
    error = models.TextField(_("error"), blank=True, default="")
    created_at = models.DateTimeField(_("created at"), default=timezone.now)
    updated_at = models.DateTimeField(_("updated at"), auto_now=True)

    class Meta:
        ordering = ["execution", "position"]
        verbose_name = _("email delivery")
        verbose_name_plural = _("email deliveries")
        constraints = [
            models.UniqueConstraint(
                fields=["execution", "position"], name="qstash_email_delivery_once"
            )
        ]

    def __str__(self) -> str:
        return f"{self.template} to {self.recipient} ({self.status})"
