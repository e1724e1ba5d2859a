"""Command line: ``python -m django_qstash_jobs.devserver`` and ``manage.py qstash_dev``."""

from __future__ import annotations

import argparse
import logging
import math
import signal
import sqlite3
import sys
import threading
from collections.abc import Sequence
from types import FrameType
from typing import TextIO

from ..management.arguments import whole_number
from .defaults import (
    DEFAULT_CURRENT_SIGNING_KEY,
    DEFAULT_DB_PATH,
    DEFAULT_DELIVERY_TIMEOUT_SECONDS,
    DEFAULT_HOST,
    DEFAULT_MAX_BODY_BYTES,
    DEFAULT_NEXT_SIGNING_KEY,
    DEFAULT_PORT,
    DEFAULT_TOKEN,
    DEFAULT_WORKERS,
)
from .server import DevServer

#: The highest TCP port number.
MAX_PORT = 65535


def backoff_scale(text: str) -> float:
    """An argparse type: a finite factor of at least 0."""
    try:
        scale = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    # A NaN or infinite wait could never be computed into a delivery time.
    if not math.isfinite(scale) or scale < 0:
        raise argparse.ArgumentTypeError(f"must be a finite number of at least 0, not {text}")
    return scale


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Declare the options (shared with the Django management command)."""
    parser.add_argument("--host", default=DEFAULT_HOST, help="interface to listen on")
    parser.add_argument(
        # Refused here, with the usage line, rather than by the socket with a traceback.
        "--port",
        type=whole_number(0, MAX_PORT),
        default=DEFAULT_PORT,
        help="port (0 = any free)",
    )
    parser.add_argument(
        "--db", default=DEFAULT_DB_PATH, metavar="PATH", help="SQLite file holding all state"
    )
    parser.add_argument(
        "--backoff-scale",
        type=backoff_scale,
        default=1.0,
        metavar="FLOAT",
        help="multiplies every retry backoff, delay and not-before wait (0 = at once)",
    )
    parser.add_argument("--workers", type=int, default=DEFAULT_WORKERS, help="delivery threads")
    parser.add_argument("--token", default=DEFAULT_TOKEN, help="QSTASH_TOKEN clients must send")
    parser.add_argument("--current-signing-key", default=DEFAULT_CURRENT_SIGNING_KEY)
    parser.add_argument("--next-signing-key", default=DEFAULT_NEXT_SIGNING_KEY)
    parser.add_argument(
        "--max-body-size",
        type=int,
        default=DEFAULT_MAX_BODY_BYTES,
        metavar="BYTES",
        help="larger request bodies are refused with 413",
    )
    parser.add_argument(
        "--delivery-timeout",
        type=float,
        default=DEFAULT_DELIVERY_TIMEOUT_SECONDS,
        metavar="SECONDS",
        help="per-attempt timeout when the message sets no Upstash-Timeout",
    )
    parser.add_argument("--verbose", action="store_true", help="log requests and deliveries")


def build_parser() -> argparse.ArgumentParser:
    """The stand-alone argument parser."""
    parser = argparse.ArgumentParser(
        prog="python -m django_qstash_jobs.devserver",
        description="Local QStash-compatible server for development and tests.",
    )
    add_arguments(parser)
    return parser


def server_from_options(options: argparse.Namespace) -> DevServer:
    """Build a (not yet started) server from parsed options."""
    # call_command(..., backoff_scale=-1) gives options that the parser's types never saw.
    if options.backoff_scale < 0:
        raise SystemExit("--backoff-scale must be >= 0")
    return DevServer(
        host=options.host,
        port=options.port,
        db_path=options.db,
        backoff_scale=options.backoff_scale,
        token=options.token,
        current_signing_key=options.current_signing_key,
        next_signing_key=options.next_signing_key,
        workers=options.workers,
        max_body_bytes=options.max_body_size,
        delivery_timeout=options.delivery_timeout,
        verbose=options.verbose,
    )


def run(server: DevServer, out: TextIO | None = None) -> None:
    """Start ``server``, print the banner, and block until SIGINT or SIGTERM."""
    stream = out if out is not None else sys.stdout
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        server.start()
        print(server.banner(), file=stream, flush=True)
        while not stop.wait(0.5):
            pass
    finally:
        server.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    print("QStash development server stopped.", file=stream, flush=True)


def serve(options: argparse.Namespace) -> int:
    """Run a server configured by parsed options until SIGINT or SIGTERM."""
    logging.basicConfig(
        level=logging.INFO if options.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(message)s",
    )
    server = server_from_options(options)
    try:
        run(server)
    except (OSError, sqlite3.Error) as exc:
        print(f"cannot start on {options.host}:{options.port}: {exc}", file=sys.stderr)
        return 1
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m django_qstash_jobs.devserver``."""
    return serve(build_parser().parse_args(argv))
