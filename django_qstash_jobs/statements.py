"""The hand-written SQL of the hot path: the statements every enqueue and delivery runs.

Each is one statement where the ORM would need two, or would spend longer compiling a CASE or a
conditional UPDATE than the database spends running it (see bench/enqueue.py and
bench/receiver.py). They use only standard SQL plus RETURNING and UPDATE ... FROM, which
PostgreSQL and SQLite 3.35+ support; elsewhere (MySQL, older SQLite) each falls back to the ORM
or to plain UPDATEs.
"""

from __future__ import annotations

import functools
import json
import operator
import sqlite3
from collections.abc import Callable, Iterator, Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.db import connections, router, transaction
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models import F, Field, Q, QuerySet, Value
from django.db.models.functions import Coalesce
from django.utils import timezone

from django_qstash_jobs.models import CLAIMABLE_STATUSES, JobExecution, JobStatus


def _connection() -> BaseDatabaseWrapper:
    return connections[router.db_for_write(JobExecution)]


def job_rows() -> QuerySet[JobExecution]:
    """Job rows read from the database they are written to.

    The receiver reads what a claim or an enqueue has just written; behind a database router
    that sends reads to a replica, the replica may not have it yet.
    """
    return JobExecution.objects.using(router.db_for_write(JobExecution))


def jobs_transaction() -> transaction.Atomic:
    """A transaction (a savepoint, inside one) on the database job rows are written to.

    Not the default database's: behind a router that puts the jobs elsewhere, a savepoint there
    would neither guard a failed INSERT of a job nor hold back its publish until the commit.
    """
    return transaction.atomic(using=router.db_for_write(JobExecution))


def _mark_saved(execution: JobExecution, pk: int, alias: str) -> None:
    # What Model.save() leaves on an inserted instance.
    execution.pk = pk
    execution._state.adding = False
    execution._state.db = alias


def claim(job_id: str, lease_seconds: int) -> JobExecution | None:
    """Move the job to ``running`` in one conditional UPDATE; return it, or None if not ours.

    Two deliveries of one message race on this UPDATE and only one matches a row, so a handler
    never runs twice at once. A ``running`` row whose lease ran out (its worker died) matches too.
    """
    now = timezone.now()
    lease_expires_at = now + timedelta(seconds=lease_seconds)
    connection = _connection()
    if _supports_returning(connection):
        return _claim_returning(connection, job_id, now, lease_expires_at)
    claimed = (
        JobExecution.objects.filter(job_id=job_id)
        .filter(
            Q(status__in=CLAIMABLE_STATUSES) | Q(status=JobStatus.RUNNING, lease_expires_at__lt=now)
        )
        .update(
            status=JobStatus.RUNNING,
            attempts=F("attempts") + 1,
            started_at=Coalesce("started_at", Value(now)),
            lease_expires_at=lease_expires_at,
            updated_at=now,
        )
    )
    return job_rows().get(job_id=job_id) if claimed else None


def _supports_returning(connection: BaseDatabaseWrapper) -> bool:
    """Whether the hand-written SQL runs here: RETURNING, and UPDATE ... FROM (SQLite 3.33+)."""
    return connection.vendor == "postgresql" or (
        connection.vendor == "sqlite" and sqlite3.sqlite_version_info >= (3, 35)
    )


#: What a delivery reads of its row; other fields load on access (handlers rarely need them).
_CLAIMED_FIELDS = frozenset(
    {
        "id",
        "job_id",
        "job_type",
        "status",
        "payload",
        "metadata",
        "attempts",
        "started_at",
        "max_retries",
        "message_id",
        "user_id",
        "organization_id",
    }
)


def _claim_returning(
    connection: BaseDatabaseWrapper, job_id: str, now: datetime, lease_expires_at: datetime
) -> JobExecution | None:
    # The same UPDATE as the ORM fallback, with RETURNING: the claim and the read of the row in
    # one round trip, on the path every delivery takes.
    sql, names, columns = _claim_statement(connection.alias, _may_commit_without_flush(connection))
    timestamp = _field("updated_at")[0]
    now_value = timestamp.get_db_prep_value(now, connection)
    params = [
        JobStatus.RUNNING.value,
        now_value,
        timestamp.get_db_prep_value(lease_expires_at, connection),
        now_value,
        job_id,
        *(status.value for status in CLAIMABLE_STATUSES),
        JobStatus.RUNNING.value,
        now_value,
    ]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        # fetchall() reads the statement to its end, which on SQLite releases the write lock.
        rows = cursor.fetchall()
    if not rows:
        return None
    values = [
        column.from_db(value, connection) for column, value in zip(columns, rows[0], strict=True)
    ]
    return JobExecution.from_db(connection.alias, names, values)


