"""Include with ``path("jobs/", include("django_qstash_jobs.urls"))``."""

from django.urls import path

from django_qstash_jobs import views

app_name = "django_qstash_jobs"

urlpatterns = [
    path("receive/", views.receive, name="receive"),
]
