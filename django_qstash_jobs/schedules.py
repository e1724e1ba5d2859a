"""Cron schedules: ``job_dispatcher.schedule`` and friends, declarations, ``sync_schedules``.

The ``JobSchedule`` row is the truth and QStash holds a copy that fires to the receiver. Creating
or changing a schedule writes the row first and then makes QStash match it, so when QStash cannot
be reached the row still says what is wanted and ``manage.py sync_schedules`` completes the work
later. Deleting goes the other way round: QStash first, so a failed delete keeps the row to retry.

Where the database locks rows (PostgreSQL), each operation locks the schedule's row
(``select_for_update``) from its write until QStash has been told, so that two operations on one
schedule (a pause and a resume, a pause during a deploy's sync) take turns, and QStash ends as
the row does; SQLite, which would lock the whole database meanwhile, commits each write at once
(:func:`_schedule_transaction`). A QStash failure is raised once the row's write is committed.

Ownership: a QStash account can hold schedules of other sites and other tools. This app only
ever deletes a QStash schedule that it has a row for, or whose id starts with
:data:`SCHEDULE_ID_PREFIX` *and* whose destination is this site's ``RECEIVER_URL``.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from typing import Any

from django.db import IntegrityError, connections, router, transaction
from django.db.models import QuerySet
from django.utils import timezone

from django_qstash_jobs import statements
from django_qstash_jobs.conf import get_config
from django_qstash_jobs.cron import validate_cron
from django_qstash_jobs.exceptions import JobValidationError, ScheduleError, UnknownJobTypeError
from django_qstash_jobs.models import JobExecution, JobSchedule, ScheduleSource
from django_qstash_jobs.options import owner_columns, parse_metadata
from django_qstash_jobs.registry import registry
from django_qstash_jobs.transports import get_transport
from django_qstash_jobs.transports.base import (
    BaseTransport,
    OutgoingSchedule,
    RemoteSchedule,
    ScheduleNotFound,
)

#: Every schedule id this app makes starts with this.
SCHEDULE_ID_PREFIX = "djqj-"
DECLARATION_KEYS = frozenset({"name", "job_type", "cron", "payload", "metadata", "paused"})
_REQUIRED_KEYS = ("name", "job_type", "cron")
#: QStash schedule ids allow letters, digits, '-', '_' and '.'.
_UNSAFE_IN_ID = re.compile(r"[^A-Za-z0-9_.-]+")
_NAME_MAX_LENGTH = 200
#: The ``cron`` column's length: every minute and hour listed one by one is longer.
_CRON_MAX_LENGTH = 200
#: The row fields a definition sets (``source`` and ``paused`` are decided separately).
_ROW_FIELDS = ("job_type", "cron", "payload", "user_id", "organization_id")


class ScheduleValidationError(ScheduleError, JobValidationError):
    """A schedule's payload does not match its job type's schema; ``errors`` names the fields."""


class ScheduleJobTypeError(ScheduleError, UnknownJobTypeError):
    """A schedule names a job type that is not registered."""


@dataclass(frozen=True)
class ScheduleDefinition:
    """A checked schedule, from a declaration in settings or a ``schedule()`` call."""

    name: str
    job_type: str
    cron: str
    payload: dict[str, Any]
    user_id: str | None
    organization_id: str | None
    #: ``None`` keeps the row's state (a new row is not paused).
    paused: bool | None = None

    def row_values(self) -> dict[str, Any]:
        """The ``JobSchedule`` fields this definition sets."""
        return {key: getattr(self, key) for key in _ROW_FIELDS}


def define(
    job_type: str,
    cron: str,
    payload: Any = None,
    metadata: Mapping[str, Any] | None = None,
    *,
    name: str,
    paused: bool | None = None,
) -> ScheduleDefinition:
    """Check every part of a schedule; raise :class:`ScheduleError` (or ``TypeError``) if wrong."""
    if not isinstance(name, str) or not name.strip() or len(name) > _NAME_MAX_LENGTH:
        raise ScheduleError(
            f"A schedule name must be a non-empty str of {_NAME_MAX_LENGTH} characters at most, "
            f"not {name!r}."
        )
    cron = validate_cron(cron)
    if len(cron) > _CRON_MAX_LENGTH:
        raise ScheduleError(
            f"Schedule {name!r}: the cron expression has {len(cron)} characters once written "
            f"out, more than the {_CRON_MAX_LENGTH} stored; use ranges and steps (0-59/5) rather "
            "than long lists."
        )
    try:
        job = registry.get(job_type)
    except UnknownJobTypeError as exc:
        raise ScheduleJobTypeError(f"Schedule {name!r}: {exc}") from None
    try:
        stored_payload = job.serialize({} if payload is None else payload)
    except JobValidationError as exc:
        raise ScheduleValidationError(f"Schedule {name!r}: {exc}", errors=exc.errors) from None
    parsed = parse_metadata(metadata)
    if "idempotency_key" in parsed:
        # Every firing would carry the same key, so only the first one would ever run.
        raise ScheduleError(
            f"Schedule {name!r}: metadata['idempotency_key'] is not allowed on a schedule; each "
            "firing is already recorded once, by its QStash message id."
        )
    if paused is not None and not isinstance(paused, bool):
        raise ScheduleError(f"Schedule {name!r}: 'paused' must be True or False, not {paused!r}.")
    return ScheduleDefinition(
        name=name,
        job_type=job_type,
        cron=cron,
        payload=stored_payload,
        **owner_columns(parsed),
        paused=paused,
    )


def schedule_rows() -> QuerySet[JobSchedule]:
    """Schedule rows read from the database they are written to.

    Behind a router that reads from a replica, a schedule just made may not be there yet: a
    sync would take its QStash copy for a stranger's leftover and delete it.
    """
    return JobSchedule.objects.using(router.db_for_write(JobSchedule))


def schedule_id_for(name: str) -> str:
    """The QStash schedule id of a new schedule called ``name``.

    Readable, and unique per site: the hash covers ``RECEIVER_URL``, so a staging and a
    production site sharing one QStash account never overwrite each other's schedules.
    """
    receiver_url = get_config().receiver_url or ""
    digest = hashlib.sha256(f"{receiver_url}\n{name}".encode()).hexdigest()[:10]
    slug = _UNSAFE_IN_ID.sub("-", name).strip("-.")[:80] or "schedule"
    return f"{SCHEDULE_ID_PREFIX}{slug}-{digest}"


def owns(remote: RemoteSchedule) -> bool:
    """Whether a QStash schedule with no row is this site's to delete."""
    receiver_url = get_config().receiver_url
    return (
        bool(receiver_url)
        and remote.schedule_id.startswith(SCHEDULE_ID_PREFIX)
        and remote.destination == receiver_url
    )


