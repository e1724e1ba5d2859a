"""Verifying QStash's ``Upstash-Signature`` JWT against the raw request body.

Done here rather than with ``qstash.Receiver``: the SDK's ``clock_tolerance`` has no effect, it
needs the body as ``str`` (so binary bodies cannot be verified) and a missing claim escapes as a
bare ``KeyError``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Sequence
from typing import Any

import jwt

from django_qstash_jobs.exceptions import SignatureError

_REQUIRED_CLAIMS = ["iss", "sub", "exp", "nbf", "body"]


def body_hash(body: bytes) -> str:
    """The ``body`` claim for ``body``: unpadded base64url of its SHA-256."""
    return base64.urlsafe_b64encode(hashlib.sha256(body).digest()).decode().rstrip("=")


def verify_signature(
    token: str, body: bytes, *, keys: Sequence[str], url: str, leeway: float = 0
) -> dict[str, Any]:
    """Return the token's claims if it was signed for ``url`` and ``body``, else raise.

    Tries each key in order (current, then next, to survive a rotation). Raises
    :class:`SignatureError` with the reason, which is for logs, not for the response.
    """
    if not token:
        raise SignatureError("missing Upstash-Signature header")
    claims = _decode(token, keys, leeway)
    if claims["sub"] != url:
        raise SignatureError(f"signed for {claims['sub']!r}, received at {url!r}")
    claimed_hash = claims["body"]
    # Compared as bytes: compare_digest refuses str with non-ASCII characters.
    if not isinstance(claimed_hash, str) or not hmac.compare_digest(
        claimed_hash.rstrip("=").encode(), body_hash(body).encode()
    ):
        raise SignatureError("body does not match the signed hash")
    return claims


def _decode(token: str, keys: Sequence[str], leeway: float) -> dict[str, Any]:
    if not keys:
        raise SignatureError("no signing keys configured")
    for key in keys:
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key,
                algorithms=["HS256"],
                issuer="Upstash",
                leeway=leeway,
                options={"require": _REQUIRED_CLAIMS},
            )
        except jwt.InvalidSignatureError:
            continue  # Perhaps signed with the next key.
        except jwt.PyJWTError as exc:
            raise SignatureError(f"invalid token: {exc}") from None
        return claims
    raise SignatureError("signature matches none of the signing keys")
