"""Admin for job schedules."""

from django.contrib import admin

from django_qstash_jobs.models import JobSchedule


@admin.register(JobSchedule)
class JobScheduleAdmin(admin.ModelAdmin):
    list_display = ["name", "job_type", "cron", "paused", "last_synced_at"]
