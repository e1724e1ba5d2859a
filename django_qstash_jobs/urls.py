"""Include with ``path("jobs/", include("django_qstash_jobs.urls"))``."""

from django.urls import path

from django_qstash_jobs import views, webhooks

app_name = "django_qstash_jobs"

urlpatterns = [
    path("receive/", views.receive, name="receive"),
    path("webhooks/<slug:source>/", webhooks.webhook, name="webhook"),
]