@dataclass(frozen=True)
class _ReturnedColumn:
    """A column read back by RETURNING, and how the ORM would convert its value."""

    field: Field[Any, Any]
    expression: Any
    converters: tuple[Any, ...]

    def from_db(self, value: Any, connection: BaseDatabaseWrapper) -> Any:
        """The value as the field holds it (JSON decoded...), as the ORM would convert it."""
        for converter in self.converters:
            value = converter(value, self.expression, connection)
        return value


@functools.cache
def _claim_statement(
    alias: str, without_flush: bool
) -> tuple[str, list[str], list[_ReturnedColumn]]:
    """The claim's SQL, the attnames it returns and their columns; built once per database."""
    connection = connections[alias]
    quote = connection.ops.quote_name
    # Model.from_db() expects the values in the model's field order.
    names = [
        field.attname
        for field in JobExecution._meta.concrete_fields
        if field.attname in _CLAIMED_FIELDS
    ]
    fields = [_field(name) for name in names]
    sql = (
        f"UPDATE {quote(JobExecution._meta.db_table)} SET status = %s, attempts = attempts + 1, "  # noqa: S608 - names are ours
        "started_at = COALESCE(started_at, %s), lease_expires_at = %s, updated_at = %s "
        f"{_FROM_WITHOUT_FLUSH if without_flush else ''}"
        "WHERE job_id = %s AND (status IN (%s, %s, %s) OR (status = %s AND lease_expires_at < %s)) "
        f"RETURNING {', '.join(quote(column) for _field_, column in fields)}"
    )
    columns = []
    for field, _column in fields:
        expression = field.get_col(JobExecution._meta.db_table)
        converters = connection.ops.get_db_converters(expression) + field.get_db_converters(
            connection
        )
        columns.append(_ReturnedColumn(field, expression, tuple(converters)))
    return sql, names, columns


#: A FROM item whose only effect is to let PostgreSQL commit the statement without waiting for
#: its write-ahead log to reach the disk. See :func:`_may_commit_without_flush` for when.
_COMMIT_WITHOUT_FLUSH = (
    "(SELECT set_config('synchronous_commit', 'off', true)) AS commit_without_flush"
)
#: The FROM clause of a single-table UPDATE that may commit without a flush.
_FROM_WITHOUT_FLUSH = f"FROM {_COMMIT_WITHOUT_FLUSH} "


def _may_commit_without_flush(connection: BaseDatabaseWrapper) -> bool:
    """Whether a recoverable write may skip the disk flush at its commit (saves one per call).

    Only two writes use it, each losable in a database crash without losing a job: the claim,
    whose loss QStash's redelivery repairs (it claims again, as it would take over a durable
    claim once its lease ran out), and the published mark, whose loss ``republish_jobs`` repairs
    (it publishes under the same deduplication id, and the claim lets one delivery run). The
    next synchronous commit, such as the outcome's before QStash hears back, flushes them too.
    Never inside the caller's transaction: the setting would last until, and cover, its commit.
    """
    return connection.vendor == "postgresql" and not connection.in_atomic_block


def _field(name: str) -> tuple[Field[Any, Any], str]:
    """A concrete field of JobExecution and its column name."""
    field = JobExecution._meta.get_field(name)
    assert isinstance(field, Field)
    assert field.column
    return field, field.column