def outgoing(row: JobSchedule) -> OutgoingSchedule:
    """The schedule QStash should hold for ``row``."""
    return _outgoing(row.schedule_id, row.job_type, row.cron)


def _outgoing(schedule_id: str, job_type: str, cron: str) -> OutgoingSchedule:
    return OutgoingSchedule(
        schedule_id=schedule_id,
        job_type=job_type,
        cron=cron,
        max_retries=registry.max_retries(job_type),
    )


def push(row: JobSchedule) -> None:
    """Make QStash hold ``row``'s schedule, paused or not, and record when.

    ``row`` is read again first, locked: QStash is told what the row says now, not what it said
    when the caller loaded it.
    """
    with _schedule_transaction():
        _lock(row)
        transport = get_transport()
        transport.upsert_schedule(outgoing(row))
        # Said explicitly after every upsert: whether an upsert keeps a pause is up to the server.
        _set_remote_paused(transport, row.schedule_id, paused=row.paused)
        _mark_synced(row)


def _schedule_transaction() -> AbstractContextManager[object]:
    """Where operations on one schedule take turns: a transaction holding the row's lock.

    Only where the database locks rows. SQLite locks the whole database for a transaction's
    writes: held while QStash answers, it would stop every other write of the site (enqueues,
    claims) for as long. There each write commits at once, and QStash is told after, as before.
    """
    database = router.db_for_write(JobSchedule)
    if not connections[database].features.has_select_for_update:
        return nullcontext()
    return transaction.atomic(using=database)


