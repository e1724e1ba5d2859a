from django.urls import include, path

from bench.peer_app.views import bare

urlpatterns = [
    path("jobs/", include("django_qstash_jobs.urls")),
    path("bare/", bare),
]

try:  # django-qstash, in the bench environment only.
    from django_qstash.views import qstash_webhook_view

    urlpatterns.append(path("qstash/webhook/", qstash_webhook_view))
except ImportError:
    pass
