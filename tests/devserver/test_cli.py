"""The command line: banner, clean SIGTERM, and at-least-once delivery after a crash."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from qstash import QStash

from django_qstash_jobs.devserver import (
    DEFAULT_CURRENT_SIGNING_KEY,
    DEFAULT_NEXT_SIGNING_KEY,
    DEFAULT_TOKEN,
)
from django_qstash_jobs.devserver.cli import build_parser

from .conftest import Destination

ROOT = Path(__file__).resolve().parents[2]


class Cli:
    """``python -m django_qstash_jobs.devserver`` in a subprocess."""

    def __init__(self, *args: str) -> None:
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "django_qstash_jobs.devserver", *args],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.banner: list[str] = []
        self.env: dict[str, str] = {}
        assert self.process.stdout is not None
        timer = threading.Timer(15, self.process.kill)
        timer.start()
        try:
            for line in self.process.stdout:
                self.banner.append(line.rstrip("\n"))
                name, sep, value = line.strip().partition("=")
                if sep and name.startswith("QSTASH_"):
                    self.env[name] = value
                if name == "QSTASH_NEXT_SIGNING_KEY":
                    break
        finally:
            timer.cancel()
        if "QSTASH_URL" not in self.env:
            raise AssertionError(f"no banner: {self.banner} {self.process.stderr.read()}")  # type: ignore[union-attr]

    def client(self) -> QStash:
        return QStash(self.env["QSTASH_TOKEN"], base_url=self.env["QSTASH_URL"], retry=False)

    def stop(self, sig: int = signal.SIGTERM) -> tuple[int, str]:
        self.process.send_signal(sig)
        out, _err = self.process.communicate(timeout=15)
        return self.process.returncode, out


@pytest.fixture
def clis() -> Iterator[list[Cli]]:
    started: list[Cli] = []
    yield started
    for cli in started:
        if cli.process.poll() is None:
            cli.process.kill()
            cli.process.wait()


def test_prints_url_token_and_keys_and_stops_cleanly_on_sigterm(
    tmp_path: Path, clis: list[Cli], destination: Destination
) -> None:
    cli = Cli("--port", "0", "--db", str(tmp_path / "cli.sqlite3"), "--backoff-scale", "0")
    clis.append(cli)
    assert any("running" in line for line in cli.banner)
    assert cli.env["QSTASH_URL"].startswith("http://127.0.0.1:")
    assert not cli.env["QSTASH_URL"].endswith(":0")
    assert cli.env["QSTASH_TOKEN"] == DEFAULT_TOKEN
    assert cli.env["QSTASH_CURRENT_SIGNING_KEY"] == DEFAULT_CURRENT_SIGNING_KEY
    assert cli.env["QSTASH_NEXT_SIGNING_KEY"] == DEFAULT_NEXT_SIGNING_KEY
    cli.client().message.publish_json(url=destination.url("/from-cli"), body={})
    destination.wait_for(1, "/from-cli")
    code, out = cli.stop()
    assert code == 0
    assert "stopped" in out


def test_an_attempt_in_flight_when_the_process_dies_is_delivered_again(
    tmp_path: Path, clis: list[Cli], destination: Destination
) -> None:
    db = str(tmp_path / "crash.sqlite3")
    release = destination.hold("/crash")
    first = Cli("--port", "0", "--db", db, "--backoff-scale", "0")
    clis.append(first)
    res = first.client().message.publish_json(url=destination.url("/crash"), body={"n": 1})
    assert not isinstance(res, list)
    destination.wait_for(1, "/crash")
    # The first attempt is stuck inside the destination: the server dies under it.
    first.stop(signal.SIGKILL)
    release.set()

    second = Cli("--port", "0", "--db", db, "--backoff-scale", "0")
    clis.append(second)
    got = destination.wait_for(2, "/crash")
    assert [r.headers["Upstash-Message-Id"] for r in got] == [res.message_id] * 2
    assert [r.headers["Upstash-Retried"] for r in got] == ["0", "0"]
    assert second.stop()[0] == 0


def test_the_server_package_never_imports_django() -> None:
    code = (
        "import sys, django_qstash_jobs.devserver, django_qstash_jobs.devserver.cli;"
        "bad = sorted(m for m in sys.modules if m == 'django' or m.startswith('django.'));"
        "print(bad); sys.exit(1 if bad else 0)"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(
    ("option", "value", "error"),
    [
        ("--port", "70000", "70000 is out of range (0 to 65535)"),
        ("--port", "-1", "-1 is out of range (0 to 65535)"),
        ("--port", "http", "'http' is not a whole number"),
        ("--backoff-scale", "-1", "must be a finite number of at least 0, not -1"),
        ("--backoff-scale", "nan", "must be a finite number of at least 0, not nan"),
        ("--backoff-scale", "inf", "must be a finite number of at least 0, not inf"),
    ],
)
def test_an_option_out_of_range_is_a_usage_error_not_a_traceback(
    capsys: pytest.CaptureFixture[str], option: str, value: str, error: str
) -> None:
    with pytest.raises(SystemExit) as exited:
        build_parser().parse_args([option, value])
    assert exited.value.code == 2  # argparse's usage error
    assert f"argument {option}: {error}" in capsys.readouterr().err


def test_the_extreme_ports_and_no_backoff_are_accepted() -> None:
    assert build_parser().parse_args(["--port", "0"]).port == 0
    assert build_parser().parse_args(["--port", "65535"]).port == 65535
    assert build_parser().parse_args(["--backoff-scale", "0"]).backoff_scale == 0.0


def test_manage_py_qstash_dev_refuses_a_port_out_of_range() -> None:
    with pytest.raises(CommandError, match=r"70000 is out of range \(0 to 65535\)"):
        call_command("qstash_dev", "--port", "70000")
