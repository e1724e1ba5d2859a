"""What enqueue costs over a bare QStash publish, and what enqueue_many saves.

    python bench/enqueue.py [--db sqlite|postgres] [--rounds 10] [--per-round 50]

Both contenders publish to the same local QStash-compatible server, over the same kind of
keep-alive HTTP client, with a one-hour delay so that no delivery competes for the CPU while we
measure. Prints medians, CPU per call and the ratios; exits non-zero when a target is missed:
enqueue at most 1.3x the bare publish, enqueue_many at least 10x faster per job than enqueue.
Beside them, for information: both again with QStash 5 ms away through a relay, as Upstash is
from a site in its region, where the database's share of an enqueue weighs less.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (
    TOKEN,
    devserver,
    distant,
    interleaved,
    scratch_dir,
    setup_django,
    sink,
    summarize,
)

BARE = "bare qstash publish_json"
FLOOR = "bare outbox (psycopg, no Django)"
OURS = "job_dispatcher.enqueue"
PEER = "django-qstash apply_async"
ENQUEUE_TARGET = 1.3
BATCH_TARGET = 10.0
#: A round trip to QStash from a site in the same cloud region, for the informational row.
DISTANT_MS = 5.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--per-round", type=int, default=50)
    parser.add_argument("--batch", type=int, default=1000)
    arguments = parser.parse_args()

    workdir = scratch_dir()
    # Real delays (scale 1): the one-hour delay keeps deliveries out of the measurement.
    with devserver(workdir, backoff_scale=1.0) as qstash, sink() as receiver_url:
        qstash_url = qstash.url
        site_url = receiver_url.removesuffix("/jobs/receive/")
        # Read at import time by django-qstash, so set before Django starts.
        os.environ["QSTASH_URL"] = qstash_url
        os.environ["BENCH_SITE_URL"] = site_url
        setup_django(arguments.db, workdir, settings_module="bench.peer_settings")
        from django.test import override_settings
        from qstash import QStash

        from django_qstash_jobs import job_dispatcher
        from tests.servers import qstash_settings

        with override_settings(QSTASH_JOBS=qstash_settings(qstash_url, site_url)):
            bare = QStash(TOKEN, base_url=qstash_url)
            payload = {"message": "hello", "times": 1}
            body = {"job_id": "00000000-0000-0000-0000-000000000000", "job_type": "echo"}

            counter = iter(range(10**9))

            def bare_publish() -> None:
                # The same message our transport sends: retries, delay and a deduplication id.
                bare.message.publish_json(
                    url=receiver_url,
                    body=body,
                    retries=2,
                    delay=3600,
                    deduplication_id=f"bare-{next(counter)}",
                )

            def enqueue() -> None:
                job_dispatcher.enqueue("echo", payload, None, {"delay": 3_600_000})

            contenders: dict[str, Callable[[], object]] = {BARE: bare_publish}
            if arguments.db == "postgres":
                contenders[FLOOR] = bare_outbox(bare, receiver_url)
            contenders[OURS] = enqueue
            if importlib.util.find_spec("django_qstash"):
                from bench.peer_app.tasks import noop

                # Its .delay() with the same one-hour delay, so nothing is delivered meanwhile.
                contenders[PEER] = lambda: noop.apply_async(countdown=3600)
            else:
                print("django-qstash is not installed here: `make bench` runs this in its venv.")
            for warm_up in contenders.values():
                for _ in range(20):
                    warm_up()
            timings = interleaved(contenders, arguments.rounds, arguments.per_round)

            # Informational: the same two with QStash a cloud region's round trip away, as
            # Upstash is from a production site (the database stays beside the site).
            with distant(qstash_url, DISTANT_MS / 2000) as far_url:
                far = QStash(TOKEN, base_url=far_url)

                def far_publish() -> None:
                    far.message.publish_json(
                        url=receiver_url, body=body, retries=2, delay=3600,
                        deduplication_id=f"far-{next(counter)}",
                    )  # fmt: skip

                with override_settings(QSTASH_JOBS=qstash_settings(far_url, site_url)):
                    for _ in range(5):
                        far_publish()
                        enqueue()
                    far_timings = interleaved({BARE: far_publish, OURS: enqueue}, 5, 20)

            jobs = [
                {"job_type": "echo", "payload": payload, "options": {"delay": 3_600_000}}
                for _ in range(arguments.batch)
            ]
            # Alternate the two ways of enqueueing a batch, and keep each one's median, so that
            # a checkpoint or a burst of CPU steal during one run cannot decide the ratio.
            one_by_one_runs: list[float] = []
            batched_runs: list[float] = []
            for _ in range(3):
                started = time.perf_counter()
                for _ in range(arguments.batch):
                    enqueue()
                one_by_one_runs.append(time.perf_counter() - started)
                started = time.perf_counter()
                job_dispatcher.enqueue_many(jobs)
                batched_runs.append(time.perf_counter() - started)
            one_by_one = statistics.median(one_by_one_runs)
            batched = statistics.median(batched_runs)

    bare_timing = timings[BARE]
    ours = timings[OURS]
    enqueue_ratio = ours.median / bare_timing.median
    batch_speedup = one_by_one / batched
    print(f"database: {arguments.db}; {arguments.rounds} x {arguments.per_round} calls each")
    print(f"{'contender':<34}{'median ms':>10}{'cpu ms/call':>13}{'vs bare':>9}")
    for timing in timings.values():
        print(
            f"{timing.name:<34}{timing.median * 1e3:>10.3f}{timing.cpu_mean * 1e3:>13.3f}"
            f"{timing.median / bare_timing.median:>8.2f}x"
        )
    print(f"enqueue / bare publish: {enqueue_ratio:.2f}x (target <= {ENQUEUE_TARGET}x)")
    if FLOOR in timings:
        floor_ratio = ours.median / timings[FLOOR].median
        print(
            f"enqueue / bare outbox: {floor_ratio:.2f}x (the same insert, publish and mark "
            f"without Django: the bare outbox is {timings[FLOOR].median / bare_timing.median:.2f}x "
            "the bare publish)"
        )
    if PEER in timings:
        print(f"enqueue / django-qstash apply_async: {ours.median / timings[PEER].median:.2f}x")
    far_ratio = far_timings[OURS].median / far_timings[BARE].median
    print(
        f"with QStash {DISTANT_MS:g} ms away: bare publish "
        f"{far_timings[BARE].median * 1e3:.2f} ms, enqueue {far_timings[OURS].median * 1e3:.2f} "
        f"ms: {far_ratio:.2f}x"
    )
    print(
        f"{arguments.batch} x enqueue: {one_by_one:.2f} s; enqueue_many({arguments.batch}): "
        f"{batched:.3f} s; {batch_speedup:.1f}x faster per job (target >= {BATCH_TARGET}x)"
    )
    rows = [
        ("enqueue vs bare publish", f"{enqueue_ratio:.2f}x", f"<= {ENQUEUE_TARGET}x",
         enqueue_ratio <= ENQUEUE_TARGET),
        ("enqueue CPU vs bare publish", f"{ours.cpu_mean / bare_timing.cpu_mean:.2f}x", "", True),
        ("enqueue_many(1000) per job speed-up", f"{batch_speedup:.1f}x", f">= {BATCH_TARGET}x",
         batch_speedup >= BATCH_TARGET),
    ]  # fmt: skip
    rows.append(
        (f"enqueue vs bare publish, QStash {DISTANT_MS:g} ms away", f"{far_ratio:.2f}x", "", True)
    )
    if FLOOR in timings:
        rows.append(
            ("enqueue vs bare outbox (no Django)", f"{ours.median / timings[FLOOR].median:.2f}x",
             "", True)
        )  # fmt: skip
        rows.append(
            ("bare outbox vs bare publish", f"{timings[FLOOR].median / bare_timing.median:.2f}x",
             "", True)
        )  # fmt: skip
    if PEER in timings:
        rows.append(
            ("enqueue vs django-qstash apply_async", f"{ours.median / timings[PEER].median:.2f}x",
             "", True)
        )  # fmt: skip
    summarize("enqueue", rows)
    return 0 if enqueue_ratio <= ENQUEUE_TARGET and batch_speedup >= BATCH_TARGET else 1


def bare_outbox(client: Any, receiver_url: str) -> Callable[[], None]:
    """The floor of any outbox here: the enqueue's two writes by hand around the same publish.

    psycopg on its own connection, no Django: INSERT the row (committed durably), publish,
    then store the message id (committed without a flush, as ours does). What enqueue costs
    above this is our code; what this costs above the bare publish is the outbox itself.
    """
    import json
    import uuid

    import psycopg
    from django.db import connection

    settings = connection.settings_dict
    database = psycopg.connect(
        host=settings["HOST"], port=settings["PORT"], user=settings["USER"],
        dbname=settings["NAME"], autocommit=True,
    )  # fmt: skip
    empty = json.dumps({})
    payload = json.dumps({"message": "hello", "times": 1})

    def enqueue() -> None:
        job_id = str(uuid.uuid4())
        database.execute(
            "INSERT INTO django_qstash_jobs_jobexecution (job_id, job_type, status, payload, "
            "metadata, options, attempts, max_retries, error, traceback, progress, "
            "progress_message, created_at, updated_at) VALUES (%s, 'echo', 'pending', %s, %s, "
            "%s, 0, 2, '', '', 0, '', now(), now()) RETURNING id",
            [job_id, payload, empty, empty],
        ).fetchone()
        response = client.message.publish_json(
            url=receiver_url, body={"job_id": job_id, "job_type": "echo"}, retries=2,
            delay=3600, deduplication_id=job_id,
        )  # fmt: skip
        database.execute(
            "UPDATE django_qstash_jobs_jobexecution SET message_id = %s, status = 'queued', "
            "updated_at = now() FROM (SELECT set_config('synchronous_commit', 'off', true)) "
            "AS commit_without_flush WHERE job_id = %s",
            [response.message_id, job_id],
        )

    return enqueue


if __name__ == "__main__":
    sys.exit(main())
