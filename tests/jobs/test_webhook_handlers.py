"""process_webhook and process_stripe_webhook: handlers by source and event, and the signal."""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from django_qstash_jobs import (
    JOB_TYPES,
    JobContext,
    get_job_execution_by_job_id,
    job_dispatcher,
    stripe_handler,
    webhook_handler,
    webhook_received,
)
from django_qstash_jobs.jobs import webhooks
from django_qstash_jobs.models import JobExecution, JobStatus
from django_qstash_jobs.registry import registry

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def isolated_handlers() -> Iterator[None]:
    """Handlers registered by a test are gone after it."""
    saved = (
        list(webhooks.webhook_handlers._registrations),
        list(webhooks.stripe_handlers._registrations),
    )
    yield
    webhooks.webhook_handlers._registrations, webhooks.stripe_handlers._registrations = saved


def run(job_type: str, payload: dict[str, Any], **options: Any) -> JobExecution:
    execution = get_job_execution_by_job_id(
        job_dispatcher.enqueue(job_type, payload, None, options)
    )
    assert execution is not None
    return execution


def test_handlers_of_the_source_and_event_run_with_the_payload_and_context() -> None:
    seen: list[tuple[str, str, Any, int]] = []

    @webhook_handler("github", "pull_request")
    def on_pr(payload: Any, ctx: JobContext) -> None:
        seen.append((payload.source, payload.event, payload.data, ctx.attempt))

    @webhook_handler("github", "push")
    def on_push(payload: Any, ctx: JobContext) -> None:
        seen.append(("push", "", None, 0))

    @webhook_handler("gitlab", "pull_request")
    def on_gitlab(payload: Any, ctx: JobContext) -> None:
        seen.append(("gitlab", "", None, 0))

    execution = run(
        JOB_TYPES.PROCESS_WEBHOOK,
        {"source": "github", "event": "pull_request", "data": {"number": 7}},
    )

    assert execution.status == JobStatus.COMPLETED
    assert seen == [("github", "pull_request", {"number": 7}, 1)]
    assert execution.result == {
        "source": "github",
        "event": "pull_request",
        "handlers": [f"{__name__}.{on_pr.__qualname__}"],
    }


def test_an_event_pattern_matches_several_events() -> None:
    events: list[str] = []

    @webhook_handler("github", "pull_request*")
    def on_any_pr(payload: Any, ctx: JobContext) -> None:
        events.append(payload.event)

    for event in ("pull_request", "pull_request_review", "push"):
        run(JOB_TYPES.PROCESS_WEBHOOK, {"source": "github", "event": event, "data": {}})

    assert events == ["pull_request", "pull_request_review"]


def test_the_signal_is_sent_for_every_webhook() -> None:
    received: list[dict[str, Any]] = []

    def receiver(sender: Any, **kwargs: Any) -> None:
        received.append(kwargs)

    webhook_received.connect(receiver)
    try:
        run(JOB_TYPES.PROCESS_WEBHOOK, {"source": "shop", "event": "order.paid", "data": [1, 2]})
        run(
            JOB_TYPES.PROCESS_STRIPE_WEBHOOK,
            {"event_type": "invoice.paid", "event_data": {"id": "in_1"}},
        )
    finally:
        webhook_received.disconnect(receiver)

    assert [(kw["source"], kw["event"], kw["data"]) for kw in received] == [
        ("shop", "order.paid", [1, 2]),
        ("stripe", "invoice.paid", {"id": "in_1"}),
    ]
    assert isinstance(received[0]["ctx"], JobContext)


def test_an_event_without_handlers_completes() -> None:
    execution = run(JOB_TYPES.PROCESS_WEBHOOK, {"source": "github", "event": "ping"})
    assert execution.status == JobStatus.COMPLETED
    assert execution.result["handlers"] == []


def test_a_failing_handler_makes_the_job_retry() -> None:
    attempts: list[int] = []

    @webhook_handler("github", "push")
    def flaky(payload: Any, ctx: JobContext) -> None:
        attempts.append(ctx.attempt)
        if ctx.attempt == 1:
            raise ConnectionError("downstream unavailable")

    execution = run(JOB_TYPES.PROCESS_WEBHOOK, {"source": "github", "event": "push"}, retries=2)

    assert execution.status == JobStatus.COMPLETED
    assert attempts == [1, 2]


