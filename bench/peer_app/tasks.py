"""django-qstash's side of the benchmark: a task that does nothing (bench environment only)."""

from __future__ import annotations

try:
    from django_qstash import stashed_task
except ImportError:  # django-qstash is installed only in the bench environment.
    stashed_task = None

if stashed_task is not None:

    @stashed_task
    def noop() -> None:
        """Nothing: django-qstash's verification and bookkeeping are what is measured."""
