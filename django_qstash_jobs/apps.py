from importlib.util import find_spec

from django.apps import AppConfig
from django.utils.module_loading import autodiscover_modules
from django.utils.translation import gettext_lazy as _


class QStashJobsConfig(AppConfig):
    name = "django_qstash_jobs"
    verbose_name = _("QStash jobs")
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from django_qstash_jobs import checks, conf, jobs  # noqa: F401  (register checks, signals, built-ins)

        # Like admin.py: each installed app's jobs.py registers its job types.
        autodiscover_modules("jobs")
        # The django_task job type, for Django's Tasks framework (Django 6+, or the backport).
        if find_spec("django.tasks") or find_spec("django_tasks"):
            from django_qstash_jobs import task_jobs  # noqa: F401
