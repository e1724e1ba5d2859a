"""Every code block of README.rst, run: the README cannot drift from the code.

* ``.. code-block:: python`` blocks whose first line names a settings or URLconf file
  (``# settings.py``, ``# urls.py``) run in a namespace of their own and are then checked (the
  settings are valid, the URLconf routes the app).
* Blocks whose first line names a module (``# myapp/jobs.py``) run as that module, so later
  blocks can import them (``from myapp.tasks import add``).
* Every other Python block runs in order, in one namespace, against the test database with the
  ``immediate`` transport (jobs run in-process), the locmem email backend and a temporary
  storage. The namespace holds ``user``, a saved user, as in a view's ``request.user``.
* Shell blocks are not run, but each command they name must exist: Makefile targets,
  management commands and their options, modules, extras, environment variables.
"""

from __future__ import annotations

import ast
import importlib.util
import re
import shlex
import sys
import textwrap
import traceback
import types
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.core import mail
from django.core.checks import ERROR, run_checks
from django.core.management import get_commands, load_command_class
from django.db.models import signals as model_signals
from django.dispatch import Signal
from django.test import override_settings
from django.urls import URLResolver

import django_qstash_jobs
from django_qstash_jobs import signals as job_signals
from django_qstash_jobs.conf import ENVIRONMENT_FALLBACKS, get_config
from django_qstash_jobs.devserver import cli as devserver_cli
from django_qstash_jobs.exports import export_registry
from django_qstash_jobs.jobs import cleanup as cleanup_jobs
from django_qstash_jobs.jobs import webhooks as webhook_jobs
from django_qstash_jobs.jobs.schemas import EMAIL_TEMPLATES
from django_qstash_jobs.models import JobExecution, JobStatus
from django_qstash_jobs.registry import registry
from django_qstash_jobs.reports import report_registry
from django_qstash_jobs.schedules import declaration_problems
from django_qstash_jobs.transports.immediate import clear_schedules

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.rst"
DIRECTIVE = re.compile(r"^(?P<indent> *)\.\. code-block:: *(?P<language>\S+) *$")
#: ``# myapp/tasks.py`` or ``# settings.py: ...`` on a block's first line.
FILE_COMMENT = re.compile(r"^# (?P<path>[\w/]+\.py)\b")
#: Names of the "file" blocks that are run on their own rather than imported.
CONFIGURATION_FILES = {"settings.py", "urls.py"}


@dataclass(frozen=True)
class Block:
    language: str
    #: 1-based line of the ``.. code-block::`` directive.
    line: int
    code: str

    @property
    def file(self) -> str | None:
        match = FILE_COMMENT.match(self.code)
        return match["path"] if match else None

    @property
    def module(self) -> str | None:
        """The module a block defines (``myapp.tasks``), if it names one."""
        file = self.file
        if file is None or file in CONFIGURATION_FILES:
            return None
        return file.removesuffix(".py").replace("/", ".")

    def __str__(self) -> str:
        return f"README.rst:{self.line}"


def read_blocks(text: str) -> list[Block]:
    lines = text.splitlines()
    blocks = []
    index = 0
    while index < len(lines):
        match = DIRECTIVE.match(lines[index])
        index += 1
        if match is None:
            continue
        indent = len(match["indent"])
        body: list[str] = []
        while index < len(lines):
            line = lines[index]
            if line.strip() and len(line) - len(line.lstrip()) <= indent:
                break
            body.append(line)
            index += 1
        code = textwrap.dedent("\n".join(body)).strip("\n")
        # Directive options (":caption: ...") come first; the README uses none.
        assert not code.startswith(":"), f"README.rst:{index}: options are not supported"
        blocks.append(Block(match["language"], index - len(body), code + "\n"))
    return blocks


BLOCKS = read_blocks(README.read_text())
PYTHON = [block for block in BLOCKS if block.language == "python"]
SETTINGS = [block for block in PYTHON if block.file == "settings.py"]
URLCONFS = [block for block in PYTHON if block.file == "urls.py"]
#: Module and usage blocks, in README order: usage blocks import the modules defined above them.
PROGRAM = [block for block in PYTHON if block.file not in CONFIGURATION_FILES]
SHELL = [block for block in BLOCKS if block.language == "shell"]


