"""Random identifiers for messages, schedules, signing keys and JWTs."""

from __future__ import annotations

import itertools
import secrets
import threading
import time

_ALPHABET = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"


def random_token(length: int) -> str:
    """Return ``length`` random base58 characters (URL-safe, no look-alike characters)."""
    # One byte of entropy per character is more than the 5.86 bits base58 needs, so the
    # slight bias of the modulo is irrelevant; this is much faster than secrets.choice.
    number = int.from_bytes(secrets.token_bytes(length), "big")
    out = []
    for _ in range(length):
        number, index = divmod(number, 58)
        out.append(_ALPHABET[index])
    return "".join(out)


def message_id() -> str:
    """Return a new message id."""
    return "msg_" + random_token(32)


def schedule_id() -> str:
    """Return a new schedule id."""
    return "scd_" + random_token(24)


def signing_key() -> str:
    """Return a new signing key in Upstash's ``sig_`` format."""
    return "sig_" + random_token(28)


def jwt_id() -> str:
    """Return a new JWT id."""
    return "jwt_" + random_token(28)


_dlq_lock = threading.Lock()
_dlq_counter = itertools.count()


def dlq_id() -> str:
    """Return a DLQ id shaped like Upstash's ``<ms timestamp>-<sequence>``."""
    with _dlq_lock:
        return f"{int(time.time() * 1000)}-{next(_dlq_counter)}"
