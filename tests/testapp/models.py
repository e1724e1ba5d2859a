from django.db import models


class SideEffect(models.Model):
    """One row per handler run, so tests count runs in the database (across processes too)."""

    job_id = models.CharField(max_length=64)
    label = models.CharField(max_length=100, blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)


class Article(models.Model):
    """A model whose saves enqueue jobs through enqueue_on."""

    title = models.CharField(max_length=200)
    published = models.BooleanField(default=False)
