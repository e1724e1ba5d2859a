"""System checks: what is missing from the configuration, in plain words."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from django.core.checks import CheckMessage, Error, Tags, Warning, register
from django.urls import NoReverseMatch, reverse

from django_qstash_jobs.conf import DEFAULTS, get_config
from django_qstash_jobs.options import is_absolute_http_url
from django_qstash_jobs.transports import TRANSPORTS

_DOCS_HINT = "Set it in settings.QSTASH_JOBS or in the {env} environment variable."


@register(Tags.compatibility)
def check_settings(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    config = get_config()
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
    messages.extend(_check_receiver_url(config.receiver_url, required=uses_qstash))
    if config.transport not in TRANSPORTS and "." not in config.transport:
        messages.append(
            Error(
                f"Unknown transport {config.transport!r}.",
                hint=f"QSTASH_JOBS['TRANSPORT'] must be one of {', '.join(TRANSPORTS)} "
                "or the dotted path of a transport class.",
                id="django_qstash_jobs.E006",
            )
        )
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
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            messages.append(
                Error(
                    f"QSTASH_JOBS[{name.upper()!r}] must be an integer of at least {minimum}, "
                    f"not {value!r}.",
                    id="django_qstash_jobs.E008",
                )
            )
    if not isinstance(config.csv_escape_formulas, bool):
        messages.append(
            Error(
                "QSTASH_JOBS['CSV_ESCAPE_FORMULAS'] must be True or False, not "
                f"{config.csv_escape_formulas!r}.",
                id="django_qstash_jobs.E009",
            )
        )
    return messages


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


@register(Tags.compatibility)
def check_schedules(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """Each ``QSTASH_JOBS["SCHEDULES"]`` declaration is complete, with a valid cron and payload."""
    # Imported here: the check runs once the app registry is ready, which schedules needs.
    from django_qstash_jobs.schedules import declaration_problems

    return [
        Error(
            problem,
            hint="Each declaration is a dict with 'name', 'job_type' and 'cron', and optionally "
            "'payload', 'metadata' (user_id, organization_id) and 'paused'.",
            id="django_qstash_jobs.E009",
        )
        for problem in declaration_problems()
    ]
