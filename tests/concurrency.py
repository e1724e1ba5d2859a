"""Running one piece of work in several threads at once, as concurrent requests would."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TypeVar

from django.db import connections

T = TypeVar("T")


def at_once(work: Callable[[], T], threads: int) -> list[T]:
    """Run ``work`` in ``threads`` threads released together; return what each returned.

    Each thread closes its database connections when done. An exception raised in any thread
    is raised here once all of them have finished, so a test never passes on a thread that died.
    """
    barrier = threading.Barrier(threads)
    results: list[T] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            barrier.wait()
            results.append(work())
        except BaseException as exc:  # re-raised in the calling thread below
            errors.append(exc)
        finally:
            connections.close_all()

    started = [threading.Thread(target=run) for _ in range(threads)]
    for thread in started:
        thread.start()
    for thread in started:
        thread.join()
    if errors:
        raise errors[0]
    return results


class InThread:
    """``work`` run in a thread of its own, as another request would; ``join`` re-raises."""

    def __init__(self, work: Callable[[], object]) -> None:
        self._errors: list[BaseException] = []

        def run() -> None:
            try:
                work()
            except BaseException as exc:  # re-raised in the calling thread by join()
                self._errors.append(exc)
            finally:
                connections.close_all()

        self.thread = threading.Thread(target=run)

    def start(self) -> None:
        self.thread.start()

    def is_alive(self) -> bool:
        return self.thread.is_alive()

    def join(self, timeout: float | None = None) -> None:
        """Wait for the work; once it has ended, raise what it raised."""
        self.thread.join(timeout)
        if self._errors and not self.thread.is_alive():
            raise self._errors[0]
