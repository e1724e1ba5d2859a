"""Where reports and exports go: the storage named by ``QSTASH_JOBS["STORAGE"]``."""

from __future__ import annotations

from collections.abc import Iterable
from typing import IO, Any

from django.core.files import File
from django.core.files.storage import Storage, storages
from django.utils import timezone
from django.utils.text import slugify

from django_qstash_jobs.conf import get_config

#: Every file this package writes is under this folder; cleanup deletes nothing outside it.
PREFIX = "qstash_jobs"


def get_storage() -> Storage:
    """The storage alias of ``QSTASH_JOBS["STORAGE"]`` (an entry of ``STORAGES``)."""
    return storages[get_config().storage]


def file_name(kind: str, stem: str, job_id: str, extension: str) -> str:
    """``qstash_jobs/<kind>/YYYY/MM/DD/<stem>-<job id>.<extension>``.

    The job id makes the name unguessable: exports hold personal data and a storage URL may be
    public.
    """
    day = timezone.now()
    return f"{PREFIX}/{kind}/{day:%Y/%m/%d}/{slugify(stem) or kind}-{job_id}.{extension}"


def save(name: str, content: IO[bytes], size: int) -> dict[str, Any]:
    """Write ``content`` (read from its start) to the storage; return the job's result.

    The storage reads the file in chunks, so a large export never sits in memory.
    """
    storage = get_storage()
    content.seek(0)
    stored = storage.save(name, File(content, name=name))
    try:
        url: str | None = storage.url(stored)
    except NotImplementedError:
        url = None
    return {"file": stored, "url": url, "size": size}


def delete(names: Iterable[str]) -> int:
    """Delete the files this package wrote among ``names``; return how many existed."""
    storage = get_storage()
    deleted = 0
    for name in names:
        # A result edited by hand must not make cleanup delete someone else's file.
        if not name.startswith(f"{PREFIX}/") or ".." in name.split("/"):
            continue
        if storage.exists(name):
            storage.delete(name)
            deleted += 1
    return deleted
