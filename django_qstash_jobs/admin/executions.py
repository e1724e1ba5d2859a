"""Admin for job executions."""

from django.contrib import admin

from django_qstash_jobs.models import JobExecution


@admin.register(JobExecution)
class JobExecutionAdmin(admin.ModelAdmin):
    list_display = ["job_id", "job_type", "status", "attempts", "created_at"]
    list_filter = ["status", "job_type"]
    search_fields = ["job_id", "idempotency_key", "message_id"]