def _locked_rows() -> QuerySet[JobSchedule]:
    """Rows locked until the transaction ends (where rows are locked: not on SQLite).

    ``FOR NO KEY UPDATE`` where the database has it (PostgreSQL): operations on one schedule
    still take turns, but a firing's job row, which references the schedule, is recorded
    without waiting for QStash to answer the operation.
    """
    database = router.db_for_write(JobSchedule)
    no_key = connections[database].features.has_select_for_no_key_update
    return JobSchedule.objects.using(database).select_for_update(no_key=no_key)


def _lock(row: JobSchedule) -> None:
    """Reload ``row`` and lock it until the transaction ends."""
    try:
        row.refresh_from_db(from_queryset=_locked_rows())
    except JobSchedule.DoesNotExist:
        raise ScheduleError(f"Schedule {row.name!r} was deleted meanwhile.") from None


def _set_remote_paused(transport: BaseTransport, schedule_id: str, *, paused: bool) -> None:
    if paused:
        transport.pause_schedule(schedule_id)
    else:
        transport.resume_schedule(schedule_id)


def _mark_synced(row: JobSchedule) -> None:
    now = timezone.now()
    # An UPDATE of one column: a concurrent edit of the row is not overwritten, and
    # ``updated_at`` keeps meaning "last edited".
    JobSchedule.objects.filter(pk=row.pk).update(last_synced_at=now)
    row.last_synced_at = now


def _push_or_explain(row: JobSchedule) -> None:
    try:
        push(row)
    except ScheduleError as exc:
        raise ScheduleError(
            f"Schedule {row.name!r} is saved, but QStash does not match it yet: {exc} "
            "`manage.py sync_schedules` will update QStash once it can be reached."
        ) from exc


# The operations behind job_dispatcher.schedule / unschedule / pause_schedule / resume_schedule.


def schedule(
    job_type: str,
    cron: str,
    payload: Any = None,
    metadata: Mapping[str, Any] | None = None,
    *,
    name: str,
) -> str:
    """Create the schedule called ``name``, or update it if it exists; return its schedule id.

    The payload is validated now, against the job type's schema. A paused schedule stays
    paused. QStash is updated at once; if it cannot be reached, :class:`ScheduleError` is
    raised and the saved row waits for ``sync_schedules``.
    """
    definition = define(job_type, cron, payload, metadata, name=name)
    existing = schedule_rows().filter(name=name).values_list("source", flat=True).first()
    if existing == ScheduleSource.SETTINGS:
        raise ScheduleError(
            f"Schedule {name!r} is declared in QSTASH_JOBS['SCHEDULES']; change it there and "
            "run `manage.py sync_schedules`."
        )
    values = definition.row_values()
    row, _created = JobSchedule.objects.update_or_create(
        name=name,
        defaults=values,
        create_defaults={
            **values,
            "schedule_id": schedule_id_for(name),
            "source": ScheduleSource.CODE,
        },
    )
    _push_or_explain(row)
    return row.schedule_id


def get_schedule(schedule_id: str) -> JobSchedule:
    """The schedule with this schedule id (or, failing that, this name)."""
    row = (
        schedule_rows().filter(schedule_id=schedule_id).first()
        or schedule_rows().filter(name=schedule_id).first()
    )
    if row is None:
        raise ScheduleError(f"No schedule has the id or name {schedule_id!r}.")
    return row


def unschedule(schedule_id: str) -> None:
    """Delete a schedule from QStash, then its row; past jobs keep their records.

    A schedule declared in settings cannot be deleted here (the next sync would bring it
    back): remove its declaration instead.
    """
    row = get_schedule(schedule_id)
    if row.source == ScheduleSource.SETTINGS:
        raise ScheduleError(
            f"Schedule {row.name!r} is declared in QSTASH_JOBS['SCHEDULES']; remove it there and "
            "run `manage.py sync_schedules`."
        )
    with _schedule_transaction():
        _lock(row)
        # QStash first: if it cannot be reached the row stays, and unschedule can be called again.
        get_transport().delete_schedule(row.schedule_id)
        row.delete()


