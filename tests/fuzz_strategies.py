"""Hypothesis strategies for requests no honest QStash sends: the receiver's fuzz tests and the
reliability suite's fuzz over HTTP draw from the same ones."""

from __future__ import annotations

import base64
import json
from typing import Any

from hypothesis import strategies as st

#: Printable ASCII: what any HTTP client lets through as a header value.
HEADER_TEXT = st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=200)

#: Claims of a token, each one missing, of QStash's shape, or of the wrong type.
CLAIMS = st.fixed_dictionaries(
    {},
    optional={
        "iss": st.one_of(st.just("Upstash"), st.text(max_size=10), st.integers()),
        "sub": st.one_of(st.just("http://testserver/jobs/receive/"), st.text(max_size=40)),
        "exp": st.one_of(st.integers(), st.text(max_size=5)),
        "nbf": st.one_of(st.just(0), st.integers()),
        "iat": st.integers(),
        "body": st.one_of(st.text(max_size=50), st.integers()),
        "aud": st.text(max_size=5),
    },
)

#: Algorithms a forger may claim: QStash's, stronger-looking ones, and none at all.
ALGORITHMS = st.sampled_from(["HS256", "none", "HS512", "RS256", ""])

#: Any JSON document. Floats include Infinity and NaN, which Python's JSON reads and writes.
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=10), children, max_size=3)
    ),
    max_leaves=8,
)


def _segment(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def forged_token(claims: dict[str, Any], alg: str, signature: bytes) -> str:
    """A well-formed JWT with ``claims``, signed with bytes that are not QStash's signature."""
    header = _segment(json.dumps({"alg": alg, "typ": "JWT"}).encode())
    return f"{header}.{_segment(json.dumps(claims).encode())}.{_segment(signature)}"
