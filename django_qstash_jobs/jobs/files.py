"""Where reports and exports go: the storage named by ``QSTASH_JOBS["STORAGE"]``."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from datetime import date
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


def delete_written_before(day: date) -> int:
    """Delete the files this package wrote in day folders before ``day``; return how many.

    Cleanup deletes the file each expired row names; this finds those no row names: the file of
    a run that lost its claim (another delivery took the job over) or whose outcome could not be
    recorded, and what a worker killed mid-upload left. A storage that cannot list is skipped.
    """
    storage = get_storage()
    deleted = 0
    try:
        for folder in _day_folders_before(storage, day):
            for name in _listdir(storage, folder)[1]:
                storage.delete(f"{folder}/{name}")
                deleted += 1
    except NotImplementedError:
        pass
    return deleted


def _day_folders_before(storage: Storage, day: date) -> Iterator[str]:
    """The ``qstash_jobs/<kind>/YYYY/MM/DD`` folders of :func:`file_name` dated before ``day``."""
    for kind in _listdir(storage, PREFIX)[0]:
        for year in _numbered(_listdir(storage, f"{PREFIX}/{kind}")[0]):
            for month in _numbered(_listdir(storage, f"{PREFIX}/{kind}/{year}")[0]):
                folder = f"{PREFIX}/{kind}/{year}/{month}"
                for day_of_month in _numbered(_listdir(storage, folder)[0]):
                    try:
                        written = date(int(year), int(month), int(day_of_month))
                    except ValueError:  # not a date: no folder of ours
                        continue
                    if written < day:
                        yield f"{folder}/{day_of_month}"


def _listdir(storage: Storage, path: str) -> tuple[list[str], list[str]]:
    try:
        return storage.listdir(path)
    except FileNotFoundError:
        return [], []


def _numbered(names: list[str]) -> list[str]:
    return [name for name in names if name.isascii() and name.isdigit()]
