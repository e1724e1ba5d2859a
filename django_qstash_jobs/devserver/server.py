"""``DevServer``: the whole local QStash in one object, for tests and the command line."""

from __future__ import annotations

import os
import threading
import time
from types import TracebackType

from .app import build_app
from .context import Context
from .db import Database
from .defaults import (
    DEFAULT_CURRENT_SIGNING_KEY,
    DEFAULT_DB_PATH,
    DEFAULT_DELIVERY_TIMEOUT_SECONDS,
    DEFAULT_HOST,
    DEFAULT_MAX_BODY_BYTES,
    DEFAULT_NEXT_SIGNING_KEY,
    DEFAULT_PORT,
    DEFAULT_RETRIES,
    DEFAULT_TOKEN,
    DEFAULT_WORKERS,
)
from .delivery import DeliveryPool
from .dispatcher import Dispatcher
from .engine import Engine, EngineConfig
from .httpd import DevHTTPServer
from .scheduler import Scheduler


class DevServer:
    """A local QStash-compatible server running on background threads.

    ``with DevServer(port=0, db_path=tmp / "q.sqlite3", backoff_scale=0) as server:`` starts
    it on a free port; ``server.url``, ``server.token`` and the signing keys are then set.
    """

    def __init__(
        self,
        host: str = DEFAULT_HOST,
        port: int = DEFAULT_PORT,
        db_path: str | os.PathLike[str] = DEFAULT_DB_PATH,
        backoff_scale: float = 1.0,
        token: str = DEFAULT_TOKEN,
        current_signing_key: str = DEFAULT_CURRENT_SIGNING_KEY,
        next_signing_key: str = DEFAULT_NEXT_SIGNING_KEY,
        workers: int = DEFAULT_WORKERS,
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
        delivery_timeout: float = DEFAULT_DELIVERY_TIMEOUT_SECONDS,
        default_retries: int = DEFAULT_RETRIES,
        verbose: bool = False,
    ) -> None:
        if backoff_scale < 0:
            raise ValueError("backoff_scale must be >= 0")
        self.host = host
        self.port = port
        self.db_path = os.fspath(db_path)
        self.token = token
        self.workers = workers
        self.max_body_bytes = max_body_bytes
        self.verbose = verbose
        self.config = EngineConfig(
            backoff_scale=backoff_scale,
            delivery_timeout=delivery_timeout,
            default_retries=default_retries,
            current_signing_key=current_signing_key,
            next_signing_key=next_signing_key,
        )
        self._db: Database | None = None
        self._engine: Engine | None = None
        self._scheduler: Scheduler | None = None
        self._pool: DeliveryPool | None = None
        self._httpd: DevHTTPServer | None = None
        self._serve_thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """The base URL clients use (``QSTASH_URL``)."""
        host = self.host
        if host in ("0.0.0.0", "", "::"):  # noqa: S104 - only formats a URL
            host = "127.0.0.1"
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{self.port}"

    @property
    def current_signing_key(self) -> str:
        """The key deliveries are signed with now (``QSTASH_CURRENT_SIGNING_KEY``)."""
        return self.engine.keys[0] if self._engine else self.config.current_signing_key

    @property
    def next_signing_key(self) -> str:
        """The key that becomes current on rotation (``QSTASH_NEXT_SIGNING_KEY``)."""
        return self.engine.keys[1] if self._engine else self.config.next_signing_key

    @property
    def engine(self) -> Engine:
        """The running engine (for tests that look inside)."""
        if self._engine is None:
            raise RuntimeError("the server is not running")
        return self._engine

    @property
    def scheduler(self) -> Scheduler:
        """The running cron scheduler (for tests that look inside)."""
        if self._scheduler is None:
            raise RuntimeError("the server is not running")
        return self._scheduler

    @property
    def running(self) -> bool:
        """Whether ``start`` was called and ``stop`` was not."""
        return self._httpd is not None

    def start(self) -> DevServer:
        """Open the database, restore pending work and start listening; return at once."""
        if self._httpd is not None:
            raise RuntimeError("the server is already running")
        directory = os.path.dirname(os.path.abspath(self.db_path))
        os.makedirs(directory, exist_ok=True)
        self._db = Database(self.db_path)
        dispatcher = Dispatcher()
        self._engine = Engine(self._db, dispatcher, self.config)
        self._scheduler = Scheduler(self._engine)
        app = build_app(Context(self._engine, self._scheduler), self.token)
        try:
            self._httpd = DevHTTPServer(
                (self.host, self.port), app, self.max_body_bytes, self.verbose
            )
        except OSError:
            self._db.close()
            self._db = self._engine = self._scheduler = None
            raise
        self.port = self._httpd.server_address[1]
        try:
            self._engine.restore()
            self._pool = DeliveryPool(self._engine, self.workers, self.verbose)
            self._pool.start()
            self._scheduler.start()
        except BaseException:
            self.stop()  # Never served: stop() must not wait for serve_forever to end.
            raise
        self._serve_thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="qstash-dev-http",
            daemon=True,
        )
        self._serve_thread.start()
        return self

    def stop(self) -> None:
        """Stop accepting requests and deliveries, close connections and the database."""
        if self._httpd is None:
            return
        if self._serve_thread is not None:
            # shutdown() waits for serve_forever() to return: only once it was started.
            self._httpd.shutdown()
            self._serve_thread = None
        self._httpd.close_connections()
        self._httpd.server_close()
        if self._scheduler is not None:
            self._scheduler.stop()
        if self._pool is not None:
            self._pool.stop()
        if self._db is not None:
            self._db.close()
        self._httpd = None
        self._pool = None
        self._scheduler = None
        self._engine = None
        self._db = None

    def wait_idle(self, timeout: float = 10.0) -> bool:
        """Wait until nothing is being delivered or due now; return False on timeout."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.engine.dispatcher.busy():
                return True
            time.sleep(0.005)
        return False

    def __enter__(self) -> DevServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def banner(self) -> str:
        """The start-up text: a "running" line, then the environment to copy."""
        return (
            f"QStash development server is running at {self.url}\n"
            "\n"
            "Set these environment variables to use it:\n"
            "\n"
            f"QSTASH_URL={self.url}\n"
            f"QSTASH_TOKEN={self.token}\n"
            f"QSTASH_CURRENT_SIGNING_KEY={self.current_signing_key}\n"
            f"QSTASH_NEXT_SIGNING_KEY={self.next_signing_key}\n"
        )
