"""``python -m django_qstash_jobs.devserver``."""

from __future__ import annotations

from .cli import main

raise SystemExit(main())
