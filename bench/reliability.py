"""The reliability suite: faults injected into real runs, every job counted.

    python bench/reliability.py [--short] [--skip-postgres-restart] [--only SCENARIO ...]

gunicorn (2 workers) runs the receiver on PostgreSQL, the local QStash server delivers to it.
Each scenario prints what it sent, how many handler runs it saw, and how many jobs were lost
(never completed) or duplicated (a side effect twice); any loss or duplicate fails the run.

1. every job delivered twice at the same time: each handler runs once;
2. a web worker killed with SIGKILL mid-job: the job is taken over when its lease runs out,
   and its side effect (idempotent by key) happens once;
3. the QStash server killed and restarted mid-run: nothing lost;
4. PostgreSQL crashed (immediate stop) and restarted mid-run: each enqueue fails clearly or
   succeeds, nothing accepted lost;
5. QStash unreachable at enqueue: EnqueueError, rows pending, all published by republish_jobs;
6. every attempt outlives its worker (killed by gunicorn's timeout, as a platform's request
   timeout would): once QStash gives up, its failure notice fails each job; none stays running;
7. a hypothesis fuzz over HTTP: unsigned, forged, tampered, wrongly claimed and validly signed
   junk requests, with random methods and headers, at the live receiver: no handler runs, no job
   changes, no 5xx and no traceback. tests/test_receiver_fuzz.py fuzzes the same in-process.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ROOT, free_port, scratch_dir, setup_django, start_gunicorn, stop


@dataclass
class Counts:
    scenario: str
    sent: int
    run: int
    lost: int
    duplicated: int
    note: str = ""
    #: Answers that broke a rule of their own (a 5xx, a traceback shown to the caller).
    unexpected: int = 0

    @property
    def ok(self) -> bool:
        return self.lost == 0 and self.duplicated == 0 and self.unexpected == 0


class Site:
    """The receiver under gunicorn and the local QStash server, each restartable."""

    def __init__(
        self, workdir: Path, backoff_scale: float, lease_seconds: int, worker_timeout: int = 30
    ) -> None:
        from tests.servers import DevServerProcess

        self.qstash = DevServerProcess(
            db_path=workdir / f"qstash-{time.monotonic_ns()}.sqlite3", backoff_scale=backoff_scale
        )
        self.port = free_port()
        self.receiver_url = f"http://127.0.0.1:{self.port}/jobs/receive/"
        self.lease_seconds = lease_seconds
        self.worker_timeout = worker_timeout
        self.gunicorn: subprocess.Popen[bytes] | None = None

    def start(self) -> Site:
        self.qstash.start()
        environment = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "bench.settings",
            "QSTASH_URL": self.qstash.url,
            "QSTASH_RECEIVER_URL": self.receiver_url,
            "QSTASH_LEASE_SECONDS": str(self.lease_seconds),
            "PYTHONPATH": str(ROOT),
        }
        # Killed workers log a traceback each: kept beside the QStash server's log, not shown.
        self.gunicorn = start_gunicorn(
            self.port,
            environment,
            timeout=self.worker_timeout,
            log=self.qstash.db_path.with_name("gunicorn.log"),
        )
        return self

    def stop(self) -> None:
        if self.gunicorn:
            stop(self.gunicorn)
        self.qstash.stop()

    @contextmanager
    def jobs_settings(self) -> Iterator[None]:
        from django.test import override_settings

        from tests.servers import qstash_settings

        live = self.receiver_url.removesuffix("/jobs/receive/")
        with override_settings(
            QSTASH_JOBS=qstash_settings(self.qstash.url, live, LEASE_SECONDS=self.lease_seconds)
        ):
            yield


@contextmanager
def site(
    workdir: Path, backoff_scale: float = 0.0, lease_seconds: int = 300, worker_timeout: int = 30
) -> Iterator[Site]:
    running = Site(workdir, backoff_scale, lease_seconds, worker_timeout).start()
    try:
        with running.jobs_settings():
            yield running
    finally:
        running.stop()


def wait_until(condition: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.1)
    return condition()


def tally(name: str, job_ids: list[str], note: str = "", effect_label: str = "start") -> Counts:
    """Count completions and side effects of ``job_ids`` in the database."""
    from django_qstash_jobs.models import JobExecution, JobStatus
    from tests.testapp.models import SideEffect

    completed = JobExecution.objects.filter(job_id__in=job_ids, status=JobStatus.COMPLETED).count()
    runs = SideEffect.objects.filter(job_id__in=job_ids, label="start").count()
    duplicated = sum(1 for n in effects_per_job(job_ids, effect_label).values() if n > 1)
    return Counts(name, len(job_ids), runs, len(job_ids) - completed, duplicated, note)


def effects_per_job(job_ids: list[str], label: str) -> dict[str, int]:
    """How many side effects labelled ``label`` each job of ``job_ids`` left."""
    from django.db.models import Count

    from tests.testapp.models import SideEffect

    return dict(
        SideEffect.objects.filter(job_id__in=job_ids, label=label)
        .values_list("job_id")
        .annotate(n=Count("id"))
        .values_list("job_id", "n")
    )


def all_completed(job_ids: list[str]) -> Callable[[], bool]:
    from django_qstash_jobs.models import JobExecution, JobStatus

    def check() -> bool:
        done = JobExecution.objects.filter(job_id__in=job_ids, status=JobStatus.COMPLETED)
        return done.count() == len(job_ids)

    return check


def started_at_least(job_ids: list[str], n: int) -> Callable[[], bool]:
    from tests.testapp.models import SideEffect

    return lambda: SideEffect.objects.filter(job_id__in=job_ids, label="start").count() >= n


def effects(count: int, seconds: float) -> list[dict[str, object]]:
    return [{"job_type": "effect", "payload": {"seconds": seconds}} for _ in range(count)]


def duplicate_deliveries(workdir: Path, jobs: int) -> Counts:
    """Every job posted twice at once, signed, straight at the receiver."""
    from django_qstash_jobs.models import JobExecution, JobStatus
    from tests.signing_helpers import qstash_token

    with site(workdir) as running:
        rows = [
            JobExecution(job_type="effect", payload={"seconds": 0.002}, status=JobStatus.QUEUED)
            for _ in range(jobs)
        ]
        JobExecution.objects.bulk_create(rows)
        connections: dict[int, http.client.HTTPConnection] = {}

        def post(row: JobExecution) -> int:
            connection = connections.setdefault(
                threading.get_ident(), http.client.HTTPConnection("127.0.0.1", running.port)
            )
            body = json.dumps({"job_id": row.job_id}).encode()
            connection.request(
                "POST",
                "/jobs/receive/",
                body,
                {"Upstash-Signature": qstash_token(body, url=running.receiver_url),
                 "Content-Type": "application/json"},
            )  # fmt: skip
            response = connection.getresponse()
            response.read()
            return response.status

        twice = [row for row in rows for _ in range(2)]
        with ThreadPoolExecutor(16) as pool:
            statuses = list(pool.map(post, twice))
        ids = [row.job_id for row in rows]
        wait_until(all_completed(ids), 30)
        busy = statuses.count(503)
    return tally("each job delivered twice at once", ids, f"{busy} answered busy (503)")


def worker_killed(workdir: Path, jobs: int) -> Counts:
    """SIGKILL one gunicorn worker while jobs run; leases expire and the jobs are taken over."""
    from django_qstash_jobs import job_dispatcher

    # A 2 s lease; QStash's first retry comes after 12 s x 0.25 = 3 s, past the lease.
    with site(workdir, backoff_scale=0.25, lease_seconds=2) as running:
        ids = job_dispatcher.enqueue_many(effects(jobs, 0.3))
        wait_until(started_at_least(ids, 4), 30)
        assert running.gunicorn is not None
        from common import worker_pids

        victim = worker_pids(running.gunicorn.pid)[0]
        os.kill(victim, signal.SIGKILL)
        wait_until(all_completed(ids), 120)
    return tally(
        "web worker killed mid-job", ids, "side effect counted by key", effect_label="effect"
    )


def qstash_restarted(workdir: Path, jobs: int) -> Counts:
    """kill -9 the QStash server mid-run and start it again on the same database."""
    from django_qstash_jobs import job_dispatcher

    with site(workdir) as running:
        ids = job_dispatcher.enqueue_many(effects(jobs, 0.005))
        wait_until(started_at_least(ids, jobs // 10), 30)
        running.qstash.kill()
        running.qstash.start()
        wait_until(all_completed(ids), 120)
    return tally("QStash server killed and restarted", ids)


def attempts_cut_short(workdir: Path, jobs: int) -> Counts:
    """Every attempt outlives its worker (gunicorn kills it, as a platform's timeout would).

    The jobs have no retries. gunicorn's timeout ends the worker with SystemExit, which the
    receiver records as the job's failure before the worker exits; a worker killed outright
    (SIGKILL, or a platform that does not ask) records nothing, and QStash's failure notice
    fails the job once the dead worker's lease has run out. Lost: a job left unfinished.
    Duplicated: a handler started twice.
    """
    from django_qstash_jobs import job_dispatcher
    from django_qstash_jobs.models import JobExecution, JobStatus

    # Real seconds (scale 1): QStash waits as long as the busy answer's Retry-After says.
    with site(workdir, backoff_scale=1.0, lease_seconds=3, worker_timeout=1):
        ids = job_dispatcher.enqueue_many(
            [{"job_type": "sleep", "payload": {"seconds": 30}} for _ in range(jobs)]
        )
        given_up = JobExecution.objects.filter(job_id__in=ids, status=JobStatus.FAILED)
        wait_until(lambda: given_up.count() == jobs, 60 + 5 * jobs)
        failed = given_up.count()
        by_exit = given_up.filter(error__startswith="SystemExit").count()
    starts = effects_per_job(ids, "sleep")
    return Counts(
        "every attempt cut short by a timeout",
        jobs,
        sum(starts.values()),
        jobs - failed,
        sum(1 for n in starts.values() if n > 1),
        f"{by_exit} failed as their worker exited, {failed - by_exit} by QStash's notice",
    )


def random_requests(workdir: Path, requests: int) -> Counts:
    """Requests no honest QStash sends, made by hypothesis, over HTTP at the live receiver.

    A few queued jobs are the targets: most bodies name one of them. Run: handlers started.
    Lost: a target whose row changed. Unexpected: a 5xx, or a traceback in an answer.
    """
    from collections import Counter

    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    from django_qstash_jobs.models import JobExecution, JobStatus
    from tests.fuzz_strategies import ALGORITHMS, CLAIMS, HEADER_TEXT, forged_token
    from tests.signing_helpers import qstash_token
    from tests.testapp.models import SideEffect

    with site(workdir) as running:
        targets = [
            JobExecution(job_type="effect", payload={"seconds": 0.0}, status=JobStatus.QUEUED,
                         message_id=f"msg_fuzz_{index}")
            for index in range(5)
        ]  # fmt: skip
        JobExecution.objects.bulk_create(targets)
        ids = [row.job_id for row in targets]
        url = running.receiver_url
        naming_a_job = st.sampled_from(ids).map(
            lambda job_id: json.dumps({"job_id": job_id, "job_type": "effect"}).encode()
        )
        any_body = st.one_of(naming_a_job, st.binary(max_size=2000))
        bad_claim = st.sampled_from(
            [{"sub": url + "x"}, {"sub": None}, {"iss": "Upstosh"}, {"exp": 1}, {"nbf": 2**40},
             {"body": "AAAA"}, {"key": "sig_" + "0" * 30}]
        )  # fmt: skip
        # (body, Upstash-Signature or None) pairs, from no signature at all to a valid one
        # on junk no publish of ours could have sent.
        signed = st.one_of(
            st.tuples(any_body, st.none() | HEADER_TEXT),
            st.builds(
                lambda body, claims, alg, signature: (body, forged_token(claims, alg, signature)),
                naming_a_job, CLAIMS, ALGORITHMS, st.binary(max_size=40),
            ),
            st.builds(lambda body, claim: (body, qstash_token(body, url=url, **claim)),
                      naming_a_job, bad_claim),
            st.builds(lambda body, other: (body, qstash_token(other, url=url)),
                      naming_a_job, st.binary(max_size=50)),
            st.binary(max_size=2000).map(lambda body: (body, qstash_token(body, url=url))),
        )  # fmt: skip
        method = st.sampled_from(["POST"] * 6 + ["GET", "PUT", "DELETE", "PATCH", "HEAD"])
        extra_headers = st.lists(
            st.tuples(
                st.sampled_from(["Upstash-Retried", "Upstash-Message-Id", "Upstash-Schedule-Id",
                                 "Upstash-Signature", "Content-Type", "Content-Encoding",
                                 "X-Forwarded-Proto", "X-Anything"]),
                HEADER_TEXT,
            ),
            max_size=4,
        )  # fmt: skip
        statuses: Counter[int] = Counter()
        broken: list[str] = []

        @settings(max_examples=requests, deadline=None, database=None,
                  suppress_health_check=list(HealthCheck))  # fmt: skip
        @given(method=method, signed=signed, extra=extra_headers, query=HEADER_TEXT)
        def send(
            method: str, signed: tuple[bytes, str | None], extra: list[tuple[str, str]], query: str
        ) -> None:
            body, signature = signed
            # One connection per request: junk that ends a connection cannot spoil the next.
            connection = http.client.HTTPConnection("127.0.0.1", running.port, timeout=30)
            try:
                path = "/jobs/receive/?" + urllib.parse.quote(query) if query else "/jobs/receive/"
                connection.putrequest(method, path)
                if signature is not None:
                    connection.putheader("Upstash-Signature", signature)
                for name, value in extra:
                    connection.putheader(name, value)
                connection.putheader("Content-Length", str(len(body)))
                connection.endheaders(body)
                response = connection.getresponse()
                answer = response.read()
            finally:
                connection.close()
            statuses[response.status] += 1
            if response.status >= 500 or b"Traceback" in answer:
                broken.append(f"{method} {signature!r:.60} {body!r:.60} -> {response.status}")

        send()
        run = SideEffect.objects.filter(job_id__in=ids).count()
        changed = JobExecution.objects.filter(job_id__in=ids).exclude(
            status=JobStatus.QUEUED, attempts=0
        )
        lost = changed.count()
    for line in broken[:5]:
        print(f"   broken answer: {line}")
    answers = ", ".join(f"{count} x {status}" for status, count in sorted(statuses.items()))
    return Counts("random requests over HTTP (fuzz)", sum(statuses.values()), run, lost, 0,
                  f"answers: {answers}", unexpected=len(broken) + run)  # fmt: skip


def postgres_restarted(workdir: Path, jobs: int) -> Counts:
    """Crash and restart PostgreSQL while jobs are enqueued and run; count what enqueue accepted."""
    from django.db import DatabaseError, connection

    from django_qstash_jobs import job_dispatcher
    from django_qstash_jobs.exceptions import EnqueueError
    from django_qstash_jobs.models import JobExecution
    from django_qstash_jobs.outbox import republish_pending

    accepted: list[str] = []
    refused = 0
    # A job whose outcome could not be written while the database was down stays running until
    # its lease ends and a retried delivery takes it over: a short lease keeps that in the run.
    with site(workdir, backoff_scale=0.25, lease_seconds=3):
        restart = threading.Thread(target=restart_postgres)
        for index in range(jobs):
            if index == jobs // 3:
                restart.start()
            try:
                accepted.append(job_dispatcher.enqueue("effect", {"seconds": 0.002}))
            except (DatabaseError, EnqueueError):
                refused += 1
                connection.close()
                time.sleep(0.05)
        restart.join()
        # Rows recorded whose publish failed while the database was away: the outbox's job.
        wait_until(lambda: _reconnect(), 30)
        republish_pending(older_than=timedelta(0))
        recorded = list(JobExecution.objects.values_list("job_id", flat=True))
        wait_until(all_completed(recorded), 120)
    # A handler whose outcome could not be written runs again after its lease (at least once):
    # what must not repeat is its side effect, idempotent by key, as with a killed worker.
    counts = tally(
        "PostgreSQL crashed mid-run",
        accepted,
        f"{refused} enqueues refused",
        effect_label="effect",
    )
    unaccepted = set(recorded) - set(accepted)
    counts.note += f"; {len(unaccepted)} refused yet recorded, completed by republish"
    counts.lost += len(set(recorded) - set(accepted) - _completed(recorded))
    return counts


def _completed(job_ids: list[str]) -> set[str]:
    from django_qstash_jobs.models import JobExecution, JobStatus

    return set(
        JobExecution.objects.filter(job_id__in=job_ids, status=JobStatus.COMPLETED).values_list(
            "job_id", flat=True
        )
    )


def _reconnect() -> bool:
    from django.db import DatabaseError, connection

    try:
        connection.ensure_connection()
        return True
    except DatabaseError:
        connection.close()
        return False


def restart_postgres() -> None:
    # An immediate stop is a crash: no checkpoint, recovery at start, and commits made without
    # a flush (the claim and the published mark) may be lost; that must not lose a job either.
    versions = sorted(os.listdir("/etc/postgresql"))
    subprocess.run(
        [
            "pg_ctlcluster",
            "--skip-systemctl-redirect",
            "--mode",
            "immediate",
            versions[-1],
            "main",
            "restart",
        ],
        check=True,
        capture_output=True,
    )


def qstash_unreachable(workdir: Path, jobs: int) -> Counts:
    """Enqueue while QStash is down: every enqueue raises, rows wait, republish_jobs sends them."""
    from django_qstash_jobs import job_dispatcher
    from django_qstash_jobs.exceptions import EnqueueError
    from django_qstash_jobs.models import JobExecution, JobStatus
    from django_qstash_jobs.outbox import republish_pending

    with site(workdir) as running:
        running.qstash.stop()
        raised = 0
        for _ in range(jobs):
            try:
                job_dispatcher.enqueue("effect", {"seconds": 0.0})
            except EnqueueError:
                raised += 1
        ids = list(
            JobExecution.objects.filter(status=JobStatus.PENDING).values_list("job_id", flat=True)
        )
        running.qstash.start()
        report = republish_pending(older_than=timedelta(0))
        wait_until(all_completed(ids), 60)
    counts = tally("QStash unreachable at enqueue", ids, f"{raised} EnqueueError, "
                   f"{report.published} republished")  # fmt: skip
    counts.lost += jobs - len(ids)
    return counts


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--short", action="store_true", help="Fewer jobs: the CI form.")
    parser.add_argument("--skip-postgres-restart", action="store_true")
    parser.add_argument(
        "--only", nargs="+", metavar="SCENARIO", help="Run these scenarios (function names)."
    )
    arguments = parser.parse_args()
    workdir = scratch_dir()
    setup_django("postgres", workdir)
    from django.db import connection

    from django_qstash_jobs.models import JobExecution
    from tests.testapp.models import SideEffect

    size = (
        {"dup": 300, "kill": 20, "restart": 100, "pg": 60, "down": 30, "cut": 4, "fuzz": 200}
        if arguments.short
        else {
            "dup": 2000,
            "kill": 60,
            "restart": 500,
            "pg": 300,
            "down": 200,
            "cut": 20,
            "fuzz": 2000,
        }
    )
    scenarios: list[tuple[Callable[[Path, int], Counts], int]] = [
        (duplicate_deliveries, size["dup"]),
        (worker_killed, size["kill"]),
        (qstash_restarted, size["restart"]),
        (qstash_unreachable, size["down"]),
        (attempts_cut_short, size["cut"]),
        (random_requests, size["fuzz"]),
    ]
    if arguments.skip_postgres_restart:
        print("skipped: PostgreSQL crashed mid-run (--skip-postgres-restart)")
    elif os.geteuid() != 0 or not os.path.isdir("/etc/postgresql"):
        # pg_ctlcluster can stop the cluster only as root, on Debian's layout.
        print("skipped: PostgreSQL crashed mid-run (needs root and a Debian cluster to crash)")
    else:
        scenarios.append((postgres_restarted, size["pg"]))
    if arguments.only:
        scenarios = [entry for entry in scenarios if entry[0].__name__ in arguments.only]
    results = []
    for scenario, jobs in scenarios:
        JobExecution.objects.all().delete()
        SideEffect.objects.all().delete()
        started = time.monotonic()
        counts = scenario(workdir, jobs)
        counts.note += f" ({time.monotonic() - started:.0f} s)"
        results.append(counts)
        print(f"{'ok ' if counts.ok else 'FAIL'} {counts.scenario}: {counts.note}", flush=True)
        connection.close()

    print(f"\n{'scenario':<38}{'sent':>6}{'run':>6}{'lost':>6}{'dup':>6}  result")
    for counts in results:
        print(
            f"{counts.scenario:<38}{counts.sent:>6}{counts.run:>6}{counts.lost:>6}"
            f"{counts.duplicated:>6}  {'ok' if counts.ok else 'FAIL'}"
        )
    return 0 if all(counts.ok for counts in results) else 1


if __name__ == "__main__":
    sys.exit(main())