def test_stripe_handlers_get_the_stripe_payload() -> None:
    seen: list[tuple[str, dict[str, Any], str | None]] = []

    @stripe_handler("customer.subscription.updated")
    def on_subscription(payload: Any, ctx: JobContext) -> None:
        seen.append((payload.event_type, payload.event_data, payload.ip_address))

    @stripe_handler("invoice.*")
    def on_invoice(payload: Any, ctx: JobContext) -> None:
        seen.append(("invoice", {}, None))

    # Generic handlers of source "stripe" are for process_webhook jobs, not these.
    @webhook_handler("stripe", "*")
    def generic(payload: Any, ctx: JobContext) -> None:
        seen.append(("generic", {}, None))

    execution = run(
        JOB_TYPES.PROCESS_STRIPE_WEBHOOK,
        {
            "eventType": "customer.subscription.updated",
            "eventData": {"id": "sub_1", "status": "active"},
            "ipAddress": "3.18.12.63",
        },
    )

    assert execution.status == JobStatus.COMPLETED
    assert seen == [
        ("customer.subscription.updated", {"id": "sub_1", "status": "active"}, "3.18.12.63")
    ]
    assert execution.result["handlers"] == [f"{__name__}.{on_subscription.__qualname__}"]


def appending(calls: list[str], label: str) -> Any:
    """A handler that appends ``label`` to ``calls``: one code, told apart by what it captured."""

    def handler(payload: Any, ctx: JobContext) -> None:
        calls.append(label)

    return handler


@pytest.mark.parametrize(
    ("labels", "expected"),
    [
        # The same function registered twice (its module imported again) runs once.
        (["again", "again"], ["again"]),
        # One factory's handlers for other targets all run.
        (["slack", "audit"], ["slack", "audit"]),
    ],
)
def test_a_handler_registered_again_replaces_it_and_another_is_added(
    labels: list[str], expected: list[str]
) -> None:
    calls: list[str] = []
    for label in labels:
        webhook_handler("github", "push")(appending(calls, label))

    run(JOB_TYPES.PROCESS_WEBHOOK, {"source": "github", "event": "push"})

    assert calls == expected


def test_two_lambdas_for_one_event_both_run() -> None:
    calls: list[str] = []
    webhook_handler("github", "push")(lambda payload, ctx: calls.append("slack"))
    webhook_handler("github", "push")(lambda payload, ctx: calls.append("audit"))

    run(JOB_TYPES.PROCESS_WEBHOOK, {"source": "github", "event": "push"})

    assert calls == ["slack", "audit"]


class Forwarder:
    def __init__(self, target: str, calls: list[str]) -> None:
        self.target, self.calls = target, calls

    def handle(self, payload: Any, ctx: JobContext) -> None:
        self.calls.append(self.target)


def test_one_method_of_two_instances_runs_for_each() -> None:
    calls: list[str] = []
    stripe_handler("invoice.paid")(Forwarder("crm", calls).handle)
    stripe_handler("invoice.paid")(Forwarder("billing", calls).handle)

    run(JOB_TYPES.PROCESS_STRIPE_WEBHOOK, {"event_type": "invoice.paid"})

    assert calls == ["crm", "billing"]


_LOGGED = """
import functools
from django_qstash_jobs import register_job, stripe_handler

def logged(function):
    # A wrapper that captures the function, and an object whose repr holds its address.
    marker = object()

    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        assert marker
        return function(*args, **kwargs)

    return wrapper
"""


def import_twice(path: Path, source: str) -> None:
    """Run a module twice, as a second import of it (under another name, a test) does."""
    path.write_text(_LOGGED + source)
    for _ in range(2):
        spec = importlib.util.spec_from_file_location(path.stem, path)
        assert spec is not None and spec.loader is not None
        spec.loader.exec_module(importlib.util.module_from_spec(spec))


def test_a_decorated_handler_whose_module_runs_twice_is_registered_once(tmp_path: Path) -> None:
    import_twice(
        tmp_path / "twice_hooks.py",
        '@stripe_handler("twice.event")\n@logged\ndef on_event(payload, ctx):\n    pass\n',
    )
    assert len(webhooks.stripe_handlers.matching("stripe", "twice.event")) == 1


def test_a_decorated_job_whose_module_runs_twice_is_no_conflict(tmp_path: Path) -> None:
    try:
        import_twice(
            tmp_path / "twice_jobs.py",
            '@register_job("twice_job")\n@logged\ndef twice_job(payload, ctx):\n    pass\n',
        )
        assert "twice_job" in registry
    finally:
        registry.unregister("twice_job")


def test_two_handlers_behind_one_decorator_both_run() -> None:
    def logged(function: Any) -> Any:
        # Without functools.wraps: both wrappers have one name and one place of definition.
        def wrapper(payload: Any, ctx: JobContext) -> None:
            function(payload, ctx)

        return wrapper

    calls: list[str] = []

    @webhook_handler("github", "push")
    @logged
    def to_slack(payload: Any, ctx: JobContext) -> None:
        calls.append("slack")

    @webhook_handler("github", "push")
    @logged
    def to_audit(payload: Any, ctx: JobContext) -> None:
        calls.append("audit")

    run(JOB_TYPES.PROCESS_WEBHOOK, {"source": "github", "event": "push"})

    assert calls == ["slack", "audit"]
