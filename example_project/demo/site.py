"""The demo's side of HTTP: a browser-like client of the site, and signed webhooks."""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import threading
import time
import uuid
from dataclasses import dataclass, field
from html import unescape
from typing import Any

import requests

_ERRORS = re.compile(r'<ul class="errorlist[^"]*"[^>]*>(.*?)</ul>', re.DOTALL)
_TAGS = re.compile(r"<[^>]+>")


class DemoError(Exception):
    """A step of a scenario went wrong; the message says what."""


class SiteClient:
    """Fills in the site's forms as a browser would: cookies, CSRF token, redirects."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self.session = requests.Session()

    def get(self, path: str, **kwargs: Any) -> requests.Response:
        return self.session.get(self.base_url + path, timeout=10, **kwargs)

    def page(self, path: str) -> str:
        """GET a page that must render; return its HTML."""
        response = self.get(path)
        if response.status_code != 200:
            raise DemoError(f"GET {path} answered {response.status_code}")
        return response.text

    def submit(self, path: str, data: dict[str, str], form_page: str | None = None) -> str:
        """POST a form; return where the site redirected to (a form with errors raises)."""
        self.page(form_page or path)  # sets the CSRF cookie, as displaying the form does
        token = self.session.cookies.get("csrftoken", "")
        response = self.session.post(
            self.base_url + path,
            data={**data, "csrfmiddlewaretoken": token},
            headers={"Referer": self.base_url + (form_page or path)},
            allow_redirects=False,
            timeout=10,
        )
        if response.status_code not in (301, 302, 303):
            errors = [unescape(_TAGS.sub(" ", match)) for match in _ERRORS.findall(response.text)]
            detail = " ".join(" ".join(errors).split()) or response.text[:200]
            raise DemoError(f"POST {path} answered {response.status_code}: {detail}")
        return str(response.headers["Location"])

    def login(self, username: str, password: str) -> None:
        self.submit("/accounts/login/", {"username": username, "password": password})


@dataclass
class StreamRecord:
    """What a Server-Sent Events stream sent, read by a background thread."""

    events: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    error: str = ""
    finished: threading.Event = field(default_factory=threading.Event)

    @property
    def last(self) -> dict[str, Any]:
        return self.events[-1][1] if self.events else {}

    def describe(self) -> str:
        names = [name for name, _ in self.events]
        return f"{names.count('status')} status event(s), then {names[-1] if names else 'none'}"


def follow_events(client: SiteClient, job_id: str, timeout: float = 60) -> StreamRecord:
    """Read ``jobs/status/<job_id>/events/`` in a thread, as the page's EventSource does."""
    record = StreamRecord()
    session = requests.Session()
    session.cookies.update(client.session.cookies)  # the same logged-in user

    def read() -> None:
        try:
            url = f"{client.base_url}/jobs/status/{job_id}/events/"
            with session.get(url, stream=True, timeout=timeout) as response:
                response.raise_for_status()
                name = ""
                for line in response.iter_lines(decode_unicode=True):
                    if line.startswith("event: "):
                        name = line.removeprefix("event: ")
                    elif line.startswith("data: "):
                        record.events.append((name, json.loads(line.removeprefix("data: "))))
                        if name == "done":
                            return
        except (requests.RequestException, ValueError) as exc:
            record.error = f"{type(exc).__name__}: {exc}"
        finally:
            record.finished.set()

    threading.Thread(target=read, name=f"events-{job_id[:8]}", daemon=True).start()
    return record


def _hmac(secret: str, message: bytes) -> str:
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def post_stripe_event(base_url: str, secret: str, event: dict[str, Any]) -> str:
    """POST a Stripe event signed as Stripe does; return the job id the endpoint answers."""
    body = json.dumps(event).encode()
    timestamp = int(time.time())
    signature = _hmac(secret, f"{timestamp}.".encode() + body)
    response = requests.post(
        f"{base_url}/jobs/webhooks/stripe/",
        data=body,
        headers={
            "Content-Type": "application/json",
            "Stripe-Signature": f"t={timestamp},v1={signature}",
        },
        timeout=10,
    )
    return _accepted(response)


def post_github_event(base_url: str, secret: str, event: str, payload: dict[str, Any]) -> str:
    """POST a GitHub webhook signed with X-Hub-Signature-256; return the job id."""
    body = json.dumps(payload).encode()
    response = requests.post(
        f"{base_url}/jobs/webhooks/github/",
        data=body,
        headers={
            "Content-Type": "application/json",
            "X-GitHub-Event": event,
            "X-GitHub-Delivery": str(uuid.uuid4()),
            "X-Hub-Signature-256": "sha256=" + _hmac(secret, body),
        },
        timeout=10,
    )
    return _accepted(response)


def _accepted(response: requests.Response) -> str:
    if response.status_code != 200:
        raise DemoError(f"The webhook endpoint answered {response.status_code}: {response.text}")
    job_id: str = response.json()["job_id"]
    return job_id
