"""Building ``Upstash-Signature`` tokens exactly as QStash does (spec section 3)."""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import time
from typing import Any

import jwt

from django_qstash_jobs.devserver.defaults import (
    DEFAULT_CURRENT_SIGNING_KEY,
    DEFAULT_NEXT_SIGNING_KEY,
)

CURRENT_KEY = DEFAULT_CURRENT_SIGNING_KEY
NEXT_KEY = DEFAULT_NEXT_SIGNING_KEY
RECEIVER_URL = "http://testserver/jobs/receive/"


def qstash_token(
    body: bytes, /, *, url: str = RECEIVER_URL, key: str = CURRENT_KEY, **overrides: Any
) -> str:
    """A JWT with QStash's claims; ``overrides`` replace claims (``None`` removes one)."""
    now = int(time.time())
    claims: dict[str, Any] = {
        "iss": "Upstash",
        "sub": url,
        "iat": now,
        "exp": now + 300,
        "nbf": 0,
        "jti": "jwt_" + secrets.token_hex(12),
        # QStash pads the hash; receivers must accept it padded or not.
        "body": base64.urlsafe_b64encode(hashlib.sha256(body).digest()).decode(),
    }
    for name, value in overrides.items():
        if value is None:
            claims.pop(name, None)
        else:
            claims[name] = value
    return jwt.encode(claims, key, algorithm="HS256")


def unsigned_token(body: bytes, *, url: str = RECEIVER_URL) -> str:
    """An ``alg: none`` token: well-formed claims, no signature."""
    header = base64.urlsafe_b64encode(b'{"alg":"none","typ":"JWT"}').rstrip(b"=")
    claims = jwt.decode(qstash_token(body, url=url), options={"verify_signature": False})
    payload = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=")
    return f"{header.decode()}.{payload.decode()}."
