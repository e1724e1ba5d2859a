"""enqueue and enqueue_many: validation, recording, publishing, idempotency, transactions."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

from django_qstash_jobs import JOB_TYPES, get_job_execution_by_job_id, job_dispatcher
from django_qstash_jobs.exceptions import EnqueueError, JobValidationError, UnknownJobTypeError
from django_qstash_jobs.models import JobExecution, JobStatus
from django_qstash_jobs.signals import job_enqueued
from tests.concurrency import at_once
from tests.testapp.models import SideEffect

pytestmark = pytest.mark.django_db(transaction=True)


def test_enqueue_records_publishes_and_runs_the_job() -> None:
    job_id = job_dispatcher.enqueue(
        "echo", {"message": "hi", "times": 2}, {"user_id": 123, "organization_id": "org-9"}
    )

    execution = get_job_execution_by_job_id(job_id)
    assert execution is not None
    assert execution.status == JobStatus.COMPLETED
    assert execution.result == {"echo": "hihi", "attempt": 1}
    assert execution.payload == {"message": "hi", "times": 2}
    assert (execution.user_id, execution.organization_id) == ("123", "org-9")
    assert execution.metadata == {"user_id": 123, "organization_id": "org-9"}
    assert execution.message_id and execution.message_id.startswith("msg_")
    assert execution.attempts == 1
    assert execution.max_retries == 2  # the job type's default
    assert execution.progress == 100
    assert execution.started_at and execution.finished_at
    assert SideEffect.objects.filter(job_id=job_id).count() == 1


def test_unknown_job_id_is_none() -> None:
    assert get_job_execution_by_job_id("no-such-job") is None


def test_validation_error_names_the_field_and_records_nothing() -> None:
    with pytest.raises(JobValidationError) as caught:
        job_dispatcher.enqueue("echo", {"times": "many"})

    message = str(caught.value)
    assert "message: Field required" in message
    assert "times:" in message
    assert {error["field"] for error in caught.value.errors} == {"message", "times"}
    assert not JobExecution.objects.exists()


def test_builtin_payloads_accept_camel_case_and_store_snake_case() -> None:
    from django_qstash_jobs.registry import registry

    stored = registry.get(JOB_TYPES.SEND_EMAIL).serialize(
        {"template": "welcome", "to": "user@example.com", "data": {"recipientName": "John Doe"}}
    )
    assert stored["to"] == "user@example.com"
    with pytest.raises(JobValidationError, match="template"):
        registry.get(JOB_TYPES.SEND_EMAIL).serialize({"template": "nope", "to": "a@b.co"})
    with pytest.raises(JobValidationError, match="to: Value error, 'not-an-address'"):
        registry.get(JOB_TYPES.SEND_EMAIL).serialize(
            {"template": "welcome", "to": "not-an-address"}
        )


def test_unknown_job_type_raises_and_lists_the_known_ones() -> None:
    with pytest.raises(UnknownJobTypeError, match=r"Unknown job type 'nope'.*echo"):
        job_dispatcher.enqueue("nope", {})
    assert not JobExecution.objects.exists()


@pytest.mark.parametrize(
    ("metadata", "options", "named"),
    [
        ({"userId": 1}, None, "'userId'"),
        (None, {"delay_ms": 5}, "'delay_ms'"),
        (None, {"failureCallback": "https://x.test"}, "'failureCallback'"),
    ],
)
def test_unknown_metadata_or_option_key_is_a_type_error_naming_it(
    metadata: dict[str, object] | None, options: dict[str, object] | None, named: str
) -> None:
    with pytest.raises(TypeError, match=named):
        job_dispatcher.enqueue("echo", {"message": "x"}, metadata, options)
    assert not JobExecution.objects.exists()


@pytest.mark.parametrize(
    ("options", "error"),
    [
        ({"delay": -1}, "not negative"),
        ({"delay": float("inf")}, "finite"),
        ({"delay": float("nan")}, "finite"),
        ({"delay": 10**400}, "finite"),
        ({"delay": "soon"}, "milliseconds"),
        ({"retries": -1}, "retries"),
        ({"retries": True}, "retries"),
        ({"callback": "ftp://x.test/cb"}, "callback"),
        ({"failure_callback": "/relative"}, "failure_callback"),
        ({"headers": {"Bad Header": "v"}}, "invalid header name"),
        ({"headers": {"X-Trace\n": "v"}}, "invalid header name"),
        ({"headers": {"X-A": "line\nbreak"}}, "no line breaks"),
        ({"headers": {"X-Name": "José"}}, r"\['X-Name'\] may hold printable ASCII"),
        ({"callback": "https://x.test/hook?name=John Doe"}, "without spaces"),
        ({"callback": "https://x.test/naïve"}, "percent-encode"),
        ({"failure_callback": "https://x.test:port/failed"}, "invalid port"),
        ({"headers": {"Upstash-Retries": "9"}}, "configure QStash"),
        # Each of these was accepted, then changed or broke the delivery.
        ({"headers": {"X-A": "1", "x-a": "2"}}, "names one header twice"),
        ({"headers": {"Content-Length": "2"}}, "frames the delivery"),
        ({"headers": {"content-type": "text/plain"}}, "frames the delivery"),
        ({"headers": {"X_Tenant": "a"}}, "underscore"),
        ({"headers": {"X-A": None}}, "must be a str, a number or a UUID"),
        ({"headers": {"X-A": True}}, "must be a str, a number or a UUID"),
        ({"headers": {"X-A": " padded "}}, "leading or trailing spaces"),
    ],
)
def test_bad_option_values_say_what_to_fix(options: dict[str, object], error: str) -> None:
    with pytest.raises((TypeError, ValueError), match=error):
        job_dispatcher.enqueue("echo", {"message": "x"}, None, options)


@pytest.mark.parametrize(
    "key", ["line\nbreak", " padded ", "commande-n°42", "welcome:zoë@example.com"], ids=repr
)
def test_a_key_no_header_can_carry_is_kept_and_sent_as_its_hash(key: str) -> None:
    # QStash's deduplication id travels as a header: such a key failed at publish, its row left
    # pending. Its SHA-256 stands for it there; the row keeps it as given.
    first = job_dispatcher.enqueue("echo", {"message": "x"}, {"idempotency_key": key})
    again = job_dispatcher.enqueue("echo", {"message": "x"}, {"idempotency_key": key})
    assert again == first
    execution = JobExecution.objects.get()
    assert execution.idempotency_key == key
    assert execution.options["deduplication_id"].startswith("sha256:")
    assert execution.status == JobStatus.COMPLETED


@pytest.mark.parametrize("key", ["nul\x00byte", "lone\ud800"], ids=["NUL", "lone surrogate"])
def test_a_key_the_database_cannot_store_is_refused(key: str) -> None:
    with pytest.raises(ValueError, match="cannot store"):
        job_dispatcher.enqueue("echo", {"message": "x"}, {"idempotency_key": key})
    assert not JobExecution.objects.exists()


def test_a_uuid_user_id_is_stored_as_text_and_a_bool_is_refused() -> None:
    import uuid

    user = uuid.UUID("12345678-1234-5678-1234-567812345678")
    job_id = job_dispatcher.enqueue("echo", {"message": "x"}, {"user_id": user})
    execution = JobExecution.objects.get(job_id=job_id)
    assert execution.user_id == str(user)
    assert execution.metadata["user_id"] == str(user)
    with pytest.raises(TypeError, match="int, a str or a UUID"):
        job_dispatcher.enqueue("echo", {"message": "x"}, {"organization_id": True})


def test_a_callback_to_the_receiver_itself_is_refused() -> None:
    # Its per-attempt callbacks would look like QStash's notice that it gave up on the job.
    with pytest.raises(ValueError, match=r"options\['callback'\] cannot be RECEIVER_URL"):
        job_dispatcher.enqueue(
            "echo", {"message": "x"}, options={"callback": "http://testserver/jobs/receive/"}
        )
    assert not JobExecution.objects.exists()


def test_options_are_normalised_and_stored() -> None:
    job_id = job_dispatcher.enqueue(
        "echo",
        {"message": "x"},
        None,
        {
            "delay": 1500,
            "retries": 5,
            "callback": "https://example.com/callback",
            "failure_callback": "https://example.com/failed",
            "headers": {"X-Custom": "value", "X-Count": 3, "X-Ratio": 1.5},
        },
    )
    execution = JobExecution.objects.get(job_id=job_id)
    assert execution.max_retries == 5
    assert execution.options == {
        "delay_seconds": 2,  # rounded up: never earlier than asked
        "retries": 5,
        "callback": "https://example.com/callback",
        "failure_callback": "https://example.com/failed",
        "headers": {"X-Custom": "value", "X-Count": "3", "X-Ratio": "1.5"},
        "deduplication_id": job_id,
    }
    other = job_dispatcher.enqueue(
        "echo", {"message": "x"}, options={"delay": timedelta(minutes=1)}
    )
    assert JobExecution.objects.get(job_id=other).options["delay_seconds"] == 60


def test_idempotency_key_returns_the_first_job_and_publishes_nothing_more() -> None:
    first = job_dispatcher.enqueue("echo", {"message": "a"}, {"idempotency_key": "op-1"})
    second = job_dispatcher.enqueue("echo", {"message": "b"}, {"idempotency_key": "op-1"})

    assert second == first
    assert JobExecution.objects.count() == 1
    assert SideEffect.objects.count() == 1
    assert JobExecution.objects.get().options["deduplication_id"] == "op-1"


def test_idempotency_under_eight_concurrent_enqueues() -> None:
    results = at_once(
        lambda: job_dispatcher.enqueue("echo", {"message": "x"}, {"idempotency_key": "same"}), 8
    )

    assert len(results) == 8 and len(set(results)) == 1
    assert JobExecution.objects.count() == 1
    # The immediate transport runs a job once per publish: one run means one publish.
    assert SideEffect.objects.count() == 1


def test_inside_a_transaction_the_publish_waits_for_the_commit() -> None:
    with transaction.atomic():
        job_id = job_dispatcher.enqueue("echo", {"message": "x"})
        assert JobExecution.objects.get(job_id=job_id).status == JobStatus.PENDING
        assert not SideEffect.objects.exists()
    assert JobExecution.objects.get(job_id=job_id).status == JobStatus.COMPLETED


def test_a_rolled_back_transaction_publishes_nothing() -> None:
    class Abort(Exception):
        pass

    with pytest.raises(Abort), transaction.atomic():
        job_dispatcher.enqueue("echo", {"message": "x"})
        raise Abort

    assert not JobExecution.objects.exists()
    assert not SideEffect.objects.exists()


def test_a_rolled_back_savepoint_drops_only_its_jobs() -> None:
    with transaction.atomic():
        kept = job_dispatcher.enqueue("echo", {"message": "kept"})
        try:
            with transaction.atomic():
                job_dispatcher.enqueue("echo", {"message": "dropped"})
                raise RuntimeError
        except RuntimeError:
            pass
    assert list(SideEffect.objects.values_list("job_id", flat=True)) == [kept]


def test_enqueue_many_inserts_once_and_publishes_in_one_batch(settings: object) -> None:
    published_batches: list[int] = []
    from django_qstash_jobs.transports import get_transport

    transport = get_transport()
    original = transport.publish

    def counting_publish(messages):  # type: ignore[no-untyped-def]
        published_batches.append(len(messages))
        return original(messages)

    transport.publish = counting_publish  # type: ignore[method-assign]
    try:
        jobs = [{"job_type": "echo", "payload": {"message": str(i)}} for i in range(50)]
        with CaptureQueriesContext(connection) as queries, transaction.atomic():
            ids = job_dispatcher.enqueue_many(jobs)
            inserts = [q for q in queries.captured_queries if q["sql"].startswith("INSERT")]
            # One INSERT, unless the backend caps parameters per query (SQLite on Django 5.2:
            # 999), and then no more statements than that cap requires.
            fields = [f for f in JobExecution._meta.concrete_fields if not f.primary_key]
            per_statement = connection.ops.bulk_batch_size(fields, jobs)
            assert len(inserts) == -(-len(jobs) // per_statement)
    finally:
        transport.publish = original  # type: ignore[method-assign]

    assert published_batches == [50]
    assert len(ids) == len(set(ids)) == 50
    by_id = dict(JobExecution.objects.values_list("job_id", "payload"))
    assert [by_id[job_id]["message"] for job_id in ids] == [str(i) for i in range(50)]
    assert set(JobExecution.objects.values_list("status", flat=True)) == {JobStatus.COMPLETED}


def test_enqueue_many_validates_everything_before_recording_anything() -> None:
    with pytest.raises(JobValidationError, match="message"):
        job_dispatcher.enqueue_many(
            [
                {"job_type": "echo", "payload": {"message": "fine"}},
                {"job_type": "echo", "payload": {}},
            ]
        )
    with pytest.raises(TypeError, match="'payloads'"):
        job_dispatcher.enqueue_many([{"job_type": "echo", "payloads": {}}])
    with pytest.raises(TypeError, match="no 'job_type'"):
        job_dispatcher.enqueue_many([{"payload": {}}])
    assert not JobExecution.objects.exists()
    assert job_dispatcher.enqueue_many([]) == []


def test_enqueue_many_honours_idempotency_keys_within_and_across_calls() -> None:
    earlier = job_dispatcher.enqueue("echo", {"message": "x"}, {"idempotency_key": "k-old"})
    ids = job_dispatcher.enqueue_many(
        [
            {
                "job_type": "echo",
                "payload": {"message": "1"},
                "metadata": {"idempotency_key": "k-new"},
            },
            {
                "job_type": "echo",
                "payload": {"message": "2"},
                "metadata": {"idempotency_key": "k-new"},
            },
            {
                "job_type": "echo",
                "payload": {"message": "3"},
                "metadata": {"idempotency_key": "k-old"},
            },
            {"job_type": "echo", "payload": {"message": "4"}},
        ]
    )
    assert ids[0] == ids[1]
    assert ids[2] == earlier
    assert len(set(ids)) == 3
    assert JobExecution.objects.count() == 3
    assert SideEffect.objects.count() == 3  # each job published and run once


def test_job_enqueued_signal_is_sent_with_the_row() -> None:
    received: list[str] = []

    def on_enqueued(sender: object, execution: JobExecution, **kwargs: object) -> None:
        received.append(execution.job_id)

    job_enqueued.connect(on_enqueued)
    try:
        job_id = job_dispatcher.enqueue("echo", {"message": "x"})
    finally:
        job_enqueued.disconnect(on_enqueued)
    assert received == [job_id]


@pytest.mark.parametrize("keyed", [False, True], ids=["no key", "idempotency keys"])
def test_enqueue_many_sends_job_enqueued_with_saved_rows(keyed: bool) -> None:
    # With keys, bulk_create ignores conflicts, which leaves the new rows without their keys.
    received: list[tuple[int | None, bool]] = []

    def on_enqueued(sender: object, execution: JobExecution, **kwargs: object) -> None:
        received.append((execution.pk, execution._state.adding))

    job_enqueued.connect(on_enqueued)
    try:
        job_dispatcher.enqueue_many(
            [
                {"job_type": "echo", "payload": {"message": str(index)},
                 "metadata": {"idempotency_key": f"key-{index}"} if keyed else None}
                for index in range(3)
            ]
        )  # fmt: skip
    finally:
        job_enqueued.disconnect(on_enqueued)
    assert sorted(received) == [
        (pk, False) for pk in JobExecution.objects.values_list("pk", flat=True).order_by("pk")
    ]


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (float("nan"), "NaN"),
        (float("inf"), "Infinity"),
        ("a\x00b", "NUL"),
        ({"key\x00": 1}, "NUL"),
        ({1, 2}, "set is not JSON serializable"),
        ("\ud800", "not valid Unicode"),
    ],
    ids=["NaN", "Infinity", "a NUL", "a NUL in a key", "a set", "a lone surrogate"],
)
@pytest.mark.parametrize("how", ["enqueue", "enqueue_many", "schedule"])
def test_a_payload_no_json_column_can_store_is_refused_saying_why(
    value: object, reason: str, how: str
) -> None:
    # "permanent" takes any dict: no schema stands between the payload and the column. Without
    # this check SQLite and PostgreSQL each refused it differently, as a database error.
    payload = {"value": value}
    with pytest.raises(JobValidationError, match="cannot be stored") as raised:
        if how == "enqueue":
            job_dispatcher.enqueue("permanent", payload)
        elif how == "enqueue_many":
            job_dispatcher.enqueue_many([{"job_type": "permanent", "payload": payload}])
        else:
            job_dispatcher.schedule("permanent", "0 3 * * *", payload, name="nightly")
    assert reason in str(raised.value)
    assert not JobExecution.objects.exists()


def test_a_payload_is_stored_as_json_holds_it() -> None:
    # Dates and decimals become text, as a schema's model_dump(mode="json") makes them; and a
    # backslash followed by "u0000" is text, not a NUL.
    from datetime import date
    from decimal import Decimal

    job_id = job_dispatcher.enqueue(
        "inspect", {"on": date(2026, 11, 29), "amount": Decimal("1.50"), "text": "\\u0000"}
    )
    stored = JobExecution.objects.get(job_id=job_id).payload
    assert stored == {"on": "2026-11-29", "amount": "1.50", "text": "\\u0000"}


@pytest.mark.parametrize("how", ["database", "python"])
def test_a_failing_handler_inside_the_callers_transaction_leaves_it_usable(
    settings: Any, how: str
) -> None:
    # ENQUEUE_ON_COMMIT off: the immediate transport runs the job inside the caller's
    # transaction. On PostgreSQL a statement the database refused aborted that transaction,
    # and recording the failure raised "current transaction is aborted" out of enqueue.
    settings.QSTASH_JOBS = {**settings.QSTASH_JOBS, "ENQUEUE_ON_COMMIT": False}
    with transaction.atomic():
        job_id = job_dispatcher.enqueue("failing", {"how": how})
        execution = JobExecution.objects.get(job_id=job_id)  # the transaction still answers
        assert (execution.status, execution.attempts) == (JobStatus.FAILED, 2)
    runs = list(SideEffect.objects.filter(job_id=job_id).values_list("label", flat=True))
    # An attempt's own writes are kept (an email batch's records), unless its error aborted
    # the transaction: then they go with the savepoint that lets the failure be recorded.
    aborted = how == "database" and connection.vendor == "postgresql"
    assert sorted(runs) == ([] if aborted else ["attempt-1", "attempt-2"])


def test_enqueue_error_is_the_base_of_validation_errors() -> None:
    # Callers following the usage guide catch one exception for every enqueue failure.
    with pytest.raises(EnqueueError):
        job_dispatcher.enqueue("echo", {})
    with pytest.raises(EnqueueError):
        job_dispatcher.enqueue("missing", {})


@pytest.fixture
def without_returning(monkeypatch: pytest.MonkeyPatch) -> None:
    """The database as MySQL or SQLite before 3.35 are: no RETURNING, no UPDATE ... FROM."""
    from django_qstash_jobs import statements

    monkeypatch.setattr(statements, "_supports_returning", lambda connection: False)
    # A property on some backends, a cached value on others: set it on the class, unshadowed.
    name = "can_return_rows_from_bulk_insert"
    monkeypatch.delitem(vars(connection.features), name, raising=False)
    monkeypatch.setattr(type(connection.features), name, False)


@pytest.mark.usefixtures("without_returning")
def test_without_returning_enqueue_still_knows_the_rows_key() -> None:
    enqueued: list[JobExecution] = []

    def on_enqueued(sender: object, execution: JobExecution, **kwargs: object) -> None:
        enqueued.append(execution)

    job_enqueued.connect(on_enqueued)
    try:
        job_id = job_dispatcher.enqueue("echo", {"message": "x"})
    finally:
        job_enqueued.disconnect(on_enqueued)

    execution = JobExecution.objects.get()
    assert [(row.pk, row.job_id) for row in enqueued] == [(execution.pk, job_id)]
    assert execution.status == JobStatus.COMPLETED
    assert execution.message_id and execution.message_id.startswith("msg_")


@pytest.mark.usefixtures("without_returning")
def test_without_update_from_a_batch_is_still_marked_published() -> None:
    from django.utils import timezone

    from django_qstash_jobs import statements

    rows = [JobExecution(job_type="echo") for _ in range(3)]
    for row in rows:
        statements.insert(row)
    JobExecution.objects.filter(pk=rows[2].pk).update(status=JobStatus.RUNNING)

    statements.mark_many_published(
        [(row.job_id, f"msg_{index}") for index, row in enumerate(rows)], timezone.now()
    )

    marked = JobExecution.objects.order_by("pk").values_list("pk", "status", "message_id")
    assert list(marked) == [
        (rows[0].pk, JobStatus.QUEUED, "msg_0"),
        (rows[1].pk, JobStatus.QUEUED, "msg_1"),
        (rows[2].pk, JobStatus.RUNNING, "msg_2"),  # the receiver's state wins
    ]
