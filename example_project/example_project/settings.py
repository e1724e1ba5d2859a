"""Settings of the example site. Everything QStash needs comes from the environment, with the
local QStash-compatible server's well-known development credentials as defaults."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import django

BASE_DIR = Path(__file__).resolve().parent.parent
# Databases, emails, reports and logs: one folder, so that a demo run is easy to inspect (or to
# throw away: the demo test points it at a temporary directory).
VAR_DIR = Path(os.environ.get("EXAMPLE_VAR_DIR", BASE_DIR / "var"))
VAR_DIR.mkdir(parents=True, exist_ok=True)

SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "example-project-not-secret")
DEBUG = os.environ.get("DJANGO_DEBUG", "1") == "1"
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]

#: The site's public address, for links in emails sent from jobs (which have no request).
SITE_URL = os.environ.get("EXAMPLE_SITE_URL", "http://127.0.0.1:8000").rstrip("/")
#: Shown in the emails' header and footer.
PRODUCT_NAME = "Acme"

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_qstash_jobs",
    "accounts",
    "billing",
    "reports",
    "demo",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]

ROOT_URLCONF = "example_project.urls"
WSGI_APPLICATION = "example_project.wsgi.application"
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
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
if os.environ.get("EXAMPLE_DB") == "postgres":
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.postgresql",
            "HOST": os.environ.get("PGHOST", "127.0.0.1"),
            "PORT": os.environ.get("PGPORT", "5432"),
            "USER": os.environ.get("PGUSER", "postgres"),
            "PASSWORD": os.environ.get("PGPASSWORD", ""),
            "NAME": os.environ.get("PGDATABASE", "qstash_jobs_example"),
        }
    }
else:
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": VAR_DIR / "example.sqlite3",
            # Three processes share the file (the demo, the site's threads, the status streams):
            # WAL lets readers go on while a job writes, and writers wait instead of failing.
            "OPTIONS": {
                "timeout": 30,
                "transaction_mode": "IMMEDIATE",
                "init_command": "PRAGMA journal_mode=WAL;",
            },
        }
    }

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]
LOGIN_URL = "accounts:login"
LOGIN_REDIRECT_URL = "accounts:account"
LOGOUT_REDIRECT_URL = "home"

USE_TZ = True
TIME_ZONE = "UTC"
STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
# Reports and exports are written here. They are not served from MEDIA_URL: exports hold
# personal data, so reports.views.download checks who asks first.
MEDIA_ROOT = VAR_DIR / "media"
MEDIA_URL = "media/"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# Emails are written to files, one per message, so the demo can show them.
EMAIL_DIR = VAR_DIR / "emails"
DEFAULT_FROM_EMAIL = "Acme <hello@example.com>"
if django.VERSION >= (6, 1):
    MAILERS = {
        "default": {
            "BACKEND": "django.core.mail.backends.filebased.EmailBackend",
            "OPTIONS": {"file_path": str(EMAIL_DIR)},
        }
    }
else:  # Django 6.1 replaced EMAIL_BACKEND and its friends with MAILERS.
    EMAIL_BACKEND = "django.core.mail.backends.filebased.EmailBackend"
    EMAIL_FILE_PATH = EMAIL_DIR

QSTASH_JOBS = {
    # Defaults: the local server started by `manage.py qstash_dev` (its well-known dev credentials).
    "URL": os.environ.get("QSTASH_URL", "http://127.0.0.1:8080"),
    "TOKEN": os.environ.get(
        "QSTASH_TOKEN", "eyJVc2VySUQiOiJkZWZhdWx0VXNlciIsIlBhc3N3b3JkIjoiZGVmYXVsdFBhc3N3b3JkIn0="
    ),
    "CURRENT_SIGNING_KEY": os.environ.get(
        "QSTASH_CURRENT_SIGNING_KEY", "sig_7kYjw48mhY7kAjqNGcy6cr29RJ6r"
    ),
    "NEXT_SIGNING_KEY": os.environ.get(
        "QSTASH_NEXT_SIGNING_KEY", "sig_5ZB6DVzB1wjE8S6rZ7eenA8Pdnhs"
    ),
    "RECEIVER_URL": os.environ.get("QSTASH_RECEIVER_URL", "http://127.0.0.1:8000/jobs/receive/"),
    # Inbound webhooks at jobs/webhooks/<source>/ are verified with these.
    "WEBHOOK_SECRETS": {
        "stripe": os.environ.get("STRIPE_WEBHOOK_SECRET", "whsec_example_not_secret"),
        "github": os.environ.get("GITHUB_WEBHOOK_SECRET", "example-github-secret"),
    },
    # `manage.py sync_schedules` puts these on QStash.
    "SCHEDULES": [
        {
            "name": "nightly-cleanup",
            "job_type": "cleanup_old_data",
            "cron": "0 2 * * *",
            "payload": {"retention": 30},
        },
    ],
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "loggers": {
        "django_qstash_jobs": {"handlers": ["console"], "level": "WARNING"},
        "billing": {"handlers": ["console"], "level": "INFO"},
        "demo": {"handlers": ["console"], "level": "INFO"},
    },
}
