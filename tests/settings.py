"""Settings for the test suite. ``DATABASE_URL``-free: ``TEST_DB=postgres`` picks PostgreSQL."""

from __future__ import annotations

import os
from typing import Any

from django_qstash_jobs.devserver.defaults import (
    DEFAULT_CURRENT_SIGNING_KEY,
    DEFAULT_NEXT_SIGNING_KEY,
    DEFAULT_TOKEN,
)

SECRET_KEY = "tests-only-not-secret"
DEBUG = False
ALLOWED_HOSTS = ["*"]
USE_TZ = True
TIME_ZONE = "UTC"
ROOT_URLCONF = "tests.urls"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
STATIC_URL = "static/"

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django_qstash_jobs",
    "tests.testapp",
]

MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ]
        },
    }
]

DATABASES: dict[str, dict[str, Any]]
if os.environ.get("TEST_DB") == "postgres":
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.postgresql",
            "HOST": os.environ.get("PGHOST", "127.0.0.1"),
            "PORT": os.environ.get("PGPORT", "5432"),
            "USER": os.environ.get("PGUSER", "postgres"),
            "PASSWORD": os.environ.get("PGPASSWORD", ""),
            "NAME": os.environ.get("PGDATABASE", "qstash_jobs"),
        }
    }
else:
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": os.environ.get("SQLITE_PATH", "tests.sqlite3"),
            # Concurrency tests write from several threads; wait for the lock instead of failing.
            "OPTIONS": {"timeout": 30, "transaction_mode": "IMMEDIATE"},
            "TEST": {"NAME": os.environ.get("SQLITE_TEST_PATH", "test-db.sqlite3")},
        }
    }

# A second database, for what a project whose models live elsewhere than the jobs sees (only
# the tests that ask for it create it).
DATABASES["other"] = {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}

# The suite's default: run jobs in-process. End-to-end tests switch to the qstash transport
# against the local QStash-compatible server.
QSTASH_JOBS = {
    "TRANSPORT": "immediate",
    "RECEIVER_URL": "http://testserver/jobs/receive/",
    "TOKEN": DEFAULT_TOKEN,
    "CURRENT_SIGNING_KEY": DEFAULT_CURRENT_SIGNING_KEY,
    "NEXT_SIGNING_KEY": DEFAULT_NEXT_SIGNING_KEY,
}

# Django 6.1+ sends through MAILERS (the test runner makes each alias locmem); older versions
# use EMAIL_BACKEND, which the test runner sets to locmem.
MAILERS = {"default": {"BACKEND": "django.core.mail.backends.locmem.EmailBackend"}}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"null": {"class": "logging.NullHandler"}},
    "loggers": {"django_qstash_jobs": {"handlers": ["null"], "propagate": True}},
}
