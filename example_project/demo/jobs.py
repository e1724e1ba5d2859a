"""A custom job type, as in the "Creating jobs" guide, discovered from this jobs.py."""

from __future__ import annotations

from pydantic import BaseModel

from django_qstash_jobs import JobContext, register_job


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
