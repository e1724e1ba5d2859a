"""The baseline: a bare view doing the receiver's two writes, with no signature and no registry."""

from __future__ import annotations

import json

from django.db.models import F
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt

from django_qstash_jobs.models import JobExecution


@csrf_exempt
def bare(request: HttpRequest) -> HttpResponse:
    job_id = json.loads(request.body)["job_id"]
    rows = JobExecution.objects.filter(job_id=job_id)
    now = timezone.now()
    rows.update(status="running", attempts=F("attempts") + 1, started_at=now, updated_at=now)
    rows.update(status="completed", result=None, finished_at=timezone.now(), updated_at=now)
    return JsonResponse({"status": "completed"})