def pause_schedule(schedule_id: str) -> None:
    """Stop a schedule from firing until it is resumed."""
    _pause_or_resume(schedule_id, paused=True)


def resume_schedule(schedule_id: str) -> None:
    """Let a paused schedule fire again."""
    _pause_or_resume(schedule_id, paused=False)


def _pause_or_resume(schedule_id: str, *, paused: bool) -> None:
    row = get_schedule(schedule_id)
    failure: ScheduleError | None = None
    with _schedule_transaction():
        _lock(row)
        JobSchedule.objects.filter(pk=row.pk).update(paused=paused, updated_at=timezone.now())
        row.paused = paused
        try:
            try:
                _set_remote_paused(get_transport(), row.schedule_id, paused=paused)
            except ScheduleNotFound:
                # QStash lost it or never had it (QStash was down when it was created).
                push(row)
            else:
                _mark_synced(row)
        except ScheduleError as exc:
            # Raised after the commit: the row keeps what is wanted, for sync_schedules.
            failure = exc
    if failure is not None:
        raise ScheduleError(
            f"Schedule {row.name!r} is marked {'paused' if paused else 'resumed'}, but QStash "
            f"does not match it yet: {failure} `manage.py sync_schedules` will update QStash."
        ) from failure


def run_schedule_now(schedule_id: str) -> str:
    """Enqueue the schedule's job at once, linked to the schedule; return the job id."""
    from django_qstash_jobs.dispatcher import job_dispatcher

    row = get_schedule(schedule_id)
    # In one transaction the publish waits for the commit, so the link is in place before the
    # job can run.
    with statements.jobs_transaction():
        job_id = job_dispatcher.enqueue(row.job_type, row.payload, row.job_metadata())
        JobExecution.objects.filter(job_id=job_id).update(schedule=row)
    return job_id


# Declarations: QSTASH_JOBS["SCHEDULES"].


def declared_schedules() -> list[ScheduleDefinition]:
    """The checked declarations; :class:`ScheduleError` lists every problem if any is wrong."""
    definitions, problems = _read_declarations(get_config().schedules)
    if problems:
        raise ScheduleError("Invalid QSTASH_JOBS['SCHEDULES']: " + " ".join(problems))
    return definitions


def declaration_problems() -> list[str]:
    """What is wrong with ``QSTASH_JOBS["SCHEDULES"]``, one sentence per problem."""
    return _read_declarations(get_config().schedules)[1]


def _read_declarations(declarations: Any) -> tuple[list[ScheduleDefinition], list[str]]:
    if not isinstance(declarations, (list, tuple)):
        return [], [
            f"QSTASH_JOBS['SCHEDULES'] must be a list of dicts, not {type(declarations).__name__}."
        ]
    definitions: list[ScheduleDefinition] = []
    problems: list[str] = []
    seen: set[str] = set()
    for index, declaration in enumerate(declarations):
        label = f"QSTASH_JOBS['SCHEDULES'][{index}]"
        if not isinstance(declaration, Mapping):
            problems.append(f"{label} must be a dict, not {type(declaration).__name__}.")
            continue
        if isinstance(declaration.get("name"), str):
            label = f"{label} ({declaration['name']!r})"
        unknown = sorted(set(declaration) - DECLARATION_KEYS)
        missing = [key for key in _REQUIRED_KEYS if key not in declaration]
        if unknown:
            problems.append(
                f"{label} has unknown keys {', '.join(map(repr, unknown))}; "
                f"allowed: {', '.join(sorted(DECLARATION_KEYS))}."
            )
        if missing:
            problems.append(f"{label} lacks {', '.join(map(repr, missing))}.")
        if unknown or missing:
            continue
        try:
            definition = define(
                declaration["job_type"],
                declaration["cron"],
                declaration.get("payload"),
                declaration.get("metadata"),
                name=declaration["name"],
                paused=declaration.get("paused"),
            )
        except (ScheduleError, TypeError, ValueError) as exc:
            problems.append(f"{label}: {exc}")
            continue
        if definition.name in seen:
            problems.append(f"{label}: the name {definition.name!r} is declared twice.")
            continue
        seen.add(definition.name)
        definitions.append(definition)
    return definitions, problems


