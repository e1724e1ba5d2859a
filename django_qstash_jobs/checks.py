"""System checks: what is missing from the configuration, in plain words."""

from __future__ import annotations

import ipaddress
import math
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from django.core.checks import CheckMessage, Error, Tags, Warning, register
from django.core.exceptions import ImproperlyConfigured
from django.core.files.storage import storages
from django.urls import NoReverseMatch, reverse

from django_qstash_jobs.conf import DEFAULTS, JobsConfig, get_config
from django_qstash_jobs.options import MAX_RETRIES, is_absolute_http_url, url_problem
from django_qstash_jobs.transports import TRANSPORTS, import_transport_class

_DOCS_HINT = "Set it in settings.QSTASH_JOBS or in the {env} environment variable."


@register(Tags.compatibility)
def check_settings(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    try:
        config = get_config()
    except ImproperlyConfigured as exc:  # QSTASH_JOBS is not a dict: nothing else can be read
        return [Error(str(exc), id="django_qstash_jobs.E019")]
    messages: list[CheckMessage] = []
    uses_qstash = config.transport == "qstash"

    if uses_qstash and not config.token:
        messages.append(
            Error(
                "No QStash token: django-qstash-jobs cannot publish jobs.",
                hint=_DOCS_HINT.format(env="QSTASH_TOKEN")
                + " Locally, `manage.py qstash_dev` prints one.",
                id="django_qstash_jobs.E001",
            )
        )
    if uses_qstash and not config.current_signing_key:
        messages.append(
            Error(
                "No current QStash signing key: deliveries cannot be verified, so every job "
                "would be refused.",
                hint=_DOCS_HINT.format(env="QSTASH_CURRENT_SIGNING_KEY"),
                id="django_qstash_jobs.E002",
            )
        )
    if uses_qstash and not config.next_signing_key:
        messages.append(
            Error(
                "No next QStash signing key: deliveries would fail as soon as Upstash rotates "
                "the keys.",
                hint=_DOCS_HINT.format(env="QSTASH_NEXT_SIGNING_KEY"),
                id="django_qstash_jobs.E003",
            )
        )
    if not is_absolute_http_url(config.url):
        messages.append(
            Error(
                f"QSTASH_JOBS['URL'] is {config.url!r}, not an absolute http(s) URL: QStash "
                "cannot be reached.",
                hint="Write it with its scheme: https://qstash.upstash.io, or "
                "http://127.0.0.1:8080 for the local server.",
                id="django_qstash_jobs.E011",
            )
        )
    messages.extend(_check_receiver_url(config.receiver_url, required=uses_qstash))
    if uses_qstash:
        messages.extend(_check_deliverable(config))
    messages.extend(_check_transport(config.transport))
    for key in config.unknown_keys:
        messages.append(
            Error(
                f"Unknown setting QSTASH_JOBS[{key!r}].",
                hint=f"Known settings: {', '.join(sorted(DEFAULTS))}.",
                id="django_qstash_jobs.E007",
            )
        )
    # A lease of 0 hands every running job to the next delivery; a retention of 0 has the
    # cleanup job delete what finished a second ago.
    minimums = {"default_retries": 0, "lease_seconds": 1, "clock_tolerance": 0, "retention_days": 1}
    for name, minimum in minimums.items():
        value = getattr(config, name)
        if not _is_whole_number(value) or value < minimum:
            messages.append(
                Error(
                    f"QSTASH_JOBS[{name.upper()!r}] must be an integer of at least {minimum}, "
                    f"not {value!r}.",
                    id="django_qstash_jobs.E008",
                )
            )
    retries = config.default_retries
    if _is_whole_number(retries) and retries > MAX_RETRIES:
        messages.append(
            Error(
                f"QSTASH_JOBS['DEFAULT_RETRIES'] is {retries}: QStash refuses more than "
                f"{MAX_RETRIES} retries, so every publish would fail.",
                id="django_qstash_jobs.E013",
            )
        )
    messages.extend(_check_grace_and_retention(config))
    if not _is_positive_seconds(config.publish_timeout):
        # 0 makes every publish time out at once; infinity cannot be a timedelta.
        messages.append(
            Error(
                "QSTASH_JOBS['PUBLISH_TIMEOUT'] must be a number of seconds greater than 0, "
                f"not {config.publish_timeout!r}.",
                id="django_qstash_jobs.E012",
            )
        )
    messages.extend(_check_storage(config.storage))
    # Read as truth values, any string (even "False") would mean True.
    switches = {"CSV_ESCAPE_FORMULAS": "E010", "ENQUEUE_ON_COMMIT": "E017"}
    for key, check_id in switches.items():
        value = getattr(config, key.lower())
        if not isinstance(value, bool):
            messages.append(
                Error(
                    f"QSTASH_JOBS[{key!r}] must be True or False, not {value!r}.",
                    id=f"django_qstash_jobs.{check_id}",
                )
            )
    if not isinstance(config.webhook_secrets, Mapping):
        messages.append(
            Error(
                "QSTASH_JOBS['WEBHOOK_SECRETS'] must be a dict of sources to secrets, not "
                f"{type(config.webhook_secrets).__name__}.",
                hint='For example {"stripe": "whsec_...", "github": ["new", "old"]}.',
                id="django_qstash_jobs.E016",
            )
        )
    return messages


def _is_whole_number(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_positive_seconds(value: Any) -> bool:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    try:
        return math.isfinite(value) and value > 0
    except OverflowError:  # an int too large for a float (10**400) cannot be a timeout either
        return False


def _check_grace_and_retention(config: JobsConfig) -> list[CheckMessage]:
    """Numbers the other checks pass, and republish_jobs or cleanup_jobs then fail on."""
    # Imported here: the job modules register job types, which needs the app registry.
    from django_qstash_jobs.jobs.schemas import MAX_RETENTION_DAYS

    messages: list[CheckMessage] = []
    grace = config.republish_grace_seconds
    if not _is_whole_number(grace) or grace < 0:
        # republish_jobs makes a timedelta of it, which a string or None would crash.
        messages.append(
            Error(
                "QSTASH_JOBS['REPUBLISH_GRACE_SECONDS'] must be a whole number of seconds of "
                f"at least 0, not {grace!r}.",
                id="django_qstash_jobs.E020",
            )
        )
    retention = config.retention_days
    if _is_whole_number(retention) and retention > MAX_RETENTION_DAYS:
        # cleanup_jobs and the cleanup job refuse a cutoff before the calendar's start.
        messages.append(
            Error(
                f"QSTASH_JOBS['RETENTION_DAYS'] is {retention}: at most {MAX_RETENTION_DAYS} "
                "days, or cleanup_jobs refuses to run.",
                id="django_qstash_jobs.E021",
            )
        )
    return messages


def _check_storage(storage: Any) -> list[CheckMessage]:
    # storages.backends is settings.STORAGES as the storages handler reads it.
    backends = storages.backends
    if isinstance(storage, str) and storage in backends:
        return []
    return [
        Error(
            f"QSTASH_JOBS['STORAGE'] is {storage!r}, which is not an entry of settings.STORAGES: "
            "reports and exports could not be written, nor cleaned up.",
            hint=f"Name one of {', '.join(map(repr, backends))}.",
            id="django_qstash_jobs.E022",
        )
    ]


def _check_transport(transport: Any) -> list[CheckMessage]:
    if not isinstance(transport, str):
        return [
            Error(
                f"QSTASH_JOBS['TRANSPORT'] must be a string, not {type(transport).__name__}.",
                hint=f"One of {', '.join(TRANSPORTS)} or the dotted path of a transport class.",
                id="django_qstash_jobs.E015",
            )
        ]
    if transport in TRANSPORTS:
        return []
    if "." not in transport:
        return [
            Error(
                f"Unknown transport {transport!r}.",
                hint=f"QSTASH_JOBS['TRANSPORT'] must be one of {', '.join(TRANSPORTS)} "
                "or the dotted path of a transport class.",
                id="django_qstash_jobs.E006",
            )
        ]
    try:
        import_transport_class(transport)
    except ImproperlyConfigured as exc:
        return [Error(str(exc), id="django_qstash_jobs.E014")]
    return []


def _check_receiver_url(url: str | None, *, required: bool) -> list[CheckMessage]:
    if not url:
        if not required:
            return []
        return [
            Error(
                "No receiver URL: QStash needs the absolute URL to deliver jobs to.",
                hint="Set QSTASH_JOBS['RECEIVER_URL'] (or QSTASH_RECEIVER_URL) to the public URL "
                "of the 'django_qstash_jobs:receive' view, e.g. https://example.com/jobs/receive/.",
                id="django_qstash_jobs.E004",
            )
        ]
    if not is_absolute_http_url(url):
        return [
            Error(
                f"The receiver URL {url!r} is not an absolute http(s) URL.",
                hint="QStash delivers to exactly this URL and signs it; write it in full, "
                "e.g. https://example.com/jobs/receive/.",
                id="django_qstash_jobs.E005",
            )
        ]
    problem = url_problem(url)
    if problem:
        # QStash is given the URL in a header, where such characters cannot travel.
        return [
            Error(
                f"The receiver URL {url!r} {problem}",
                hint="QStash receives it as an HTTP header value.",
                id="django_qstash_jobs.E018",
            )
        ]
    try:
        path = reverse("django_qstash_jobs:receive")
    except NoReverseMatch:
        return [
            Warning(
                "The receiver view is not in the URLconf.",
                hint='Add path("jobs/", include("django_qstash_jobs.urls")) to your urls.py.',
                id="django_qstash_jobs.W001",
            )
        ]
    if not urlsplit(url).path.endswith(path):
        return [
            Warning(
                f"The receiver URL {url!r} does not end with the receiver's path {path!r}.",
                hint="Unless a proxy rewrites paths, QStash will deliver to a URL that does not "
                "reach the receiver.",
                id="django_qstash_jobs.W002",
            )
        ]
    return []


def _check_deliverable(config: JobsConfig) -> list[CheckMessage]:
    """Upstash's QStash, on the internet, cannot deliver to this machine's loopback."""
    receiver_url = config.receiver_url
    if not (
        isinstance(receiver_url, str)
        and is_absolute_http_url(receiver_url)
        and is_absolute_http_url(config.url)
    ):
        return []  # missing or malformed: reported by the other checks
    qstash_host = urlsplit(config.url).hostname or ""
    if qstash_host != "upstash.io" and not qstash_host.endswith(".upstash.io"):
        return []
    if not _is_loopback(urlsplit(receiver_url).hostname or ""):
        return []
    return [
        Warning(
            f"The receiver URL {config.receiver_url!r} is on this machine, but jobs are "
            f"published to Upstash ({config.url}), which cannot deliver there: every job "
            "would stay queued.",
            hint="Set RECEIVER_URL to a public URL (a tunnel, in development), or point "
            "QSTASH_JOBS['URL'] at the local server, http://127.0.0.1:8080.",
            id="django_qstash_jobs.W003",
        )
    ]


def _is_loopback(host: str) -> bool:
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@register(Tags.compatibility)
def check_schedules(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """Each ``QSTASH_JOBS["SCHEDULES"]`` declaration is complete, with a valid cron and payload."""
    # Imported here: the check runs once the app registry is ready, which schedules needs.
    from django_qstash_jobs.schedules import declaration_problems

    try:
        get_config()
    except ImproperlyConfigured:
        return []  # QSTASH_JOBS is not a dict: check_settings reports it
    return [
        Error(
            problem,
            hint="Each declaration is a dict with 'name', 'job_type' and 'cron', and optionally "
            "'payload', 'metadata' (user_id, organization_id) and 'paused'.",
            id="django_qstash_jobs.E009",
        )
        for problem in declaration_problems()
    ]
