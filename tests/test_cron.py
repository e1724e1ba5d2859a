"""Cron expressions: validation with errors that name the field, next runs, descriptions."""

from __future__ import annotations

from datetime import datetime, timezone
from zoneinfo import ZoneInfo

import pytest

from django_qstash_jobs.cron import (
    CronExpression,
    _check_fires,
    _parse_cron,
    describe_cron,
    next_runs,
    validate_cron,
)
from django_qstash_jobs.exceptions import ScheduleError
from django_qstash_jobs.models import JobSchedule

NEW_YEAR = datetime(2026, 1, 1, tzinfo=timezone.utc)  # a Thursday


@pytest.mark.parametrize(
    "cron",
    [
        "* * * * *",
        "*/5 * * * *",
        "0 2 * * *",
        "0 9-17 * * 1-5",
        "0,30 8,20 1,15 1-6/2 0",
        "5/15 * * * *",
        "0 0 * * 7",
        "0 0 29 2 *",
        "CRON_TZ=America/New_York 0 4 * * *",
    ],
)
def test_valid_expressions_pass(cron: str) -> None:
    assert validate_cron(cron) == cron


def test_whitespace_is_normalised() -> None:
    assert validate_cron("  0   2 *  * *\t") == "0 2 * * *"
    assert validate_cron("CRON_TZ=Europe/Paris   0 2 * * *") == "CRON_TZ=Europe/Paris 0 2 * * *"


@pytest.mark.parametrize(
    ("cron", "message"),
    [
        ("0 2 * *", "has 4 fields; it needs 5"),
        ("0 0 2 * * *", "has 6 fields; it needs 5"),
        ("", "has 0 fields"),
        ("@daily", "macros such as '@daily' are not supported"),
    ],
)
def test_the_wrong_number_of_fields_is_refused(cron: str, message: str) -> None:
    with pytest.raises(ScheduleError, match=message):
        validate_cron(cron)


@pytest.mark.parametrize(
    ("cron", "field", "allowed"),
    [
        ("60 * * * *", "minute", "0-59"),
        ("* 24 * * *", "hour", "0-23"),
        ("* * 0 * *", "day of month", "1-31"),
        ("* * 32 * *", "day of month", "1-31"),
        ("* * * 0 *", "month", "1-12"),
        ("* * * 13 *", "month", "1-12"),
        ("* * * * 8", "day of week", "0-7 (0 and 7 are Sunday)"),
        ("0-60 * * * *", "minute", "0-59"),
        ("* 1,2,25 * * *", "hour", "0-23"),
    ],
)
def test_a_number_out_of_range_names_the_field_and_its_range(
    cron: str, field: str, allowed: str
) -> None:
    with pytest.raises(ScheduleError) as caught:
        validate_cron(cron)
    message = str(caught.value)
    assert f"The {field} field" in message
    assert "out of range" in message
    assert allowed in message


@pytest.mark.parametrize(
    ("cron", "field", "largest"),
    [
        ("*/0 * * * *", "minute", 60),
        ("*/61 * * * *", "minute", 60),
        ("0 */25 * * *", "hour", 24),
        ("0 0 1-31/0 * *", "day of month", 31),
        ("0 0 * */13 *", "month", 12),
        ("0 0 * * */8", "day of week", 7),
    ],
)
def test_a_bad_step_names_the_field_and_the_allowed_steps(
    cron: str, field: str, largest: int
) -> None:
    with pytest.raises(ScheduleError, match=f"The {field} field .* has a bad step") as caught:
        validate_cron(cron)
    assert f"from 1 to {largest}" in str(caught.value)


@pytest.mark.parametrize(
    ("cron", "field"),
    [
        ("x * * * *", "minute"),
        ("*/ * * * *", "minute"),
        ("1,,2 * * * *", "minute"),
        ("0 -1 * * *", "hour"),
        # croniter takes these; QStash's standard five fields do not, so they are refused here.
        ("0 0 L * *", "day of month"),
        ("0 0 ? * *", "day of month"),
        ("0 0 * JAN *", "month"),
        ("0 0 * * MON", "day of week"),
        ("0 0 * * 1#2", "day of week"),
    ],
)
def test_malformed_fields_are_named(cron: str, field: str) -> None:
    with pytest.raises(ScheduleError, match=f"Invalid {field} field"):
        validate_cron(cron)


def test_a_reversed_range_is_refused() -> None:
    with pytest.raises(ScheduleError, match=r"The hour field '17-9' has a reversed range"):
        validate_cron("0 17-9 * * *")


