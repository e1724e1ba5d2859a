"""The small parsers: durations, Retry-After, retry-delay expressions, cron, destinations."""

from __future__ import annotations

import math
import threading
from datetime import datetime, timezone
from email.utils import format_datetime

import pytest

from django_qstash_jobs.devserver.cron import parse_cron
from django_qstash_jobs.devserver.destinations import parse_destination, split_query
from django_qstash_jobs.devserver.dispatcher import Dispatcher, Job, now_ms
from django_qstash_jobs.devserver.durations import (
    RetryDelayExpression,
    default_backoff,
    parse_duration,
    parse_retry_after,
)
from django_qstash_jobs.devserver.errors import ApiError
from django_qstash_jobs.devserver.options import FlowControl


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("50s", 50),
        ("10m", 600),
        ("1d10h30m", 124200),
        ("1h30m3s", 5403),
        ("7", 7),
        ("500ms", 0.5),
        ("2D", 172800),
    ],
)
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "s", "10x", "-1s", "1.5.2s", "1s 2m", "1e9s", "999999999d"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(text)


def test_retry_after_forms() -> None:
    assert parse_retry_after("0") == 0
    assert parse_retry_after("120") == 120
    assert parse_retry_after("6m5s") == 365
    assert parse_retry_after("1500ms") == 1.5
    assert parse_retry_after("200000") is None  # beyond the one-day cap: default backoff
    assert parse_retry_after("soon") is None
    when = datetime(2030, 1, 1, 0, 1, tzinfo=timezone.utc)
    now = datetime(2030, 1, 1, tzinfo=timezone.utc).timestamp()
    assert parse_retry_after(format_datetime(when, usegmt=True), now=now) == 60


def test_default_backoff_matches_upstash_table() -> None:
    assert round(default_backoff(1)) == 12
    assert round(default_backoff(2)) == 148  # 2 m 28 s
    assert round(default_backoff(3)) == 1808  # 30 m 8 s
    assert default_backoff(5) == 86400
    assert default_backoff(1000) == 86400


@pytest.mark.parametrize(
    ("expression", "retried", "ms"),
    [
        ("1000", 0, 1000),
        ("1000 * retried", 2, 2000),
        ("1000 * (1 + retried)", 0, 1000),
        ("pow(2, retried)", 3, 8),
        ("max(10, pow(2, retried))", 1, 10),
        ("min(5000, exp(retried))", 1, math.e),
        ("floor(2.7) + ceil(0.2) + round(1.4) + abs(-1) + sqrt(16)", 0, 9),
        ("-5", 0, 0),
        ("pow(10, 400)", 0, None),
        ("1e308 * 10", 0, 86400000),
    ],
)
def test_retry_delay_expressions(expression: str, retried: int, ms: float | None) -> None:
    parsed = RetryDelayExpression(expression)
    if ms is None:
        with pytest.raises(ValueError, match="cannot evaluate"):
            parsed.evaluate(retried)
    else:
        assert parsed.evaluate(retried) == pytest.approx(ms)


@pytest.mark.parametrize(
    "expression",
    [
        "__import__('os')",
        "retried.__class__",
        "open('/etc/passwd')",
        "[1, 2]",
        "lambda: 1",
        "retried if retried else 1",
        "pow(2, retried, 5)",
        "x",
        "1 << 10",
        "'text'",
        "True",
        "(" * 300 + "1" + ")" * 300,
        "1 +" * 400 + "1",
    ],
)
def test_retry_delay_rejects_anything_but_arithmetic(expression: str) -> None:
    with pytest.raises(ValueError, match="retry delay expression"):
        RetryDelayExpression(expression).evaluate(1)


def test_cron_with_timezone_and_sunday_as_seven() -> None:
    cron = parse_cron("CRON_TZ=America/New_York 0 4 * * *")
    start = int(datetime(2026, 1, 1, 12, tzinfo=timezone.utc).timestamp() * 1000)
    nxt = datetime.fromtimestamp(cron.next_after_ms(start) / 1000, tz=timezone.utc)
    assert nxt == datetime(2026, 1, 2, 9, tzinfo=timezone.utc)  # 04:00 EST
    sunday = parse_cron("0 2 * * 7")
    nxt = datetime.fromtimestamp(sunday.next_after_ms(start) / 1000, tz=timezone.utc)
    assert nxt.weekday() == 6 and nxt.hour == 2


@pytest.mark.parametrize(
    "expression",
    [
        "* * * *",
        "* * * * * *",
        "60 * * * *",
        "* 24 * * *",
        "* * 32 * *",
        "* * * 13 *",
        "* * * * 8",
        "CRON_TZ=Nowhere/City * * * * *",
        "CRON_TZ=America * * * * *",  # a directory of the zone database
        "@hourly x",
        "\u0661 * * * *",  # Arabic-Indic 1
        "0 0 * * 7/2",  # croniter: every other day; cron: Sunday only
        "0 0 * * 1,07/3",
    ],
)
def test_bad_cron(expression: str) -> None:
    with pytest.raises(ValueError, match="cron"):
        parse_cron(expression)


