"""Browser fixtures: Debian's Chromium driven by Playwright against pytest-django's live server.

Skipped, with the reason, where Chromium or Playwright is not installed
(``apt-get install chromium``, ``pip install playwright``; ``playwright install`` is not needed).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import django.contrib.admin
import pytest

import django_qstash_jobs
from tests.concurrency import at_once

T = TypeVar("T")

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = ROOT / "var" / "screenshots"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]

try:
    from playwright.sync_api import Browser, Page, sync_playwright
except ImportError:  # pragma: no cover - depends on the machine
    sync_playwright = None  # type: ignore[assignment]


def missing() -> str | None:
    """Why the browser tests cannot run here, or None when they can."""
    if sync_playwright is None:
        return "Playwright is not installed (pip install playwright)"
    if not (shutil.which(CHROMIUM) or Path(CHROMIUM).is_file()):
        return f"Chromium is not installed at {CHROMIUM} (apt-get install chromium)"
    return None


SKIP_REASON = missing()


def outside_loop(function: Callable[[], T]) -> T:
    """Run a database call from a short-lived thread, and close that thread's connection.

    Playwright's sync API keeps an event loop in the test's thread, where Django refuses
    database calls; a connection opened there anyway would also outlive the test and keep
    PostgreSQL from dropping the test database.
    """
    (result,) = at_once(function, 1)
    return result


@pytest.fixture
def served_static(settings: Any, tmp_path: Path) -> None:
    """Serve the admin's and this app's static files from the live server.

    The test settings do not install staticfiles, so the live server serves STATIC_ROOT as is;
    a folder of links to the two apps' static folders gives the pages their styles and scripts.
    """
    root = tmp_path / "static"
    root.mkdir()
    for package in (django.contrib.admin, django_qstash_jobs):
        for folder in (Path(package.__file__).parent / "static").iterdir():
            (root / folder.name).symlink_to(folder, target_is_directory=True)
    settings.STATIC_ROOT = str(root)


@pytest.fixture
def browser() -> Iterator[Browser]:
    assert sync_playwright is not None
    with sync_playwright() as playwright:
        instance = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
        )
        yield instance
        instance.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1440, "height": 900})
    context.set_default_timeout(15_000)
    tab = context.new_page()
    yield tab
    # Closing the page ends its event streams before the database is torn down.
    context.close()


@pytest.fixture
def screenshot(page: Page) -> Any:
    """``screenshot("name")`` saves the whole page as var/screenshots/<name>.png."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)

    def take(name: str) -> Path:
        path = SCREENSHOTS / f"{name}.png"
        page.screenshot(path=str(path), full_page=True)
        return path

    return take