@pytest.mark.parametrize(
    ("cron", "normalised"),
    [
        ("5-5 * * * *", "5 * * * *"),
        ("5-5/10 * * * *", "5 * * * *"),
        ("0,05-05 * * * *", "0,5 * * * *"),
        ("0 3-3 * * *", "0 3 * * *"),
        ("0 0 9-9/2 * *", "0 0 9 * *"),
        ("0 0 1 6-6 *", "0 0 1 6 *"),
        ("0 9 * * 1-1", "0 9 * * 1"),
        ("0 9 * * 7-7/3", "0 9 * * 7"),
        ("CRON_TZ=Europe/Paris 5-5 * * * *", "CRON_TZ=Europe/Paris 5 * * * *"),
    ],
)
def test_an_equal_range_is_written_as_its_one_number(cron: str, normalised: str) -> None:
    # croniter reads 'a-a' and 'a-a/n' as the whole field; QStash and cron as 'a'.
    assert validate_cron(cron) == normalised


def test_an_equal_range_fires_at_its_number_only() -> None:
    assert next_runs("5-5 * * * *", 2, after=NEW_YEAR) == [
        datetime(2026, 1, 1, hour, 5, tzinfo=timezone.utc) for hour in (0, 1)
    ]
    mondays = next_runs("0 9 * * 1-1", 2, after=NEW_YEAR)
    assert [run.strftime("%a %d %H:%M") for run in mondays] == ["Mon 05 09:00", "Mon 12 09:00"]
    assert describe_cron("0 9 * * 1-1") == "At 09:00 on Monday"


@pytest.mark.parametrize("cron", ["0 0 * * 7/2", "0 0 * * 1,7/3", "0 0 * * 07/1"])
def test_a_day_of_week_step_from_seven_is_refused(cron: str) -> None:
    # croniter reads '7/2' as '*/2' (every other day of the week), cron as Sunday only.
    with pytest.raises(ScheduleError, match=r"The day of week field .* has a step from 7"):
        validate_cron(cron)


def test_a_day_of_week_step_from_zero_steps_from_sunday() -> None:
    runs = next_runs("0 0 * * 0/2", 4, after=NEW_YEAR)
    assert [run.strftime("%a") for run in runs] == ["Sat", "Sun", "Tue", "Thu"]


@pytest.mark.parametrize(
    ("cron", "field"),
    [
        ("\u0661 * * * *", "minute"),  # Arabic-Indic 1
        ("0 \uff12 * * *", "hour"),  # fullwidth 2
        ("0 0 1-\u0663 * *", "day of month"),
        ("0 0 * * */\u0968", "day of week"),  # Devanagari 2
    ],
)
def test_digits_of_other_scripts_are_refused(cron: str, field: str) -> None:
    with pytest.raises(ScheduleError, match=f"Invalid {field} field"):
        validate_cron(cron)


def test_an_expression_croniter_refuses_is_a_schedule_error() -> None:
    # The grammar lets nothing through that croniter refuses; should it, callers (the admin, a
    # sync) still get a ScheduleError, not croniter's own error.
    fields = ("\u0661", "*", "*", "*", "*")
    expression = CronExpression(text=" ".join(fields), fields=fields, zone_name=None, items=())
    with pytest.raises(ScheduleError, match="is not valid"):
        _check_fires(expression)


def test_an_expression_that_never_fires_is_refused() -> None:
    with pytest.raises(ScheduleError, match="never fires"):
        validate_cron("0 0 30 2 *")


@pytest.mark.parametrize(
    ("cron", "message"),
    [
        ("CRON_TZ=Mars/Olympus_Mons 0 4 * * *", "Unknown time zone 'Mars/Olympus_Mons'"),
        ("CRON_TZ=../../etc/passwd 0 4 * * *", "Unknown time zone"),
        ("CRON_TZ=America 0 4 * * *", "Unknown time zone 'America'"),
        ("CRON_TZ= 0 4 * * *", "names no time zone"),
        ("CRON_TZ=Europe/Paris", "has 0 fields"),
    ],
)
def test_a_bad_cron_tz_is_refused(cron: str, message: str) -> None:
    with pytest.raises(ScheduleError, match=message):
        validate_cron(cron)


def test_seven_and_zero_are_both_sunday() -> None:
    sundays = [run.strftime("%a %d") for run in next_runs("0 0 * * 7", 2, after=NEW_YEAR)]
    assert sundays == ["Sun 04", "Sun 11"]
    assert next_runs("0 0 * * 7", 3, after=NEW_YEAR) == next_runs("0 0 * * 0", 3, after=NEW_YEAR)


def test_next_runs_are_in_utc_by_default() -> None:
    runs = next_runs("0 2 * * *", 3, after=NEW_YEAR)
    assert runs == [datetime(2026, 1, day, 2, tzinfo=timezone.utc) for day in (1, 2, 3)]


