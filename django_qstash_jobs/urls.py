"""Include with ``path("jobs/", include("django_qstash_jobs.urls"))``."""

from django.urls import path

from django_qstash_jobs import status_views, views, webhooks

app_name = "django_qstash_jobs"

urlpatterns = [
    path("receive/", views.receive, name="receive"),
    path("webhooks/<slug:source>/", webhooks.webhook, name="webhook"),
    path("status/<str:job_id>/", status_views.job_status, name="status"),
    path("status/<str:job_id>/events/", status_views.job_status_events, name="status-events"),
]
