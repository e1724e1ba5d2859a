"""Settings, their environment fallbacks, and the system checks."""

from __future__ import annotations

from io import StringIO
from typing import Any

import pytest
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.management import call_command
from django.core.management.base import SystemCheckError
from django.test import override_settings

from django_qstash_jobs import JOB_TYPES, register_job
from django_qstash_jobs.checks import check_schedules, check_settings
from django_qstash_jobs.conf import DEFAULTS, get_config
from django_qstash_jobs.jobs.schemas import MAX_RETENTION_DAYS
from django_qstash_jobs.options import MAX_RETRIES, is_absolute_http_url
from django_qstash_jobs.registry import registry
from django_qstash_jobs.transports import get_transport

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


def test_none_means_unset_so_the_environment_or_the_default_applies(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # {"URL": os.environ.get("QSTASH_URL")} gives None when the variable is unset.
    with override_settings(QSTASH_JOBS={}):
        defaults = get_config()
    with override_settings(QSTASH_JOBS=dict.fromkeys(DEFAULTS)):
        assert get_config() == defaults
        assert get_config().url == "https://qstash.upstash.io"  # not "None"
    monkeypatch.setenv("QSTASH_TOKEN", "env-token")
    monkeypatch.setenv("QSTASH_URL", "http://127.0.0.1:8080/")
    with override_settings(QSTASH_JOBS={**DEV, "TOKEN": None, "URL": None}):
        assert get_config().token == "env-token"
        assert get_config().url == "http://127.0.0.1:8080"
        assert check_ids(**{**DEV, "TOKEN": None, "URL": None}) == set()


def test_a_qstash_url_without_a_scheme_is_an_error() -> None:
    assert check_ids(**DEV, URL="qstash.upstash.io") == {"django_qstash_jobs.E011"}
    assert check_ids(**DEV, URL="ftp://qstash.upstash.io") == {"django_qstash_jobs.E011"}
    assert check_ids(**DEV, URL="http://127.0.0.1:8080") == set()


@pytest.mark.parametrize("timeout", [0, -1, True, "10", float("nan"), float("inf"), 10**400])
def test_a_publish_timeout_must_be_a_positive_number(timeout: Any) -> None:
    assert check_ids(**DEV, PUBLISH_TIMEOUT=timeout) == {"django_qstash_jobs.E012"}


def test_a_url_with_an_unclosed_ipv6_bracket_is_an_error_not_a_crash() -> None:
    assert not is_absolute_http_url("http://[::1")
    assert check_ids(**DEV, URL="http://[::1") == {"django_qstash_jobs.E011"}
    receiver = {**DEV, "RECEIVER_URL": "http://[::1/jobs/receive/"}
    assert check_ids(**receiver) == {"django_qstash_jobs.E005"}


@pytest.mark.parametrize("qstash_jobs", [["TOKEN"], "TOKEN", 5])
def test_qstash_jobs_that_is_not_a_dict_is_an_error_not_a_crash(qstash_jobs: Any) -> None:
    with override_settings(QSTASH_JOBS=qstash_jobs):
        errors = check_settings()
        assert check_schedules() == []  # nothing more to say about a setting that is not a dict
        with pytest.raises(ImproperlyConfigured, match="QSTASH_JOBS must be a dict"):
            get_config()
    assert [error.id for error in errors] == ["django_qstash_jobs.E019"]
    assert type(qstash_jobs).__name__ in errors[0].msg


def test_unknown_keys_that_are_not_strings_are_reported_too() -> None:
    with override_settings(QSTASH_JOBS={**DEV, 5: "x", "TOKENS": "y"}):
        errors = check_settings()
    assert [error.id for error in errors] == ["django_qstash_jobs.E007"] * 2


@pytest.mark.parametrize("grace", ["60", -1, 1.5, True])
def test_the_republish_grace_must_be_a_whole_number_of_seconds(grace: Any) -> None:
    assert check_ids(**DEV, REPUBLISH_GRACE_SECONDS=grace) == {"django_qstash_jobs.E020"}


def test_no_republish_grace_is_fine() -> None:
    assert check_ids(**DEV, REPUBLISH_GRACE_SECONDS=0) == set()


def test_a_retention_longer_than_cleanup_accepts_is_an_error() -> None:
    assert check_ids(**DEV, RETENTION_DAYS=MAX_RETENTION_DAYS) == set()
    too_long = MAX_RETENTION_DAYS + 1
    assert check_ids(**DEV, RETENTION_DAYS=too_long) == {"django_qstash_jobs.E021"}


@pytest.mark.parametrize("storage", ["reports", ["default"], 5])
def test_the_storage_must_name_an_entry_of_storages(storage: Any) -> None:
    with override_settings(QSTASH_JOBS={**DEV, "STORAGE": storage}):
        errors = check_settings()
    assert [error.id for error in errors] == ["django_qstash_jobs.E022"]
    assert repr(storage) in errors[0].msg
    assert "'default'" in (errors[0].hint or "")


def test_a_storage_of_storages_is_fine() -> None:
    reports = {"BACKEND": "django.core.files.storage.InMemoryStorage"}
    with override_settings(STORAGES={**settings.STORAGES, "reports": reports}):
        assert check_ids(**DEV, STORAGE="reports") == set()


@pytest.mark.django_db(databases="__all__")  # Django's own model checks ask each database
def test_commands_stop_at_the_checks_before_a_setting_they_cannot_use() -> None:
    qstash_jobs = {**settings.QSTASH_JOBS, "REPUBLISH_GRACE_SECONDS": "60", "STORAGE": "reports"}
    with (
        override_settings(QSTASH_JOBS=qstash_jobs),
        pytest.raises(SystemCheckError, match="E020") as raised,
    ):
        call_command("republish_jobs", skip_checks=False, stdout=StringIO())
    assert "E022" in str(raised.value)


def test_a_fractional_publish_timeout_is_fine() -> None:
    assert check_ids(**DEV, PUBLISH_TIMEOUT=0.5) == set()


def test_retries_are_capped_where_qstash_caps_them() -> None:
    assert check_ids(**DEV, DEFAULT_RETRIES=MAX_RETRIES) == set()
    assert check_ids(**DEV, DEFAULT_RETRIES=MAX_RETRIES + 1) == {"django_qstash_jobs.E013"}
    # register_job checks its arguments before it is given the handler.
    with pytest.raises(ValueError, match=rf"from 0 to {MAX_RETRIES}, not {MAX_RETRIES + 1}"):
        register_job("too_many_retries", retries=MAX_RETRIES + 1)
    assert "too_many_retries" not in registry


@pytest.mark.parametrize("path", ["tests.no_such_module.Transport", ".Transport"])
def test_a_transport_path_that_cannot_be_imported_is_an_error(path: str) -> None:
    with override_settings(QSTASH_JOBS={**DEV, "TRANSPORT": path}):
        [error] = check_settings()
        with pytest.raises(ImproperlyConfigured) as raised:
            get_transport()
    assert error.id == "django_qstash_jobs.E014"
    assert error.msg == str(raised.value)  # what the first job would have said


@pytest.mark.parametrize(
    "path",
    [
        "os.path",  # a module
        "tests.settings.SECRET_KEY",  # a setting
        "django_qstash_jobs.conf.JobsConfig",  # a class, but not a transport
    ],
)
def test_a_transport_path_that_names_no_transport_class_is_an_error(path: str) -> None:
    with override_settings(QSTASH_JOBS={**DEV, "TRANSPORT": path}):
        [error] = check_settings()
        with pytest.raises(ImproperlyConfigured) as raised:
            get_transport()
    assert error.id == "django_qstash_jobs.E014"
    assert error.msg == str(raised.value)
    assert "not a subclass of django_qstash_jobs.transports.BaseTransport" in error.msg


@pytest.mark.parametrize(
    ("key", "value", "check_id"),
    [
        ("TRANSPORT", 5, "django_qstash_jobs.E015"),
        ("TRANSPORT", ["qstash"], "django_qstash_jobs.E015"),
        ("WEBHOOK_SECRETS", "whsec_x", "django_qstash_jobs.E016"),
        ("WEBHOOK_SECRETS", ["ab"], "django_qstash_jobs.E016"),  # dict() would read {"a": "b"}
        ("ENQUEUE_ON_COMMIT", "False", "django_qstash_jobs.E017"),
        ("ENQUEUE_ON_COMMIT", 0, "django_qstash_jobs.E017"),
        ("CSV_ESCAPE_FORMULAS", "no", "django_qstash_jobs.E010"),
    ],
)
def test_a_setting_of_the_wrong_type_is_an_error_not_a_crash(
    key: str, value: Any, check_id: str
) -> None:
    with override_settings(QSTASH_JOBS={**DEV, "TRANSPORT": "immediate", key: value}):
        errors = check_settings()
    assert [error.id for error in errors] == [check_id]
    assert repr(value) in errors[0].msg or type(value).__name__ in errors[0].msg


def test_schedules_that_are_not_a_list_are_an_error_not_a_crash() -> None:
    with override_settings(QSTASH_JOBS={**DEV, "SCHEDULES": 5}):
        [error] = check_schedules()
    assert error.id == "django_qstash_jobs.E009"
    assert "must be a list of dicts, not int" in error.msg


@pytest.mark.parametrize(
    "url",
    [
        "https://example.com/jobs/récepteur/",
        "https://example.com/jobs/receive/ ",
        "https://example.com/jobs/receive/\t",
        "https://example.com:port/jobs/receive/",
    ],
)
def test_a_receiver_url_that_cannot_go_in_a_header_is_an_error(url: str) -> None:
    assert check_ids(**{**DEV, "RECEIVER_URL": url}) == {"django_qstash_jobs.E018"}


@pytest.mark.parametrize(
    ("qstash_url", "receiver_host"),
    [
        ("https://qstash.upstash.io", "localhost:8000"),
        ("https://qstash.upstash.io/", "127.0.0.1:8000"),
        ("https://qstash-eu-central-1.upstash.io", "[::1]"),
        ("https://qstash.upstash.io", "app.localhost"),
    ],
)
def test_upstash_delivering_to_this_machine_is_a_warning(
    qstash_url: str, receiver_host: str
) -> None:
    receiver = f"http://{receiver_host}/jobs/receive/"
    assert check_ids(**{**DEV, "URL": qstash_url, "RECEIVER_URL": receiver}) == {
        "django_qstash_jobs.W003"
    }


def test_a_local_receiver_is_fine_with_the_local_server_or_in_process() -> None:
    receiver = {**DEV, "RECEIVER_URL": "http://127.0.0.1:8000/jobs/receive/"}
    assert check_ids(**receiver, URL="http://127.0.0.1:8080") == set()
    assert check_ids(**receiver, TRANSPORT="immediate") == set()
    assert check_ids(**DEV, URL="https://notupstash.io") == set()


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
        call_command("check", databases=["default"])


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
