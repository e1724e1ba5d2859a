"""The built-in job types. Importing this package registers them (the app's ``ready()`` does)."""

from __future__ import annotations

# Each module registers its job type(s) with @register_job when imported.
from django_qstash_jobs.jobs import (  # noqa: F401
    cleanup,
    emails,
    exports,
    reports,
    webhooks,
)
