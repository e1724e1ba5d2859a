"""Destinations taken from the raw request target, and name validation."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import unquote

from .errors import bad_request, not_found
from .options import check_url

if TYPE_CHECKING:
    from .headers import Headers
    from .httpd import Request

_NAME_MAX = 200
NAME = re.compile(rf"^[A-Za-z0-9._-]{{1,{_NAME_MAX}}}$")
_ONE_SLASH = re.compile(r"^(https?):/(?!/)", re.IGNORECASE)
_SCHEME_ERROR = "invalid destination url: endpoint has invalid scheme, add http:// or https://"


@dataclass(frozen=True)
class Destination:
    """Either a URL or the name of a URL group."""

    url: str | None = None
    group: str | None = None

    @property
    def text(self) -> str:
        """The destination as the client wrote it."""
        return self.url if self.url is not None else str(self.group)


def split_query(query: str) -> tuple[str, list[tuple[str, str]], str | None]:
    """Split a raw query into (destination's own query, ``upstash-*`` params, token).

    The destination's parameters are kept raw and in order, so its URL is signed and
    delivered exactly as published.
    """
    kept: list[str] = []
    config: list[tuple[str, str]] = []
    token: str | None = None
    for part in query.split("&") if query else []:
        if not part:
            continue
        raw_name, _, raw_value = part.partition("=")
        name = unquote(raw_name.replace("+", " "))
        lower = name.lower()
        if lower == "qstash_token":
            token = unquote(raw_value.replace("+", " "))
        elif lower.startswith("upstash-"):
            config.append((name, unquote(raw_value.replace("+", " "))))
        else:
            kept.append(part)
    return "&".join(kept), config, token


def parse_destination(raw_path_rest: str, own_query: str) -> Destination:
    """Read a destination from the path remainder and the destination's query string."""
    text = _ONE_SLASH.sub(lambda m: m.group(1) + "://", raw_path_rest)
    if text.lower().startswith(("http://", "https://")):
        url = text + ("?" + own_query if own_query else "")
        return Destination(url=check_url("destination url", url))
    name = unquote(text)
    if NAME.match(name) and not own_query:
        return Destination(group=name)
    raise bad_request(_SCHEME_ERROR)


def unknown_group_error(name: str) -> Exception:
    """The error for a destination that is neither a URL nor a known URL group."""
    if "." in name:
        # Most likely a host name without a scheme rather than a URL group.
        return bad_request(_SCHEME_ERROR)
    return not_found(f"url group {name} not found")


def check_name(kind: str, name: str) -> str:
    """Validate a queue, URL group or schedule id; raise a 400 otherwise."""
    if not name:
        raise bad_request(f"{kind} is required")
    if len(name) > _NAME_MAX:
        raise bad_request(f"invalid {kind}: {len(name)} characters, at most {_NAME_MAX} allowed")
    if not NAME.match(name):
        raise bad_request(
            f"invalid {kind} {name!r}: only alphanumerics, '-', '_' and '.' are allowed"
        )
    return name


def read_publish(request: Request, raw_dest: str) -> tuple[Destination, Headers]:
    """A publish's destination, and its headers with the ``upstash-*`` query parameters."""
    own_query, config, _token = split_query(request.query)
    return parse_destination(raw_dest, own_query), request.headers.merged(config)