def run(block: Block, namespace: dict[str, Any]) -> None:
    """Execute ``block``; a failure names the block and shows its code."""
    try:
        exec(compile(block.code, str(block), "exec"), namespace)  # noqa: S102
    except Exception:
        pytest.fail(
            f"{block} failed:\n{textwrap.indent(block.code, '    ')}\n{traceback.format_exc()}"
        )


# -- The README itself ------------------------------------------------------------------------


def test_the_readme_has_blocks_of_each_kind() -> None:
    assert {block.language for block in BLOCKS} <= {"python", "shell", "javascript", "text"}
    assert len(PROGRAM) >= 20
    assert SETTINGS
    assert URLCONFS
    assert SHELL


@pytest.mark.parametrize(
    "document",
    [README, ROOT / "CHANGELOG.rst", ROOT / "docs" / "decisions.rst"],
    ids=lambda path: path.name,
)
def test_the_documents_are_valid_restructuredtext(document: Path) -> None:
    core = pytest.importorskip("docutils.core")
    problems: list[str] = []

    class Collect:
        def write(self, text: str) -> None:
            problems.append(text)

    core.publish_doctree(
        document.read_text(),
        settings_overrides={"warning_stream": Collect(), "report_level": 2, "halt_level": 5},
    )
    assert not problems, "".join(problems)


# -- Settings and URLconf blocks --------------------------------------------------------------


def settings_namespace() -> dict[str, Any]:
    """What every settings block of the README sets, merged in README order."""
    merged: dict[str, Any] = {}
    for block in SETTINGS:
        namespace: dict[str, Any] = {"__name__": "settings"}
        run(block, namespace)
        for name, value in namespace.items():
            if name.isupper() and isinstance(value, dict) and isinstance(merged.get(name), dict):
                merged[name] = {**merged[name], **value}
            elif name.isupper():
                merged[name] = value
    return merged


@pytest.mark.django_db  # the system checks look at the database
@pytest.mark.parametrize("block", SETTINGS, ids=str)
def test_a_settings_block_is_valid(block: Block, settings: Any) -> None:
    namespace: dict[str, Any] = {"__name__": "settings"}
    run(block, namespace)
    assert any(name.isupper() for name in namespace), f"{block} sets nothing"
    if "INSTALLED_APPS" in namespace:
        assert "django_qstash_jobs" in namespace["INSTALLED_APPS"]
    if "QSTASH_JOBS" in namespace:
        # On top of the suite's own settings: the README shows only what it is about.
        jobs_settings = {**settings.QSTASH_JOBS, **namespace["QSTASH_JOBS"]}
        with override_settings(QSTASH_JOBS=jobs_settings):
            assert get_config().unknown_keys == ()
            assert declaration_problems() == []
            errors = [
                message
                for message in run_checks(databases=["default"])
                if message.id and message.id.startswith("django_qstash_jobs")
                if message.level >= ERROR
            ]
            assert not errors, errors
    if "TASKS" in namespace:
        tasks = pytest.importorskip("django.tasks")
        with override_settings(TASKS=namespace["TASKS"]):
            backend = tasks.task_backends["default"]
            assert type(backend).__module__ == "django_qstash_jobs.tasks"
            errors = [
                message
                for message in run_checks(databases=["default"])
                if message.level >= ERROR and "tasks" in (message.id or "")
            ]
            assert not errors, errors


@pytest.mark.parametrize("block", URLCONFS, ids=str)
def test_a_urlconf_block_routes_the_app(block: Block) -> None:
    namespace: dict[str, Any] = {"__name__": "urls"}
    run(block, namespace)
    included = [
        pattern.urlconf_module
        for pattern in namespace["urlpatterns"]
        if isinstance(pattern, URLResolver)
    ]
    assert any(getattr(module, "__name__", "") == "django_qstash_jobs.urls" for module in included)


