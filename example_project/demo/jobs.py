"""A custom job type, as in the "Creating jobs" guide, and a generic webhook handler.

Both are found because this module is ``demo/jobs.py``: the app loads every installed app's
``jobs.py`` at start-up, like the admin loads ``admin.py``.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from django_qstash_jobs import JobContext, register_job, webhook_handler


class ResizeImage(BaseModel):
    image_id: int
    width: int = 800


@register_job("resize_image", schema=ResizeImage, retries=5)
def resize_image(payload: ResizeImage, ctx: JobContext) -> dict[str, object]:
    ctx.set_progress(50, "resizing")
    return {"ok": True, "image_id": payload.image_id, "width": payload.width}


class Unreliable(BaseModel):
    fail_times: int


@register_job("unreliable", schema=Unreliable, retries=2)
def unreliable(payload: Unreliable, ctx: JobContext) -> str:
    """Fails its first ``fail_times`` attempts: shows QStash's retries."""
    if ctx.attempt <= payload.fail_times:
        raise RuntimeError(f"attempt {ctx.attempt} failed on purpose")
    return f"succeeded on attempt {ctx.attempt}"


@webhook_handler("github", "push")
def on_push(payload: Any, ctx: JobContext) -> None:
    """GitHub posts to jobs/webhooks/github/; this runs later, in the job."""
    data: dict[str, Any] = payload.data
    commits = len(data.get("commits") or [])
    repository = (data.get("repository") or {}).get("full_name", "?")
    ctx.set_progress(100, f"{commits} commit(s) pushed to {repository} {data.get('ref', '')}")
