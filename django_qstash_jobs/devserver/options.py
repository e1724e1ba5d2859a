"""Publish configuration read from ``Upstash-*`` headers, stored as JSON with each message."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from .defaults import DEFAULT_RETRIES
from .durations import RetryDelayExpression, parse_duration
from .errors import bad_request
from .headers import Headers, add_value

METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"})
MAX_RETRIES = 100
#: 2100-01-01T00:00:00Z in Unix seconds: the latest Upstash-Not-Before accepted.
_LATEST_NOT_BEFORE = 4_102_444_800
_MAX_FLOW_PERIOD_SECONDS = 7 * 86400
_CALLBACK_SETTINGS = ("method", "timeout", "retries", "retry-delay", "delay")
# Headers of the publish request itself that are never forwarded by Upstash-Header-Forward.
_NOT_FORWARDED = frozenset(
    {
        "authorization",
        "host",
        "content-length",
        "connection",
        "keep-alive",
        "transfer-encoding",
        "te",
        "upgrade",
        "expect",
        "proxy-authorization",
        "proxy-connection",
        "accept-encoding",
    }
)


@dataclass
class CallbackConfig:
    """How a callback (or failure callback) message is sent: overrides and forwarded headers."""

    method: str | None = None
    timeout: float | None = None
    retries: int | None = None
    retry_delay: str | None = None
    delay: float | None = None
    headers: dict[str, list[str]] = field(default_factory=dict)


@dataclass
class FlowControl:
    """Flow-control settings: at most ``parallelism`` in flight, ``rate`` per ``period`` s."""

    key: str
    parallelism: int | None = None
    rate: int | None = None
    period: int = 1


@dataclass
class PublishOptions:
    """Everything a message needs besides its destination and body."""

    method: str = "POST"
    headers: dict[str, list[str]] = field(default_factory=dict)
    retries: int = DEFAULT_RETRIES
    retry_delay: str | None = None
    timeout: float | None = None
    delay: float = 0.0
    not_before: int | None = None
    callback: str | None = None
    failure_callback: str | None = None
    callback_config: CallbackConfig = field(default_factory=CallbackConfig)
    failure_callback_config: CallbackConfig = field(default_factory=CallbackConfig)
    deduplication_id: str | None = None
    content_based_deduplication: bool = False
    flow_control: FlowControl | None = None
    labels: list[str] = field(default_factory=list)
    redact: str | None = None

    def to_json(self) -> str:
        """Serialise for storage."""
        data = dict(self.__dict__)
        # asdict() deep-copies recursively and costs more than the rest of a publish.
        data["callback_config"] = self.callback_config.__dict__
        data["failure_callback_config"] = self.failure_callback_config.__dict__
        if self.flow_control is not None:
            data["flow_control"] = self.flow_control.__dict__
        return json.dumps(data, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> PublishOptions:
        """Rebuild from what ``to_json`` stored."""
        data: dict[str, Any] = json.loads(text)
        data["callback_config"] = CallbackConfig(**data["callback_config"])
        data["failure_callback_config"] = CallbackConfig(**data["failure_callback_config"])
        if data.get("flow_control") is not None:
            data["flow_control"] = FlowControl(**data["flow_control"])
        return cls(**data)


def parse_bool(name: str, value: str) -> bool:
    """Parse a boolean like Go's ``strconv.ParseBool`` (so Python's ``True`` works too)."""
    lowered = value.strip().lower()
    if lowered in ("1", "t", "true"):
        return True
    if lowered in ("0", "f", "false"):
        return False
    raise bad_request(f"invalid {name} header: {value!r} is not a boolean")


_HEADER_NAME = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")


def _forwardable(name: str, value: str) -> tuple[str, str]:
    """A header to send with every delivery: one HTTP can carry, or a 400 now.

    Let through, it would fail every delivery attempt instead, and only the DLQ would say why.
    (A batch's headers come as JSON, where any text is possible.)
    """
    if not _HEADER_NAME.fullmatch(name):
        raise bad_request(f"invalid forwarded header name {name!r}")
    if any(ord(character) < 0x20 and character != "\t" for character in value):
        raise bad_request(f"invalid value of forwarded header {name!r}: control characters")
    try:
        value.encode("latin-1")
    except UnicodeEncodeError:
        raise bad_request(
            f"invalid value of forwarded header {name!r}: only Latin-1 text can be sent"
        ) from None
    return name, value


def parse_int(name: str, value: str, minimum: int = 0, maximum: int | None = None) -> int:
    """Parse an integer header value within bounds, or raise a 400."""
    try:
        number = int(value.strip())
    except ValueError:
        raise bad_request(f"invalid {name} header: {value!r} is not an integer") from None
    if number < minimum or (maximum is not None and number > maximum):
        raise bad_request(f"invalid {name} header: {number} is out of range")
    return number


def parse_seconds(name: str, value: str) -> float:
    """Parse a duration header value (``30s``, ``1d10h``) into seconds, or raise a 400."""
    try:
        return parse_duration(value)
    except ValueError:
        raise bad_request(f"invalid {name} header: {value!r} is not a duration") from None


def check_url(name: str, value: str) -> str:
    """Return ``value`` if it is an absolute http(s) URL, else raise a 400."""
    url = value.strip()
    if not url.lower().startswith(("http://", "https://")):
        raise bad_request(f"invalid {name}: endpoint has invalid scheme, add http:// or https://")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a malformed port
    except ValueError:
        raise bad_request(f"invalid {name}: {url!r}") from None
    if not parts.hostname or any(ch.isspace() for ch in url):
        raise bad_request(f"invalid {name}: {url!r}")
    return url


def check_method(name: str, value: str) -> str:
    """Return the upper-cased HTTP method, or raise a 400."""
    method = value.strip().upper()
    if method not in METHODS:
        raise bad_request(f"invalid {name} header: unsupported method {value!r}")
    return method


def check_retry_delay(value: str) -> str:
    """Return the expression if it parses, or raise a 400."""
    try:
        RetryDelayExpression(value)
    except ValueError as exc:
        raise bad_request(f"invalid Upstash-Retry-Delay header: {exc}") from None
    return value.strip()


def parse_flow_control(key: str, value: str | None) -> FlowControl:
    """Parse ``Upstash-Flow-Control-Value`` (``parallelism=2, rate=5, period=60s``)."""
    flow = FlowControl(key=key)
    for part in (value or "").split(","):
        if not part.strip():
            continue
        name, sep, raw = part.partition("=")
        name = name.strip().lower()
        if not sep:
            raise bad_request(f"invalid Upstash-Flow-Control-Value: {part.strip()!r}")
        if name == "parallelism":
            flow.parallelism = parse_int("Upstash-Flow-Control-Value parallelism", raw, 1)
        elif name == "rate":
            flow.rate = parse_int("Upstash-Flow-Control-Value rate", raw, 1)
        elif name == "period":
            seconds = parse_seconds("Upstash-Flow-Control-Value period", raw)
            if not 1 <= seconds <= _MAX_FLOW_PERIOD_SECONDS:
                raise bad_request("invalid Upstash-Flow-Control-Value: period out of range")
            flow.period = int(seconds)
        else:
            raise bad_request(f"invalid Upstash-Flow-Control-Value: unknown key {name!r}")
    return flow


def _callback_setting(config: CallbackConfig, prefix: str, setting: str, value: str) -> None:
    header = f"{prefix}{setting}"
    if setting == "method":
        config.method = check_method(header, value)
    elif setting == "timeout":
        config.timeout = parse_seconds(header, value)
    elif setting == "retries":
        config.retries = parse_int(header, value, 0, MAX_RETRIES)
    elif setting == "retry-delay":
        config.retry_delay = check_retry_delay(value)
    else:
        config.delay = parse_seconds(header, value)


def _callback_header(config: CallbackConfig, prefix: str, rest: str, value: str) -> None:
    if rest.lower().startswith("forward-"):
        add_value(config.headers, *_forwardable(rest[len("forward-") :], value))
    elif rest.lower() in _CALLBACK_SETTINGS:
        _callback_setting(config, prefix, rest.lower(), value)
    elif rest:
        # qstash-py turns callback_headers={"X": ..} into Upstash-Callback-X (no Forward-);
        # forwarding those too is what its users expect, checked as every forwarded header is.
        add_value(config.headers, *_forwardable(rest, value))


def parse_options(headers: Headers, default_retries: int = DEFAULT_RETRIES) -> PublishOptions:
    """Read every publish setting from ``headers``; raise a 400 on the first bad value."""
    opts = PublishOptions(retries=default_retries)
    delay: float | None = None
    flow_key: str | None = None
    forward_all = False
    for name, value in headers:
        lower = name.lower()
        if lower == "content-type":
            opts.headers.setdefault("Content-Type", []).append(_forwardable(name, value)[1])
            continue
        if not lower.startswith("upstash-"):
            continue
        key = lower[len("upstash-") :]
        if key.startswith("forward-"):
            add_value(opts.headers, *_forwardable(name[len("upstash-forward-") :], value))
        elif key.startswith("callback-"):
            _callback_header(opts.callback_config, "Upstash-Callback-", name[17:], value)
        elif key.startswith("failure-callback-"):
            _callback_header(
                opts.failure_callback_config, "Upstash-Failure-Callback-", name[25:], value
            )
        elif key == "method":
            opts.method = check_method(name, value)
        elif key == "retries":
            opts.retries = parse_int(name, value, 0, MAX_RETRIES)
        elif key == "retry-delay":
            opts.retry_delay = check_retry_delay(value)
        elif key == "timeout":
            opts.timeout = parse_seconds(name, value)
        elif key == "delay":
            delay = parse_seconds(name, value)
        elif key == "not-before":
            # Unix seconds; a bound well past any plan's longest delay keeps milliseconds (or
            # nanoseconds sent by mistake) from overflowing the store's 64-bit integers.
            opts.not_before = parse_int(name, value, 0, _LATEST_NOT_BEFORE)
        elif key == "callback":
            opts.callback = check_url("callback url", value)
        elif key == "failure-callback":
            opts.failure_callback = check_url("failure callback url", value)
        elif key == "deduplication-id":
            opts.deduplication_id = value.strip() or None
        elif key == "content-based-deduplication":
            opts.content_based_deduplication = parse_bool(name, value)
        elif key == "flow-control-key":
            flow_key = value.strip() or None
        elif key == "label":
            opts.labels = [part.strip() for part in value.split(",") if part.strip()]
        elif key == "redact-fields":
            opts.redact = value.strip() or None
        elif key == "header-forward":
            forward_all = parse_bool(name, value)
    if delay is not None:
        opts.delay = delay
    if flow_key is not None:
        opts.flow_control = parse_flow_control(flow_key, headers.get("Upstash-Flow-Control-Value"))
    if forward_all:
        for name, value in headers:
            lower = name.lower()
            if lower.startswith("upstash-") or lower in _NOT_FORWARDED or lower == "content-type":
                continue
            add_value(opts.headers, *_forwardable(name, value))
    return opts


def apply_overrides(opts: PublishOptions, headers: Headers) -> PublishOptions:
    """Apply the delivery settings a DLQ retry request may override."""
    parsed = parse_options(headers, opts.retries)
    for name, attr in (
        ("Upstash-Method", "method"),
        ("Upstash-Retries", "retries"),
        ("Upstash-Retry-Delay", "retry_delay"),
        ("Upstash-Timeout", "timeout"),
        ("Upstash-Delay", "delay"),
        ("Upstash-Not-Before", "not_before"),
        ("Upstash-Callback", "callback"),
        ("Upstash-Failure-Callback", "failure_callback"),
    ):
        if name in headers:
            setattr(opts, attr, getattr(parsed, attr))
    return opts
