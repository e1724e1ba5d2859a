"""The admin: job executions (with the dashboard) and schedules, one module each."""

from django_qstash_jobs.admin import executions, schedules  # noqa: F401  (register the admins)
