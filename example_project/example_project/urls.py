from django.contrib import admin
from django.urls import include, path
from django.views.generic import TemplateView

urlpatterns = [
    path("", TemplateView.as_view(template_name="home.html"), name="home"),
    path("accounts/", include("accounts.urls")),
    path("reports/", include("reports.urls")),
    path("admin/", admin.site.urls),
    # The receiver QStash delivers to, the inbound webhooks and the status API.
    path("jobs/", include("django_qstash_jobs.urls")),
]