def update_if_claimed(execution: JobExecution, **values: Any) -> bool:
    """Write an outcome, if this delivery still holds the claim; return whether it did.

    A claim is known by the attempt count and the start time. If our lease ran out and another
    delivery took the job over, the count moved on; if the job was failed meanwhile (QStash gave
    up) and retried by hand, the count started again but the start time is new. Either way the
    WHERE clause matches nothing. One hand-written UPDATE: it runs once per delivery, and the
    ORM's compilation of it costs more than the database's execution.
    """
    connection = _connection()
    quote = connection.ops.quote_name
    fields = [_field(name) for name in values]
    assignments = ", ".join(f"{quote(column)} = %s" for _field_, column in fields)
    params = [
        field.get_db_prep_save(value, connection)
        for (field, _column), value in zip(fields, values.values(), strict=True)
    ]
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {quote(JobExecution._meta.db_table)} SET {assignments} "  # noqa: S608 - names are ours
            f"WHERE {quote(_field('id')[1])} = %s AND status = %s AND attempts = %s "
            f"AND {quote(_field('started_at')[1])} = %s",
            [
                *params,
                execution.pk,
                JobStatus.RUNNING.value,
                execution.attempts,
                _field("started_at")[0].get_db_prep_value(execution.started_at, connection),
            ],
        )
        return bool(cursor.rowcount)


def holds_claim(execution: JobExecution) -> bool:
    """Whether this delivery still holds the job: the claim :func:`update_if_claimed` checks."""
    return (
        job_rows()
        .filter(
            pk=execution.pk,
            status=JobStatus.RUNNING,
            attempts=execution.attempts,
            started_at=execution.started_at,
        )
        .exists()
    )


def mark_one_published(job_id: str, message_id: str, now: datetime) -> None:
    # Every enqueue outside a transaction runs this, so it is one hand-written statement: the
    # ORM spends more time compiling the equivalent CASE expression than the database executing it.
    connection = _connection()
    table = connection.ops.quote_name(JobExecution._meta.db_table)
    updated_at = JobExecution._meta.get_field("updated_at").get_db_prep_value(now, connection)
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {table} SET message_id = %s, "  # noqa: S608 - the table name is ours
            "status = CASE WHEN status = %s THEN %s ELSE status END, "
            "publish_claimed_at = NULL, updated_at = %s "
            f"{_FROM_WITHOUT_FLUSH if _may_commit_without_flush(connection) else ''}"
            "WHERE job_id = %s",
            [message_id, JobStatus.PENDING.value, JobStatus.QUEUED.value, updated_at, job_id],
        )


def insert(execution: JobExecution) -> None:
    """INSERT one new row, as ``save(force_insert=True)`` would, and set its primary key.

    Like ``bulk_create``, it sends no ``pre_save``/``post_save`` signals: ``job_enqueued`` is
    the signal for a recorded job.
    """
    connection = _connection()
    if not _supports_returning(connection):
        _insert_with_the_orm(execution, connection.alias)
        return
    sql, fields = _insert_statement(connection.alias)
    values = [
        field.get_db_prep_save(field.pre_save(execution, True), connection) for field in fields
    ]
    with connection.cursor() as cursor:
        cursor.execute(sql, values)
        _mark_saved(execution, cursor.fetchone()[0], connection.alias)


def _insert_with_the_orm(execution: JobExecution, alias: str) -> None:
    # bulk_create, like the statement above, sends no model signals. Where it cannot return the
    # new key (MySQL, SQLite before 3.35) the key is read back by the job id, which is unique.
    JobExecution.objects.using(alias).bulk_create([execution])
    if execution.pk is None:
        rows = JobExecution.objects.using(alias).filter(job_id=execution.job_id)
        execution.pk = rows.values_list("pk", flat=True).get()


@functools.cache
def _insert_statement(alias: str) -> tuple[str, list[Field[Any, Any]]]:
    """The INSERT of every column but the key, and its fields in order; built once per database."""
    quote = connections[alias].ops.quote_name
    fields = [_field(field.name) for field in JobExecution._meta.concrete_fields]
    columns = [(field, column) for field, column in fields if not field.primary_key]
    sql = (
        f"INSERT INTO {quote(JobExecution._meta.db_table)} "  # noqa: S608 - names are ours
        f"({', '.join(quote(column) for _field_, column in columns)}) "
        f"VALUES ({', '.join(['%s'] * len(columns))}) RETURNING {quote(_field('id')[1])}"
    )
    return sql, [field for field, _column in columns]


#: Rows per INSERT when many are recorded at once: each chunk is one JSON document.
_INSERT_CHUNK = 2000