# sync_schedules: plan what to do, then do it.

CREATE, UPDATE, DELETE, PAUSE, RESUME, UNCHANGED = (
    "create",
    "update",
    "delete",
    "pause",
    "resume",
    "unchanged",
)


@dataclass
class SyncAction:
    """What a sync does to one schedule, and why."""

    action: str
    name: str
    schedule_id: str
    cron: str
    details: str = ""
    row: JobSchedule | None = None
    #: Fields to write to the row: those the plan changes, or a new row's.
    row_values: dict[str, Any] | None = None
    upsert: bool = False
    #: Pause (True) or resume (False) on QStash; None: leave as is.
    set_paused: bool | None = None
    delete_remote: bool = False
    delete_row: bool = False


@dataclass
class SyncPlan:
    """Everything a sync would do, one action per schedule."""

    actions: list[SyncAction] = field(default_factory=list)
    #: QStash schedules left alone because this site does not own them.
    foreign: int = 0


def plan_sync() -> SyncPlan:
    """Compare declarations, rows and QStash; change nothing.

    Raises :class:`ScheduleError` when a declaration is invalid or QStash cannot be listed.
    """
    if not get_config().receiver_url:
        raise ScheduleError(
            "QSTASH_JOBS['RECEIVER_URL'] is not set: schedules fire to this site's receiver, "
            "and only schedules pointing there are this site's."
        )
    declared = {definition.name: definition for definition in declared_schedules()}
    remote = {schedule.schedule_id: schedule for schedule in get_transport().list_schedules()}
    rows = {row.name: row for row in schedule_rows()}
    plan = SyncPlan()
    for name in sorted(set(rows) | set(declared)):
        row, definition = rows.get(name), declared.get(name)
        if row is not None and definition is None and row.source == ScheduleSource.SETTINGS:
            plan.actions.append(
                SyncAction(
                    DELETE,
                    name,
                    row.schedule_id,
                    row.cron,
                    "no longer declared in settings",
                    row=row,
                    delete_remote=remote.pop(row.schedule_id, None) is not None,
                    delete_row=True,
                )
            )
            continue
        schedule_id = row.schedule_id if row is not None else schedule_id_for(name)
        plan.actions.append(
            _plan_kept(name, schedule_id, row, definition, remote.pop(schedule_id, None))
        )
    for schedule in remote.values():
        if owns(schedule):
            plan.actions.append(
                SyncAction(
                    DELETE,
                    "",
                    schedule.schedule_id,
                    schedule.cron,
                    "on QStash only: no row and no declaration",
                    delete_remote=True,
                )
            )
        else:
            plan.foreign += 1
    return plan


def _plan_kept(
    name: str,
    schedule_id: str,
    row: JobSchedule | None,
    definition: ScheduleDefinition | None,
    remote: RemoteSchedule | None,
) -> SyncAction:
    """The action for a schedule that stays: its row written if needed, QStash made to match."""
    current: dict[str, Any] = {}
    if row is not None:
        current = {key: getattr(row, key) for key in (*_ROW_FIELDS, "source", "paused")}
    wanted = dict(current)
    if definition is not None:
        wanted.update(definition.row_values(), source=ScheduleSource.SETTINGS)
        if definition.paused is not None:
            wanted["paused"] = definition.paused
    # A new row is paused only if the declaration says so (the model's default otherwise).
    new_row_values = dict(wanted)
    wanted.setdefault("paused", False)
    changed = [key for key in wanted if row is not None and current.get(key) != wanted[key]]
    # An existing row gets only what changes: it may have changed itself by the time of the
    # sync's apply (an operator's pause).
    row_values = new_row_values if row is None else {key: wanted[key] for key in changed}
    desired = _outgoing(schedule_id, wanted["job_type"], wanted["cron"])
    remote_changes = _remote_differences(desired, remote)
    upsert = bool(remote_changes)
    set_paused: bool | None = wanted["paused"] if upsert else None
    if remote is not None and not upsert and remote.paused != wanted["paused"]:
        set_paused = wanted["paused"]

    details = [_describe_change(key, current.get(key), wanted[key]) for key in changed]
    details += [change for change in remote_changes if change not in details]
    if row is None:
        action = CREATE
        details = ["declared in settings"]
    elif remote is None:
        action = CREATE
    elif upsert or any(key != "paused" for key in changed):
        action = UPDATE
    elif set_paused is not None:
        action = PAUSE if set_paused else RESUME
        if not changed:
            details = [f"QStash has it {'running' if set_paused else 'paused'}"]
    elif changed:
        action = UPDATE  # paused in the row only; QStash already matches
    else:
        action = UNCHANGED
    return SyncAction(
        action,
        name,
        schedule_id,
        wanted["cron"],
        "; ".join(details),
        row=row,
        row_values=row_values or None,
        upsert=upsert,
        set_paused=set_paused,
    )


