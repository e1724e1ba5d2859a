"""The benchmark site: our receiver, django-qstash's receiver and a bare view, side by side."""

from __future__ import annotations

import importlib.util
import os

from bench.settings import *  # noqa: F403

ROOT_URLCONF = "bench.peer_urls"
INSTALLED_APPS = [*INSTALLED_APPS, "bench.peer_app"]  # noqa: F405
MIDDLEWARE = ["django.middleware.common.CommonMiddleware"]
if importlib.util.find_spec("django_qstash"):
    INSTALLED_APPS += ["django_qstash", "django_qstash.results"]
    QSTASH_TOKEN = QSTASH_JOBS["TOKEN"]  # noqa: F405
    QSTASH_CURRENT_SIGNING_KEY = QSTASH_JOBS["CURRENT_SIGNING_KEY"]  # noqa: F405
    QSTASH_NEXT_SIGNING_KEY = QSTASH_JOBS["NEXT_SIGNING_KEY"]  # noqa: F405
    DJANGO_QSTASH_DOMAIN = os.environ.get("BENCH_SITE_URL", "http://127.0.0.1:8000")
    DJANGO_QSTASH_WEBHOOK_PATH = "/qstash/webhook/"
    # Deliveries here are signed for http://; its default rewrites the URL to https://.
    DJANGO_QSTASH_FORCE_HTTPS = False
    # It imports every app's tasks module at start; the test app's declares its tasks for our
    # Tasks backend, which must then be the default one.
    TASKS = {"default": {"BACKEND": "django_qstash_jobs.tasks.QStashBackend"}}
