"""The ``metadata`` and ``options`` arguments of ``enqueue``: their keys, checks and defaults."""

from __future__ import annotations

import hashlib
import math
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal
from typing import Any, TypedDict
from urllib.parse import urlsplit

from django_qstash_jobs import storable


class JobMetadata(TypedDict, total=False):
    """Who a job is for, and how to recognise it when it is enqueued twice."""

    user_id: int | str
    organization_id: int | str
    #: A second enqueue with the same key returns the first job's id and publishes nothing.
    idempotency_key: str


class EnqueueOptions(TypedDict, total=False):
    """How QStash delivers the job."""

    #: Milliseconds (as in the original API) or a ``timedelta``.
    delay: int | timedelta
    #: Retries after the first attempt; overrides the job type's default.
    retries: int
    #: URL QStash calls with the receiver's response after each attempt.
    callback: str
    #: URL that gets QStash's notice once QStash gives up on the job: the receiver records the
    #: failure, then forwards the notice there through QStash.
    failure_callback: str
    #: Headers forwarded to the receiver with the delivery.
    headers: dict[str, str]


METADATA_KEYS = frozenset(JobMetadata.__annotations__)
OPTION_KEYS = frozenset(EnqueueOptions.__annotations__)
_HEADER_NAME = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
#: The most retries QStash accepts for one message.
MAX_RETRIES = 100


@dataclass(frozen=True)
class PublishOptions:
    """Options checked and normalised: what a transport needs to publish one job."""

    delay_seconds: int = 0
    retries: int | None = None
    callback: str | None = None
    failure_callback: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    #: Sent as ``Upstash-Deduplication-Id``: the idempotency key, else the job id (a new one for
    #: each manual retry), so a publish repeated after an ambiguous failure is not delivered twice.
    deduplication_id: str | None = None

    def as_json(self) -> dict[str, Any]:
        """The options as stored on the row (so a republish uses the same ones)."""
        stored: dict[str, Any] = {}
        if self.delay_seconds:
            stored["delay_seconds"] = self.delay_seconds
        if self.retries is not None:
            stored["retries"] = self.retries
        if self.callback:
            stored["callback"] = self.callback
        if self.failure_callback:
            stored["failure_callback"] = self.failure_callback
        if self.headers:
            stored["headers"] = self.headers
        if self.deduplication_id:
            stored["deduplication_id"] = self.deduplication_id
        return stored

    @classmethod
    def from_json(cls, stored: Mapping[str, Any]) -> PublishOptions:
        return cls(
            delay_seconds=int(stored.get("delay_seconds", 0)),
            retries=stored.get("retries"),
            callback=stored.get("callback"),
            failure_callback=stored.get("failure_callback"),
            headers=dict(stored.get("headers", {})),
            deduplication_id=stored.get("deduplication_id"),
        )


def check_keys(given: Mapping[str, Any] | None, allowed: frozenset[str], what: str) -> None:
    """Raise ``TypeError`` naming each key of ``given`` that is not in ``allowed``."""
    if given is None:
        return
    if not isinstance(given, Mapping):
        raise TypeError(f"{what} must be a dict, not {type(given).__name__}.")
    unknown = sorted(set(given) - allowed)
    if unknown:
        raise TypeError(
            f"Unknown {what} key{'s' if len(unknown) > 1 else ''} "
            f"{', '.join(map(repr, unknown))}; allowed: {', '.join(sorted(allowed))}."
        )


def parse_metadata(metadata: Mapping[str, Any] | None) -> dict[str, Any]:
    """Check ``metadata`` and return it as a plain dict without ``None`` values."""
    check_keys(metadata, METADATA_KEYS, "metadata")
    parsed = {key: value for key, value in (metadata or {}).items() if value is not None}
    for key in ("user_id", "organization_id"):
        if key not in parsed:
            continue
        # A primary key: an integer, a string or a UUID. A bool is an int to Python only.
        if isinstance(parsed[key], bool) or not isinstance(parsed[key], (int, str, uuid.UUID)):
            raise TypeError(f"metadata[{key!r}] must be an int, a str or a UUID.")
        if isinstance(parsed[key], uuid.UUID):
            parsed[key] = str(parsed[key])
        if len(str(parsed[key])) > 64:
            raise ValueError(f"metadata[{key!r}] is longer than 64 characters.")
    idempotency_key = parsed.get("idempotency_key")
    if idempotency_key is not None:
        _check_idempotency_key(idempotency_key)
    return parsed


def _check_idempotency_key(key: Any) -> None:
    if not isinstance(key, str) or not key or len(key) > 255:
        raise ValueError(
            "metadata['idempotency_key'] must be a non-empty str of 255 characters at most."
        )
    if storable.text(key) != key:
        raise ValueError(
            f"metadata['idempotency_key'] {key!r} holds a NUL character or a lone surrogate, "
            "which the database cannot store."
        )


def deduplication_id_for(key: str) -> str:
    """QStash's deduplication id for an idempotency key: the key, where a header can carry it.

    A key that is not printable ASCII, or has spaces at either end (built from a name, an
    email address), travels as its SHA-256, which stands for it as well.
    """
    if _is_header_value(key):
        return key
    return f"sha256:{hashlib.sha256(key.encode()).hexdigest()}"


def owner_columns(parsed_metadata: Mapping[str, Any]) -> dict[str, str | None]:
    """The ``user_id`` and ``organization_id`` columns for checked metadata, stored as text."""
    return {
        key: None if parsed_metadata.get(key) is None else str(parsed_metadata[key])
        for key in ("user_id", "organization_id")
    }