def insert_many(executions: Sequence[JobExecution], *, ignore_conflicts: bool = False) -> None:
    """INSERT new rows, as ``bulk_create`` would, and set the key of each row inserted.

    With ``ignore_conflicts`` a row whose idempotency key exists already is skipped, and keeps
    no primary key. On PostgreSQL the rows travel as one JSON document that the database
    unpacks: for a thousand rows, ``bulk_create`` spent longer preparing and quoting its 23,000
    values one by one than PostgreSQL spent inserting them (bench/enqueue.py). Elsewhere, and
    for a model whose columns the JSON route does not know, ``bulk_create`` it is.
    """
    connection = _connection()
    statement = _json_insert_statement(connection.alias)
    if statement is None:
        JobExecution.objects.using(connection.alias).bulk_create(
            executions, ignore_conflicts=ignore_conflicts
        )
        if any(execution.pk is None for execution in executions):
            _read_back_primary_keys(executions, connection.alias)
        return
    chunks = [
        executions[start : start + _INSERT_CHUNK]
        for start in range(0, len(executions), _INSERT_CHUNK)
    ]
    # Every chunk or none, as bulk_create: a caller told that enqueue_many failed must not find
    # the first chunks recorded (republish_jobs would publish them). One statement is by itself.
    with (
        transaction.atomic(using=connection.alias, savepoint=False)
        if len(chunks) > 1
        else nullcontext()
    ):
        for chunk in chunks:
            by_job_id = {execution.job_id: execution for execution in chunk}
            with connection.cursor() as cursor:
                cursor.execute(statement.sql(ignore_conflicts), [statement.document(chunk)])
                inserted = cursor.fetchall()
            for job_id, pk in inserted:
                _mark_saved(by_job_id[job_id], pk, connection.alias)


def _read_back_primary_keys(executions: Sequence[JobExecution], alias: str) -> None:
    # bulk_create returns no keys with ignore_conflicts, nor on databases without RETURNING:
    # read them by job id, so that job_enqueued's receivers get saved rows either way. A row
    # skipped for its idempotency key has a job id no row holds, and stays unsaved.
    rows = JobExecution.objects.using(alias)
    for start in range(0, len(executions), 500):
        chunk = {execution.job_id: execution for execution in executions[start : start + 500]}
        for job_id, pk in rows.filter(job_id__in=chunk).values_list("job_id", "pk"):
            _mark_saved(chunk[job_id], pk, alias)


@dataclass(frozen=True)
class _JsonInsert:
    """An INSERT ... SELECT of the rows of a JSON array, each row an array of column values."""

    table: str
    columns: str
    selected: str
    returning: str
    values: Callable[[JobExecution], tuple[Any, ...]]
    #: Fields that set their value as the row is saved (``auto_now``).
    set_on_save: tuple[Field[Any, Any], ...]
    #: Positions of the timestamps, which travel as ISO 8601 text.
    timestamps: tuple[int, ...]

    def sql(self, ignore_conflicts: bool) -> str:
        return (
            f"INSERT INTO {self.table} ({self.columns}) SELECT {self.selected} "  # noqa: S608 - names are ours
            "FROM jsonb_array_elements(%s::jsonb) AS new_row "
            f"{'ON CONFLICT DO NOTHING ' if ignore_conflicts else ''}RETURNING {self.returning}"
        )

    def document(self, executions: Sequence[JobExecution]) -> str:
        rows = []
        for execution in executions:
            for field in self.set_on_save:
                field.pre_save(execution, True)
            row = list(self.values(execution))
            for position in self.timestamps:
                if row[position] is not None:
                    row[position] = row[position].isoformat()
            rows.append(row)
        return json.dumps(rows, allow_nan=False)


#: How the JSON route reads each kind of column from its row (``{}``), by internal type. The
#: text ones are not cast: a cast to varchar(n) would cut a long value short where the column
#: assignment refuses it, as a plain INSERT does.
_JSON_COLUMN_READS = {
    "CharField": "new_row->>{}",
    "TextField": "new_row->>{}",
    "JSONField": "NULLIF(new_row->{}, 'null'::jsonb)",
    "DateTimeField": "(new_row->>{})::timestamptz",
    "BooleanField": "(new_row->>{})::boolean",
    "IntegerField": "(new_row->>{})::integer",
    "PositiveIntegerField": "(new_row->>{})::integer",
    "PositiveSmallIntegerField": "(new_row->>{})::smallint",
    "SmallIntegerField": "(new_row->>{})::smallint",
    "BigIntegerField": "(new_row->>{})::bigint",
    "PositiveBigIntegerField": "(new_row->>{})::bigint",
    "AutoField": "(new_row->>{})::integer",
    "SmallAutoField": "(new_row->>{})::smallint",
    "BigAutoField": "(new_row->>{})::bigint",
}


