"""The console on PostgreSQL: a real throwaway cluster (Debian ``postgresql``), a representative part
of the console suite run against it in a child pytest, and the plant follower's writes checked in
the server's own tables."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid

import pytest

from .conftest import REPO

# The parts of the suite that write verdicts (ZeroMQ and MQTT followers, retention), log in, check
# roles, validate datasets and run training jobs in worker processes sharing the database.
SUITE = ["test_subscriber.py", "test_mqtt_feed.py", "test_auth.py", "test_roles.py", "test_datasets.py",
         "test_jobs.py", "test_promote.py"]


def test_database_url_names_a_socket_folder():
    from edge_inspector.console.conf import ConsoleConfigError, parse_database_url

    for url in ("postgres://edge@/plant?host=/run/postgresql", "postgresql://edge@%2Frun%2Fpostgresql/plant"):
        db = parse_database_url(url, REPO)
        assert (db["ENGINE"], db["NAME"], db["USER"], db["HOST"], db["PORT"]) == (
            "django.db.backends.postgresql", "plant", "edge", "/run/postgresql", "")
    db = parse_database_url("postgres://edge:s%40cret@db.plant:5433/plant", REPO)
    assert (db["HOST"], db["PORT"], db["PASSWORD"]) == ("db.plant", "5433", "s@cret")
    with pytest.raises(ConsoleConfigError, match="needs a database name"):
        parse_database_url("postgres://edge@db.plant:5432/", REPO)


@pytest.mark.slow
def test_console_suite_on_postgresql(postgres, tmp_path):
    name = f"console_{uuid.uuid4().hex[:8]}"
    url = postgres.create_database(name)
    env = {**os.environ, "EDGE_INSPECTOR_TEST_DATABASE_URL": url, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    for var in ("DATABASE_URL", "DJANGO_SETTINGS_MODULE", "EDGE_INSPECTOR_DATA_DIR", "EDGE_INSPECTOR_TEST_POSTGRES"):
        env.pop(var, None)
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", "not slow",
         *[str(REPO / "tests" / "console" / f) for f in SUITE]],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    tail = (proc.stdout + proc.stderr)[-4000:]
    assert proc.returncode == 0, f"console suite on PostgreSQL failed:\n{tail}"
    assert " passed" in proc.stdout and " skipped" not in proc.stdout.splitlines()[-1], tail
    # It really ran on this server: the console's tables and migrations are in the new database.
    with postgres.connect(name) as conn:
        applied = {r[0] for r in conn.execute("SELECT name FROM django_migrations WHERE app = 'console'")}
        assert "0003_plant_lines" in applied
        tables = {r[0] for r in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")}
        assert {"console_verdict", "console_linestatus", "console_trainingjob"} <= tables
        indexes = {r[0] for r in conn.execute("SELECT indexname FROM pg_indexes WHERE tablename = 'console_verdict'")}
        assert {"verdict_line_camera_id", "verdict_received", "verdict_dedupe"} <= indexes