def parse_options(options: Mapping[str, Any] | None) -> PublishOptions:
    """Check ``options`` and return them normalised."""
    check_keys(options, OPTION_KEYS, "options")
    options = options or {}
    retries = options.get("retries")
    if retries is not None and (
        isinstance(retries, bool) or not isinstance(retries, int) or not 0 <= retries <= MAX_RETRIES
    ):
        raise ValueError(f"options['retries'] must be an integer from 0 to {MAX_RETRIES}.")
    return PublishOptions(
        delay_seconds=_delay_seconds(options.get("delay")),
        retries=retries,
        callback=_url(options.get("callback"), "callback"),
        failure_callback=_url(options.get("failure_callback"), "failure_callback"),
        headers=_headers(options.get("headers")),
    )


def _delay_seconds(delay: Any) -> int:
    if delay is None:
        return 0
    if isinstance(delay, timedelta):
        milliseconds = delay.total_seconds() * 1000
    elif isinstance(delay, (int, float)) and not isinstance(delay, bool):
        try:
            milliseconds = float(delay)
        except OverflowError:  # an int past float's range: as infinite as float("inf")
            milliseconds = math.inf
    else:
        raise TypeError("options['delay'] must be milliseconds (an int) or a datetime.timedelta.")
    if not math.isfinite(milliseconds) or milliseconds < 0:
        raise ValueError("options['delay'] must be a finite number of milliseconds, not negative.")
    # QStash delays have a resolution of one second; never deliver earlier than asked.
    return int(-(-milliseconds // 1000))


def is_absolute_http_url(value: Any) -> bool:
    """Whether ``value`` is an http:// or https:// URL with a host, as QStash needs."""
    if not isinstance(value, str):
        return False
    try:
        parts = urlsplit(value)
    except ValueError:  # an unclosed IPv6 bracket: "http://[::1"
        return False
    return parts.scheme in ("http", "https") and bool(parts.netloc)


def url_problem(value: Any) -> str | None:
    """What makes ``value`` unfit as a URL QStash is given (in a header), or ``None``.

    The answer completes a sentence whose subject is the URL's name: "... must be an absolute
    http:// or https:// URL."
    """
    if not is_absolute_http_url(value):
        return "must be an absolute http:// or https:// URL."
    if not _is_header_text(value) or " " in value:
        return (
            "may hold printable ASCII characters only, without spaces: "
            "percent-encode the others (a space is %20)."
        )
    try:
        urlsplit(value).port  # noqa: B018 - raises for a port that is not a number
    except ValueError as exc:
        return f"has an invalid port: {exc}."
    return None


def _url(value: Any, name: str) -> str | None:
    if value is None:
        return None
    problem = url_problem(value)
    if problem:
        raise ValueError(f"options[{name!r}] {problem}")
    return str(value)


def _is_header_text(text: str) -> bool:
    # An HTTP header value carries printable ASCII; QStash's options travel as headers.
    return all(" " <= character <= "~" for character in text)


def _is_header_value(text: str) -> bool:
    # Printable ASCII, and no space at either end, which HTTP clients strip or refuse.
    return _is_header_text(text) and text == text.strip()


def _headers(headers: Any) -> dict[str, str]:
    if headers is None:
        return {}
    if not isinstance(headers, Mapping):
        raise TypeError("options['headers'] must be a dict of header names to values.")
    checked: dict[str, str] = {}
    seen: dict[str, str] = {}
    for name, value in headers.items():
        _check_header_name(name)
        if name.lower() in seen:
            # QStash (and HTTP) would merge them into one header, "a, b".
            raise ValueError(
                f"options['headers'] names one header twice: {seen[name.lower()]!r} and {name!r}."
            )
        seen[name.lower()] = name
        if isinstance(value, bool) or not isinstance(value, (str, int, float, Decimal, uuid.UUID)):
            raise TypeError(
                f"options['headers'][{name!r}] must be a str, a number or a UUID, not {value!r}."
            )
        text = str(value)
        if not _is_header_value(text):
            raise ValueError(
                f"options['headers'][{name!r}] may hold printable ASCII characters only, without "
                "leading or trailing spaces (no line breaks, no accents): encode the value "
                "first, as RFC 8187 or base64."
            )
        checked[name] = text
    return checked


#: Headers that frame or route the request itself: forwarded, they would change how the
#: delivery is read (a Content-Length cuts its body short, so its signature fails) or be dropped.
_FRAMING_HEADERS = frozenset(
    {
        "connection",
        "content-length",
        "content-type",
        "expect",
        "host",
        "keep-alive",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    }
)


def _check_header_name(name: Any) -> None:
    if not isinstance(name, str) or not _HEADER_NAME.fullmatch(name):
        raise ValueError(f"options['headers'] has an invalid header name {name!r}.")
    lowered = name.lower()
    if lowered.startswith("upstash-"):
        raise ValueError(
            f"options['headers'] cannot set {name!r}: Upstash-* headers configure QStash; "
            "use the enqueue options instead."
        )
    if lowered in _FRAMING_HEADERS:
        raise ValueError(
            f"options['headers'] cannot set {name!r}: it frames the delivery itself (the "
            "receiver's request is JSON, signed as QStash sends it)."
        )
    if "_" in name:
        # Django's WSGI and ASGI handlers, gunicorn and runserver drop such headers: it would
        # never reach the handler.
        raise ValueError(
            f"options['headers'] cannot use {name!r}: web servers drop header names with an "
            "underscore; use a hyphen."
        )