def _next(expression: str, after: datetime) -> datetime:
    after_ms = int(after.timestamp() * 1000)
    return datetime.fromtimestamp(
        parse_cron(expression).next_after_ms(after_ms) / 1000, tz=timezone.utc
    )


def test_cron_reads_an_equal_range_as_its_one_number() -> None:
    # croniter alone reads '5-5' and '5-5/10' as the whole field: every minute.
    new_year = datetime(2026, 1, 1, tzinfo=timezone.utc)  # a Thursday
    assert _next("5-5 * * * *", new_year) == datetime(2026, 1, 1, 0, 5, tzinfo=timezone.utc)
    assert _next("5-5/10 * * * *", new_year) == datetime(2026, 1, 1, 0, 5, tzinfo=timezone.utc)
    assert _next("0,5-5 1 * * *", new_year) == datetime(2026, 1, 1, 1, 0, tzinfo=timezone.utc)
    assert _next("0 9 * * 1-1", new_year) == datetime(2026, 1, 5, 9, tzinfo=timezone.utc)  # Monday
    assert _next("0 9 * * 7-7/2", new_year) == datetime(
        2026, 1, 4, 9, tzinfo=timezone.utc
    )  # Sunday
    assert _next("0 0 1 6-6 *", new_year) == datetime(2026, 6, 1, tzinfo=timezone.utc)


def test_cron_fires_twice_in_the_hour_a_dst_fall_back_repeats() -> None:
    # As croniter does for the app's next_runs (decisions.rst).
    cron = "CRON_TZ=Europe/Paris 30 2 * * *"
    first = _next(cron, datetime(2026, 10, 24, 12, tzinfo=timezone.utc))
    second = _next(cron, first)
    assert (first, second) == (
        datetime(2026, 10, 25, 0, 30, tzinfo=timezone.utc),
        datetime(2026, 10, 25, 1, 30, tzinfo=timezone.utc),
    )


def test_cron_error_names_the_field() -> None:
    with pytest.raises(ValueError, match="hour"):
        parse_cron("0 25 * * *")


def test_destination_parsing() -> None:
    assert parse_destination("http://x.test/a", "b=1").url == "http://x.test/a?b=1"
    assert parse_destination("https:/x.test/a", "").url == "https://x.test/a"
    assert parse_destination("my-group_1.v2", "").group == "my-group_1.v2"
    for bad in ("x.test/a", "localhost:80/a", "ftp://x.test/a", "http://", "http:// space"):
        with pytest.raises(ApiError) as info:
            parse_destination(bad, "")
        assert info.value.status == 400


def test_split_query_keeps_the_destinations_own_parameters_raw() -> None:
    own, config, token = split_query("a=1&qstash_token=t%3D&Upstash-Retries=2&b=x%20y&&c")
    assert own == "a=1&b=x%20y&c"
    assert config == [("Upstash-Retries", "2")]
    assert token == "t="


def test_dispatcher_queue_fifo_and_flow_control_gate() -> None:
    dispatcher = Dispatcher()
    dispatcher.configure_queue("q", parallelism=1, paused=False)
    past = now_ms() - 1
    for seq in (1, 2):
        dispatcher.add(Job(id=f"q{seq}", seq=seq, due_ms=past, queue="q"))
    flow = FlowControl(key="fk", parallelism=1)
    for seq in (3, 4):
        dispatcher.add(Job(id=f"f{seq}", seq=seq, due_ms=past, flow="fk"), flow)
    first = [dispatcher.take(), dispatcher.take()]
    assert {job.id for job in first if job} == {"q1", "f3"}
    assert dispatcher.in_flight() == 2
    for job in first:
        assert job is not None
        dispatcher.finish(job, None)
    second = [dispatcher.take(), dispatcher.take()]
    assert {job.id for job in second if job} == {"q2", "f4"}
    info = dispatcher.flow_info("fk")[0]
    assert info["parallelismMax"] == 1 and info["parallelismCount"] == 1
    dispatcher.stop()
    assert dispatcher.take() is None


def test_dispatcher_waits_for_a_message_due_past_the_longest_timeout() -> None:
    dispatcher = Dispatcher()
    far_ms = now_ms() + int((threading.TIMEOUT_MAX + 86400) * 1000)
    dispatcher.add(Job(id="far", seq=1, due_ms=far_ms))
    outcome: list[object] = []

    def work() -> None:
        try:
            outcome.append(dispatcher.take())
        except Exception as exc:  # the worker thread would die of it
            outcome.append(exc)

    worker = threading.Thread(target=work, daemon=True)
    worker.start()
    worker.join(0.2)
    assert worker.is_alive(), outcome
    dispatcher.stop()
    worker.join(5)
    assert outcome == [None]