# -- The program: module and usage blocks, in order -------------------------------------------


#: Signals a README block may connect a receiver to; disconnected again after the test.
SIGNALS: list[Signal] = [
    *(value for value in vars(model_signals).values() if isinstance(value, Signal)),
    *(value for value in vars(job_signals).values() if isinstance(value, Signal)),
    webhook_jobs.webhook_received,
]


@pytest.fixture
def restored_registries() -> Iterator[None]:
    """Job types, handlers, reports, exports, hooks and receivers the README adds are removed."""
    handlers = (webhook_jobs.webhook_handlers, webhook_jobs.stripe_handlers)
    saved: list[tuple[Any, str, Any]] = [
        (registry, "_types", dict(registry._types)),
        (report_registry, "_functions", dict(report_registry._functions)),
        (export_registry, "_definitions", dict(export_registry._definitions)),
        (cleanup_jobs, "_hooks", dict(cleanup_jobs._hooks)),
        *((owner, "_registrations", list(owner._registrations)) for owner in handlers),
    ]
    receivers = {signal: list(signal.receivers) for signal in SIGNALS}
    modules = set(sys.modules)
    try:
        yield
    finally:
        for owner, attribute, value in saved:
            setattr(owner, attribute, value)
        for signal, kept in receivers.items():
            signal.receivers = kept
            signal.sender_receivers_cache.clear()
        for name in set(sys.modules) - modules:
            if name.split(".")[0] not in {"django", "django_qstash_jobs", "tests"}:
                del sys.modules[name]
        clear_schedules()


def as_module(name: str) -> types.ModuleType:
    """The module ``name``, created (with its packages) if it does not exist yet."""
    if name in sys.modules:
        return sys.modules[name]
    parent, _, _ = name.rpartition(".")
    module = types.ModuleType(name)
    module.__path__ = []  # a package too: myapp is the parent of myapp.jobs
    sys.modules[name] = module
    if parent:
        setattr(as_module(parent), name.rpartition(".")[2], module)
    return module


def weasyprint_loads() -> bool:
    try:
        importlib.import_module("weasyprint")
    except (ImportError, OSError):
        return False
    return True


