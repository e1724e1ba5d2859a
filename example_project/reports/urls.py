from django.urls import path

from reports import views

app_name = "reports"

urlpatterns = [
    path("", views.index, name="index"),
    path("report/", views.start_report, name="start_report"),
    path("export/", views.start_export, name="start_export"),
    path("jobs/<str:job_id>/", views.job, name="job"),
    path("jobs/<str:job_id>/download/", views.download, name="download"),
]
