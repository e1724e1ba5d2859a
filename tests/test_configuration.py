"""Settings, their environment fallbacks, and the system checks."""

from __future__ import annotations

from io import StringIO
from typing import Any

import pytest
from django.conf import settings
from django.core.management import call_command
from django.test import override_settings

from django_qstash_jobs import JOB_TYPES
from django_qstash_jobs.checks import check_settings
from django_qstash_jobs.conf import get_config
from django_qstash_jobs.registry import registry

DEV = {
    "TOKEN": "token",
    "CURRENT_SIGNING_KEY": "sig_current",
    "NEXT_SIGNING_KEY": "sig_next",
    "RECEIVER_URL": "https://example.com/jobs/receive/",
}


def check_ids(**qstash_jobs: Any) -> set[str]:
    with override_settings(QSTASH_JOBS=qstash_jobs):
        return {message.id for message in check_settings()}


@pytest.fixture(autouse=True)
def _no_qstash_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (
        "QSTASH_TOKEN",
        "QSTASH_URL",
        "QSTASH_CURRENT_SIGNING_KEY",
        "QSTASH_NEXT_SIGNING_KEY",
        "QSTASH_RECEIVER_URL",
    ):
        monkeypatch.delenv(name, raising=False)


def test_a_complete_configuration_passes() -> None:
    assert check_ids(**DEV) == set()


@pytest.mark.parametrize(
    ("missing", "check_id"),
    [
        ("TOKEN", "django_qstash_jobs.E001"),
        ("CURRENT_SIGNING_KEY", "django_qstash_jobs.E002"),
        ("NEXT_SIGNING_KEY", "django_qstash_jobs.E003"),
        ("RECEIVER_URL", "django_qstash_jobs.E004"),
    ],
)
def test_each_missing_setting_has_its_own_error(missing: str, check_id: str) -> None:
    settings = {key: value for key, value in DEV.items() if key != missing}
    assert check_ids(**settings) == {check_id}


def test_the_error_says_what_is_missing_and_where_to_set_it() -> None:
    with override_settings(QSTASH_JOBS={}):
        errors = {message.id: message for message in check_settings()}
    token = errors["django_qstash_jobs.E001"]
    assert "No QStash token" in token.msg
    assert "QSTASH_TOKEN" in (token.hint or "")


def test_the_immediate_transport_needs_no_credentials() -> None:
    assert check_ids(TRANSPORT="immediate") == set()


def test_a_relative_receiver_url_is_an_error() -> None:
    assert check_ids(**{**DEV, "RECEIVER_URL": "/jobs/receive/"}) == {"django_qstash_jobs.E005"}


def test_a_receiver_url_that_misses_the_receiver_path_is_a_warning() -> None:
    assert check_ids(**{**DEV, "RECEIVER_URL": "https://example.com/hooks/"}) == {
        "django_qstash_jobs.W002"
    }


def test_unknown_settings_and_transports_are_errors() -> None:
    assert check_ids(**DEV, TOKENS="x") == {"django_qstash_jobs.E007"}
    assert check_ids(**{**DEV, "TRANSPORT": "carrier-pigeon"}) == {"django_qstash_jobs.E006"}
    assert check_ids(**DEV, DEFAULT_RETRIES=-1) == {"django_qstash_jobs.E008"}
    # A lease of 0 hands running jobs over at once; a retention of 0 deletes what just finished.
    assert check_ids(**DEV, LEASE_SECONDS=0) == {"django_qstash_jobs.E008"}
    assert check_ids(**DEV, RETENTION_DAYS=0) == {"django_qstash_jobs.E008"}
    assert check_ids(**DEV, DEFAULT_RETRIES=0, RETENTION_DAYS=1) == set()


def test_credentials_fall_back_to_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QSTASH_TOKEN", "env-token")
    monkeypatch.setenv("QSTASH_URL", "http://127.0.0.1:8080/")
    monkeypatch.setenv("QSTASH_CURRENT_SIGNING_KEY", "sig_env_current")
    monkeypatch.setenv("QSTASH_NEXT_SIGNING_KEY", "sig_env_next")
    with override_settings(QSTASH_JOBS={"TOKEN": "settings-token"}):
        config = get_config()
        assert config.token == "settings-token"  # settings win over the environment
        assert config.url == "http://127.0.0.1:8080"
        assert config.signing_keys == ["sig_env_current", "sig_env_next"]


def test_override_settings_is_followed() -> None:
    with override_settings(QSTASH_JOBS={"DEFAULT_RETRIES": 7}):
        assert get_config().default_retries == 7
    with override_settings(QSTASH_JOBS={"DEFAULT_RETRIES": 1}):
        assert get_config().default_retries == 1
    assert get_config().default_retries == 3


@pytest.mark.django_db
def test_the_checks_run_with_manage_py_check() -> None:
    from django.core.management import call_command
    from django.core.management.base import SystemCheckError

    with override_settings(QSTASH_JOBS={}), pytest.raises(SystemCheckError, match="E001"):
        call_command("check")


def test_list_job_types_shows_each_type_with_its_handler_schema_and_retries() -> None:
    out = StringIO()
    with override_settings(QSTASH_JOBS={**settings.QSTASH_JOBS, "DEFAULT_RETRIES": 5}):
        call_command("list_job_types", stdout=out)
    lines = out.getvalue().splitlines()
    assert lines[0].split() == ["JOB", "TYPE", "HANDLER", "SCHEMA", "RETRIES"]
    rows = {line.split()[0]: line.split()[1:] for line in lines[1:]}
    assert rows["echo"] == ["tests.testapp.jobs.echo", "Echo", "2"]
    assert rows["permanent"] == ["tests.testapp.jobs.permanent", "-", "5"]  # the default
    # The columns line up: every cell of a column starts where its header does.
    handler_at = lines[0].index("HANDLER")
    assert all(line[handler_at - 2 : handler_at] == "  " for line in lines[1:])


def test_job_types_names_every_built_in_job_type() -> None:
    assert sorted(JOB_TYPES) == [
        "cleanup_old_data",
        "export_data",
        "generate_report",
        "process_stripe_webhook",
        "process_webhook",
        "send_batch_emails",
        "send_email",
    ]
    assert all(name in registry for name in JOB_TYPES)