@pytest.mark.django_db(transaction=True)
def test_the_program_blocks_run_in_order(
    settings: Any, tmp_path: Path, restored_registries: None
) -> None:
    # A temporary storage for reports and exports; the suite's settings already select the
    # immediate transport (jobs run in the enqueue call) and the locmem email backend.
    settings.MEDIA_ROOT = str(tmp_path / "media")
    settings.STORAGES = {
        **settings.STORAGES,
        "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    }
    readme_settings = settings_namespace()
    if "TASKS" in readme_settings and importlib.util.find_spec("django.tasks"):
        settings.TASKS = readme_settings["TASKS"]
    user = get_user_model().objects.create_user("john", "john@example.com", first_name="John")
    namespace: dict[str, Any] = {"__name__": "readme", "user": user}
    mail.outbox = []

    for block in PROGRAM:
        if "django.tasks" in block.code and not importlib.util.find_spec("django.tasks"):
            continue  # Django 5.2 without the backport: the Tasks section cannot run.
        module = block.module
        if module is None:
            run(block, namespace)
            continue
        target = as_module(module)
        target.__dict__.setdefault("__file__", str(README))
        run(block, target.__dict__)

    failed = JobExecution.objects.filter(status=JobStatus.FAILED)
    if not weasyprint_loads():  # PDF reports cannot be written here; everything else must run.
        failed = failed.exclude(error__contains="WeasyPrint")
    assert not failed.exists(), [(job.job_type, job.error) for job in failed]
    assert JobExecution.objects.filter(status=JobStatus.COMPLETED).count() >= 20
    sent = JobExecution.objects.filter(job_type="send_email", status=JobStatus.COMPLETED)
    assert set(sent.values_list("payload__template", flat=True)) >= set(EMAIL_TEMPLATES)
    assert len(mail.outbox) >= sent.count()


# -- Shell blocks: every command they name exists ---------------------------------------------


def shell_commands() -> list[tuple[Block, str]]:
    commands = []
    for block in SHELL:
        for line in block.code.splitlines():
            command = line.split(" #", 1)[0].strip()
            if command and not command.startswith("#"):
                commands.append((block, command))
    return commands


def makefile_targets() -> set[str]:
    text = (ROOT / "Makefile").read_text()
    return set(re.findall(r"^([\w.-]+):(?!=)", text, re.MULTILINE))


def check_management_command(arguments: list[str], directory: Path) -> None:
    name, options = arguments[0], arguments[1:]
    if directory != ROOT:  # another project's manage.py (the example's): its command file
        found = list(directory.glob(f"*/management/commands/{name}.py"))
        assert found, f"no management command {name!r} in {directory.name}"
        return
    commands = get_commands()
    assert name in commands, f"no management command {name!r}"
    command = load_command_class(commands[name], name)
    # Unknown options make argparse exit; known ones parse.
    command.create_parser("manage.py", name).parse_args(options)


def check_pip_install(arguments: list[str]) -> None:
    # The installed distribution's metadata: its name and extras, as pip would see them.
    distribution = metadata.metadata("django-qstash-jobs")
    extras = set(distribution.get_all("Provides-Extra") or [])
    for requirement in arguments:
        match = re.fullmatch(r"([\w-]+)(?:\[([\w,-]+)\])?", requirement)
        assert match, requirement
        assert match[1] == distribution["Name"], requirement
        for extra in filter(None, (match[2] or "").split(",")):
            assert extra in extras, f"no extra {extra!r}"


def check_command(command: str, directory: Path) -> Path:
    """Check one command run in ``directory``; return the directory the next one runs in."""
    words = shlex.split(command)
    if words[0] == "export":
        name = words[1].split("=", 1)[0]
        assert name in ENVIRONMENT_FALLBACKS.values(), f"{name} is read by nothing"
        return directory
    while words and re.fullmatch(r"[A-Z_]+=\S*", words[0]):
        words = words[1:]  # VARIABLE=value before a command
    program, arguments = words[0], words[1:]
    if program == "make":
        missing = set(arguments) - makefile_targets()
        assert not missing, f"no Makefile target {missing}"
    elif program == "python" and arguments[:1] == ["manage.py"]:
        check_management_command(arguments[1:], directory)
    elif program == "python" and arguments[:1] == ["-m"]:
        module = arguments[1]
        assert importlib.util.find_spec(module) is not None, f"no module {module}"
        if module == "django_qstash_jobs.devserver":
            parser = devserver_cli.argparse.ArgumentParser()
            devserver_cli.add_arguments(parser)
            parser.parse_args(arguments[2:])
    elif program == "pip" and arguments[:1] == ["install"]:
        check_pip_install(arguments[1:])
    elif program == "cd":
        directory = directory / arguments[0]
        assert directory.is_dir(), arguments[0]
    else:
        path = directory / program
        assert path.is_file(), f"unknown command {program!r}: teach this test about it"
        assert path.stat().st_mode & 0o111, f"{program} is not executable"
    return directory


@pytest.mark.parametrize(
    ("block", "command"), shell_commands(), ids=[f"{b}:{c}" for b, c in shell_commands()]
)
def test_a_shell_command_exists(block: Block, command: str) -> None:
    directory = ROOT  # commands are shown as run from the repository's root
    for part in command.split("&&"):
        directory = check_command(part.strip(), directory)


def test_the_readme_imports_only_public_names_from_the_package() -> None:
    imported = {
        alias.name
        for block in PYTHON
        for node in ast.walk(ast.parse(block.code))
        if isinstance(node, ast.ImportFrom) and node.module == "django_qstash_jobs"
        for alias in node.names
    }
    assert imported
    assert imported <= set(django_qstash_jobs.__all__), imported - set(django_qstash_jobs.__all__)
