"""``Upstash-Signature`` JWTs, minted fresh for every delivery attempt."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import math
import time

from .ids import jwt_id

TOKEN_LIFETIME_SECONDS = 300


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


# Minting by hand is several times faster than PyJWT's encode and this runs on every attempt;
# the tests verify the result with PyJWT (through qstash.Receiver).
_HEADER = _b64url(b'{"alg":"HS256","typ":"JWT"}')


def body_hash(body: bytes) -> str:
    """Return the padded base64url SHA-256 of ``body`` (the ``body`` claim)."""
    return base64.urlsafe_b64encode(hashlib.sha256(body).digest()).decode("ascii")


def sign(key: str, url: str, body: bytes) -> str:
    """Return a JWT for a request with ``body`` to ``url``, signed with ``key``.

    ``iat`` is floored so that it never runs ahead of the receiver's clock (PyJWT rejects
    tokens issued in the future), and ``nbf`` is 0 as Upstash sets it, to survive clock skew.
    """
    issued = math.floor(time.time())
    claims = {
        "iss": "Upstash",
        "sub": url,
        "iat": issued,
        "exp": issued + TOKEN_LIFETIME_SECONDS,
        "nbf": 0,
        "jti": jwt_id(),
        "body": body_hash(body),
    }
    payload = _b64url(json.dumps(claims, separators=(",", ":")).encode("utf-8"))
    signing_input = f"{_HEADER}.{payload}"
    mac = hmac.new(key.encode("utf-8"), signing_input.encode("ascii"), hashlib.sha256)
    return f"{signing_input}.{_b64url(mac.digest())}"