def _remote_differences(desired: OutgoingSchedule, remote: RemoteSchedule | None) -> list[str]:
    if remote is None:
        return ["missing on QStash"]
    differences = []
    if remote.destination != get_config().receiver_url:
        differences.append(f"destination {remote.destination} -> RECEIVER_URL")
    if remote.cron != desired.cron:
        differences.append(f"cron on QStash {remote.cron!r} -> {desired.cron!r}")
    if remote.body != desired.body():
        differences.append("message body")
    if remote.retries != desired.max_retries:
        differences.append(f"retries {remote.retries} -> {desired.max_retries}")
    if remote.failure_callback != get_config().receiver_url:
        differences.append("failure notice to RECEIVER_URL")
    return differences


def _describe_change(key: str, old: Any, new: Any) -> str:
    if key == "source":
        return "now declared in settings"
    if key in ("payload",):
        return key
    return f"{key.replace('_', ' ')} {old!r} -> {new!r}"


def apply_action(action: SyncAction) -> None:
    """Carry out one planned action: the row first, then QStash.

    The plan may be minutes old (a deploy's sync): the row is read again, locked, and only the
    fields the plan changes are written, so that an operator's pause since then is kept and sent
    to QStash, and a concurrent sync's work is built on rather than refused.
    """
    transport = get_transport()
    if action.delete_remote:
        # QStash first: if it fails, the row (and so the plan to delete) survives for next time.
        transport.delete_schedule(action.schedule_id)
    if action.delete_row and action.row is not None:
        action.row.delete()
    if action.delete_remote or action.delete_row:
        return
    failure: ScheduleError | None = None
    with _schedule_transaction():
        row = _write_planned_row(action)
        if row is None:
            return  # unscheduled since the plan was made: nothing left to sync
        try:
            if action.upsert:
                transport.upsert_schedule(outgoing(row))
            if action.set_paused is not None:
                _set_remote_paused(transport, row.schedule_id, paused=row.paused)
            if action.upsert or action.set_paused is not None or row.last_synced_at is None:
                _mark_synced(row)
        except ScheduleError as exc:
            # Raised after the commit: the row keeps what is wanted, for the next sync.
            failure = exc
    if failure is not None:
        raise failure


def _write_planned_row(action: SyncAction) -> JobSchedule | None:
    """The action's row, locked, with the plan's fields written; None if it was deleted since."""
    changes = action.row_values or {}
    if action.row is None:
        try:
            # A savepoint: on PostgreSQL the failed INSERT would abort the transaction around it.
            with transaction.atomic(using=router.db_for_write(JobSchedule)):
                return JobSchedule.objects.create(
                    name=action.name, schedule_id=action.schedule_id, **changes
                )
        except IntegrityError:
            pass  # another sync created it since the plan: update it as if it had been planned
    row = _locked_rows().filter(name=action.name).first()
    if row is not None and changes:
        for key, value in changes.items():
            setattr(row, key, value)
        row.save(update_fields=[*changes, "updated_at"])
    return row
