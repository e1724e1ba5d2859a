"""Round-trip time of the SDK's ``publish_json`` against the local server.

    python bench/devserver_publish.py [--calls 1000]

The server runs as ``python -m django_qstash_jobs.devserver`` in its own process and the
destination in another one, so that only the publish call is timed in this process. Two runs:
messages delivered at once (the server delivers while it answers) and delayed by an hour.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

from qstash import QStash

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import TOKEN, devserver, scratch_dir

DESTINATION = """
import socket
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def setup(self):
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()
    def log_message(self, *args):
        pass
server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
print(server.server_address[1], flush=True)
server.serve_forever()
"""


def measure(calls: int, delay: str | None, workdir: Path, destination: str) -> list[float]:
    """Start a server, publish ``calls`` messages, return the round trips in seconds."""
    with devserver(workdir, backoff_scale=1.0) as server:
        client = QStash(TOKEN, base_url=server.url, retry=False)
        extra = {"delay": delay} if delay else {}
        for i in range(100):  # warm-up: connections, caches, the database file
            client.message.publish_json(url=destination, body={"warm": i}, **extra)  # type: ignore[arg-type]
        times = []
        for i in range(calls):
            start = time.perf_counter()
            client.message.publish_json(url=destination, body={"i": i}, **extra)  # type: ignore[arg-type]
            times.append(time.perf_counter() - start)
        return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=1000)
    args = parser.parse_args()
    dest = subprocess.Popen([sys.executable, "-c", DESTINATION], stdout=subprocess.PIPE, text=True)
    try:
        assert dest.stdout is not None
        url = f"http://127.0.0.1:{int(dest.stdout.readline())}/hook"
        for label, delay in (("delivered at once", None), ("delayed 1h", "1h")):
            times = sorted(measure(args.calls, delay, scratch_dir(), url))
            print(
                f"publish_json, {label}: median {statistics.median(times) * 1000:.2f} ms, "
                f"p90 {times[int(len(times) * 0.9)] * 1000:.2f} ms, "
                f"p99 {times[int(len(times) * 0.99)] * 1000:.2f} ms over {len(times)} calls"
            )
    finally:
        dest.kill()
        dest.wait()


if __name__ == "__main__":
    main()