@functools.cache
def _json_insert_statement(alias: str) -> _JsonInsert | None:
    """The JSON route's INSERT for this database, or None where ``bulk_create`` must do."""
    connection = connections[alias]
    if connection.vendor != "postgresql":
        return None
    quote = connection.ops.quote_name
    columns = [
        _field(field.name) for field in JobExecution._meta.concrete_fields if not field.primary_key
    ]
    fields = [field for field, _column in columns]
    reads = []
    for position, field in enumerate(fields):
        stored = getattr(field, "target_field", field)  # a foreign key holds its target's type
        read = _JSON_COLUMN_READS.get(stored.get_internal_type())
        if read is None or getattr(field, "encoder", None) is not None:
            return None  # a column this route does not know how to carry: bulk_create does
        reads.append(read.format(position))
    return _JsonInsert(
        table=quote(JobExecution._meta.db_table),
        columns=", ".join(quote(column) for _field_, column in columns),
        selected=", ".join(reads),
        returning=f"{quote(_field('job_id')[1])}, {quote(_field('id')[1])}",
        values=operator.attrgetter(*(field.attname for field in fields)),
        set_on_save=tuple(
            field
            for field in fields
            if getattr(field, "auto_now", False) or getattr(field, "auto_now_add", False)
        ),
        timestamps=tuple(
            position
            for position, field in enumerate(fields)
            if field.get_internal_type() == "DateTimeField"
        ),
    )


#: Rows per statement when many are marked at once: well under every backend's parameter cap.
_MARK_CHUNK = 400


def _published_pairs(
    connection: BaseDatabaseWrapper, pairs: Sequence[tuple[str, str]]
) -> Iterator[tuple[str, list[str]]]:
    """A query of ``(job_id, message_id)`` rows and its parameters, for each statement.

    PostgreSQL takes every pair at once, as one JSON document: quoting a VALUES list's thousands
    of parameters one by one cost more than the UPDATE. Elsewhere, a few hundred at a time.
    """
    if connection.vendor == "postgresql":
        yield (
            "SELECT pair->>0, pair->>1 FROM jsonb_array_elements(%s::jsonb) AS pair",
            [json.dumps(pairs)],
        )
        return
    for start in range(0, len(pairs), _MARK_CHUNK):
        chunk = pairs[start : start + _MARK_CHUNK]
        yield f"VALUES {', '.join(['(%s, %s)'] * len(chunk))}", [v for pair in chunk for v in pair]


def mark_many_published(pairs: Sequence[tuple[str, str]], now: datetime) -> None:
    """``mark_one_published`` for many ``(job_id, message_id)`` pairs, a few hundred per UPDATE.

    The ORM's version is a CASE with a WHEN per row, whose compilation alone took longer than
    publishing the batch; a list of pairs joined by UPDATE ... FROM is one plain statement.
    """
    connection = _connection()
    if not _supports_returning(connection):
        # No UPDATE ... FROM here: one plain UPDATE per row, committed together.
        with transaction.atomic(using=connection.alias):
            for job_id, message_id in pairs:
                mark_one_published(job_id, message_id, now)
        return
    quote = connection.ops.quote_name
    table = quote(JobExecution._meta.db_table)
    updated_at = _field("updated_at")[0].get_db_prep_value(now, connection)
    sources = "published"
    if _may_commit_without_flush(connection):
        sources += f", {_COMMIT_WITHOUT_FLUSH}"
    with connection.cursor() as cursor:
        for published, params in _published_pairs(connection, pairs):
            cursor.execute(
                f"WITH published (job_id, message_id) AS ({published}) "  # noqa: S608 - names are ours
                f"UPDATE {table} SET message_id = published.message_id, "
                f"status = CASE WHEN {table}.status = %s THEN %s ELSE {table}.status END, "
                "publish_claimed_at = NULL, updated_at = %s "
                f"FROM {sources} WHERE {table}.job_id = published.job_id",
                [
                    *params,
                    JobStatus.PENDING.value,
                    JobStatus.QUEUED.value,
                    updated_at,
                ],
            )
