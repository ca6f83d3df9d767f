"""Console test setup: Django configured against a throwaway data dir and a migrated SQLite file.

The same suite runs against PostgreSQL: ``EDGE_INSPECTOR_TEST_DATABASE_URL=postgres://...`` names an
empty database (tests/console/test_postgres.py starts a cluster and does that for a part of the
suite), and ``EDGE_INSPECTOR_TEST_POSTGRES=1`` starts a throwaway cluster for this run (the whole
suite: ``EDGE_INSPECTOR_TEST_POSTGRES=1 pytest tests/console``).

Tests are plain pytest functions. ``db`` wraps a test in a transaction that is rolled back (the
test client runs in the same thread and connection); ``committed_db`` is for tests where another
thread (the ZeroMQ subscriber) must see and write rows, and clears the tables afterwards.
"""

from __future__ import annotations

import atexit
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
_DATA = Path(tempfile.mkdtemp(prefix="edge-inspector-console-tests-"))
atexit.register(shutil.rmtree, _DATA, True)
os.environ["EDGE_INSPECTOR_DATA_DIR"] = str(_DATA)
os.environ["EDGE_INSPECTOR_CACHE"] = str(_DATA / "archive-cache")  # ZIP extraction stays in the tmp dir
os.environ.pop("DATABASE_URL", None)
if os.environ.get("EDGE_INSPECTOR_TEST_POSTGRES") == "1" and not os.environ.get("EDGE_INSPECTOR_TEST_DATABASE_URL"):
    from tests.fixtures.postgres import start_cluster

    _CLUSTER = start_cluster()
    atexit.register(_CLUSTER.stop)
    os.environ["EDGE_INSPECTOR_TEST_DATABASE_URL"] = _CLUSTER.create_database("console_tests")
if os.environ.get("EDGE_INSPECTOR_TEST_DATABASE_URL"):
    # Also for the processes the tests start (job workers, console servers): one database.
    os.environ["DATABASE_URL"] = os.environ["EDGE_INSPECTOR_TEST_DATABASE_URL"]
os.environ["DJANGO_SETTINGS_MODULE"] = "edge_inspector.console.settings"

import django  # noqa: E402

_UMASK = os.umask(0o022)
os.umask(_UMASK)
django.setup()
# The console sets umask 077 for its own process (settings.py); the rest of the suite runs in this
# process too and keeps the umask it started with (console file modes are tested in subprocesses).
os.umask(_UMASK)

from django.core.management import call_command  # noqa: E402
from django.test.utils import setup_test_environment  # noqa: E402

setup_test_environment()
from django.conf import settings as _settings  # noqa: E402

# Fast hashing: the production PBKDF2 cost adds seconds per login and tests nothing here.
_settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
call_command("migrate", interactive=False, verbosity=0)

PASSWORD = "test-pass-4711"
STANDIN_TRAIN = f"{sys.executable} {REPO / 'tests' / 'console' / 'standin_train.py'}"
STANDIN_EVALUATE = f"{sys.executable} {REPO / 'tests' / 'console' / 'standin_evaluate.py'}"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(autouse=True)
def _fresh_stats_cache():
    """The dashboard's per-camera stats are cached for 2 s; each test starts without a cache."""
    from edge_inspector.console import views

    views._stats_cache = (0.0, [])


@pytest.fixture
def db():
    from django.db import transaction

    with transaction.atomic():
        yield
        transaction.set_rollback(True)


@pytest.fixture
def committed_db():
    from django.contrib.auth import get_user_model

    from edge_inspector.console.models import AuditLog, Dataset, TrainedModel, TrainingJob, Verdict

    yield
    for model in (Verdict, TrainedModel, TrainingJob, Dataset, AuditLog, get_user_model()):
        model.objects.all().delete()


@pytest.fixture
def user(db):
    """The logged-in user of most tests: an admin (not a superuser); test_roles.py covers the others."""
    from django.contrib.auth import get_user_model

    from edge_inspector.console.roles import Role, set_role

    user = get_user_model().objects.create_user("operator", password=PASSWORD)
    set_role(user, Role.ADMIN)
    return user


def make_client(username: str, role: str):
    """A logged-in test client for a new user with ``role`` (viewer, engineer, admin)."""
    from django.contrib.auth import get_user_model
    from django.test import Client

    from edge_inspector.console.roles import Role, set_role

    user = get_user_model().objects.create_user(username, password=PASSWORD)
    set_role(user, Role.parse(role))
    c = Client()
    c.force_login(user)
    return c


@pytest.fixture
def client(user):
    from django.test import Client

    c = Client()
    c.force_login(user)
    return c


@pytest.fixture
def settings_console(tmp_path, tmp_path_factory):
    from django.conf import settings

    saved = dict(settings.CONSOLE)
    settings.CONSOLE.update(
        MODELS_DIR=tmp_path / "daemon" / "models",
        DAEMON_PID_FILE=None,
        FRAMES_ROOT=tmp_path / "daemon",
        UPLOADS_DIR=tmp_path / "uploads",
        JOBS_DIR=tmp_path / "jobs",
        TRAIN_COMMAND=STANDIN_TRAIN,
        EVALUATE_COMMAND=STANDIN_EVALUATE,
        BACKGROUND_VALIDATION=False,  # tests run in a rolled-back transaction a thread cannot see
        DATASET_ROOTS=[tmp_path_factory.getbasetemp().resolve()],  # the generated datasets live there
    )
    yield settings.CONSOLE
    settings.CONSOLE.clear()
    settings.CONSOLE.update(saved)


@pytest.fixture
def fake_daemon(tmp_path):
    """A child process that writes a pid file and records every SIGHUP it gets (a stand-in daemon)."""
    pid_file, record = tmp_path / "daemon.pid", tmp_path / "sighups.txt"
    recorder = REPO / "tests" / "console" / "sighup_recorder.py"
    proc = subprocess.Popen([sys.executable, str(recorder), str(pid_file), str(record)])
    deadline = time.monotonic() + 10
    while not pid_file.exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    yield proc, pid_file, record
    proc.kill()
    proc.wait()


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver") or ("/usr/bin/chromedriver" if Path("/usr/bin/chromedriver").exists()
                                                else None)
NO_BROWSER = "Debian chromium and chromium-driver are not installed (apt-get install chromium chromium-driver)"


@pytest.fixture
def browser(tmp_path):
    """Headless Debian Chromium driven by selenium; a fresh profile per test."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1280,900", f"--user-data-dir={tmp_path / 'chromium-profile'}"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()