def test_a_time_in_the_hour_repeated_by_a_dst_fall_back_fires_twice() -> None:
    # Documented in decisions.rst: croniter, and so the local QStash server, fire 02:30 Paris
    # time both as summer time and as winter time on the night the clocks go back.
    runs = next_runs(
        "CRON_TZ=Europe/Paris 30 2 * * *", 3, after=datetime(2026, 10, 24, 12, tzinfo=timezone.utc)
    )
    assert [run.astimezone(timezone.utc) for run in runs] == [
        datetime(2026, 10, 25, 0, 30, tzinfo=timezone.utc),
        datetime(2026, 10, 25, 1, 30, tzinfo=timezone.utc),
        datetime(2026, 10, 26, 1, 30, tzinfo=timezone.utc),
    ]


def test_next_runs_follow_cron_tz() -> None:
    [run] = next_runs("CRON_TZ=America/New_York 0 4 * * *", 1, after=NEW_YEAR)
    assert run.tzinfo == ZoneInfo("America/New_York")
    assert run.astimezone(timezone.utc) == datetime(2026, 1, 1, 9, tzinfo=timezone.utc)


def test_a_schedule_row_lists_its_next_runs() -> None:
    schedule = JobSchedule(name="n", schedule_id="n", job_type="echo", cron="*/15 * * * *")
    runs = schedule.next_runs(3, after=NEW_YEAR)
    assert [run.minute for run in runs] == [15, 30, 45]


@pytest.mark.parametrize(
    ("cron", "description"),
    [
        ("* * * * *", "Every minute"),
        ("*/5 * * * *", "Every 5 minutes"),
        ("0 * * * *", "Every hour, on the hour"),
        ("15 * * * *", "Every hour, at 15 minutes past"),
        ("0 */2 * * *", "Every 2 hours, on the hour"),
        ("0 2 * * *", "At 02:00 every day"),
        ("30 9 * * 1-5", "At 09:30 on weekdays"),
        ("0 10 * * 6,0", "At 10:00 on weekends"),
        ("0 9,17 * * *", "At 09:00 and 17:00 every day"),
        ("0 8 * * 1,3,5", "At 08:00 on Monday, Wednesday and Friday"),
        ("0 0 * * 7", "At 00:00 on Sunday"),
        ("0 0 1 * *", "At 00:00 on day 1 of the month"),
        ("0 0 1,15 * *", "At 00:00 on days 1 and 15 of the month"),
        ("0 6 1 1 *", "At 06:00 on day 1 of the month in January"),
        ("0 0 * 1-3 *", "At 00:00 every day in January through March"),
        ("0 0 13 * 5", "At 00:00 on day 13 of the month or on Friday"),
        ("0 9-17 * * 1-5", "Every hour from 09:00 to 17:00, on weekdays"),
        ("*/10 9-17 * * *", "Every 10 minutes from 09:00 to 17:59"),
        ("CRON_TZ=Europe/Paris 0 4 * * *", "At 04:00 every day (Europe/Paris)"),
        # Unusual shapes are spelled out field by field rather than guessed.
        ("5,10 3-4 * * *", "At minute 5,10 past hour 3-4 every day"),
        ("0 0 */2 * *", "At 00:00 on days */2 of the month"),
    ],
)
def test_common_patterns_are_described_in_words(cron: str, description: str) -> None:
    assert describe_cron(cron) == description


def test_describing_a_bad_expression_raises() -> None:
    with pytest.raises(ScheduleError):
        describe_cron("61 * * * *")


@pytest.mark.parametrize("cron", [None, ["0", "2", "*", "*", "*"], 5])
def test_a_cron_that_is_not_text_is_refused_by_its_type(cron: object) -> None:
    with pytest.raises(ScheduleError, match=f"must be a str, not {type(cron).__name__}"):
        validate_cron(cron)  # type: ignore[arg-type]


def test_an_expression_is_read_once_however_often_it_is_described() -> None:
    describe_cron("15 3 * * 1-5")
    before = _parse_cron.cache_info().hits
    for _ in range(3):
        describe_cron("15 3 * * 1-5")
        next_runs("15 3 * * 1-5", 1)
    assert _parse_cron.cache_info().hits == before + 6


@pytest.mark.parametrize("cron", ["0 9 * * 0-7", "0 9 * * 1-7", "0 9 1 * 0-7"])
def test_every_day_of_the_week_is_described_as_every_day(cron: str) -> None:
    # With a day of the month too, either matching is enough: every day all the same.
    assert describe_cron(cron) == describe_cron("0 9 * * *") == "At 09:00 every day"
