"""Red-team findings against the console (issue 14): each test repeats a reproduction step on the real
console (Django test client, real files, real ``edge-inspector console`` processes)."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

from django.test import Client
from django.urls import reverse

from edge_inspector.console.models import Verdict

from .conftest import PASSWORD, REPO


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# --- Low: odds and ends -----------------------------------------------------------------------------
def test_static_url_with_nul_byte_is_404_not_500(db):
    """Red team: unauthenticated 500 on /static/console/%00.css (Path.resolve raised ValueError)."""
    c = Client(raise_request_exception=False)
    assert c.get("/static/console/%00.css").status_code == 404
    assert c.get("/static/console/vendor/%00/x.js").status_code == 404


def test_false_alarm_next_cannot_redirect_off_site(client):
    """Red team: the false-alarm form's ``next`` redirected to any site (an open redirect)."""
    verdict = Verdict.objects.create(line="l", camera="cam-0", frame=1, captured_at="2026-11-24T10:00:00Z",
                                     verdict="defect", score=0.9)
    url = reverse("review_verdict", args=[verdict.pk])
    for evil in ("https://evil.example/phish", "//evil.example/", "/\\evil.example", "javascript:alert(1)"):
        response = client.post(url, {"note": "x", "next": evil})
        assert response.status_code == 302
        assert response["Location"] == reverse("gallery"), evil
    response = client.post(url, {"note": "x", "next": "/gallery/?camera=cam-0"})
    assert response["Location"] == "/gallery/?camera=cam-0"


# --- item 4: file modes ----------------------------------------------------------------------------
def _console_cli(data_dir: Path, *args: str, umask: int = 0o022, **env) -> subprocess.CompletedProcess:
    # The console's own SQLite file in ``data_dir`` (also when the suite runs on PostgreSQL): its modes are tested.
    environment = {k: v for k, v in os.environ.items() if not k.startswith("EDGE_INSPECTOR_")
                   and k not in ("DJANGO_SETTINGS_MODULE", "DATABASE_URL")}
    environment.update(env)
    return subprocess.run([sys.executable, "-m", "edge_inspector", "console", "--data-dir", str(data_dir), *args],
                          input=PASSWORD + "\n", text=True, capture_output=True, cwd=REPO, env=environment,
                          timeout=120, preexec_fn=lambda: os.umask(umask))


def test_data_dir_database_and_secret_are_private(tmp_path):
    """Red team F4: data dir 0755 and console.sqlite3 0644 let any local user read session keys.

    A real ``edge-inspector console createadmin`` run under umask 022 (the usual default) must
    leave the folder 0700 and every file in it 0600; a data dir and database made by an older
    version with open modes are tightened at the next start."""
    data = tmp_path / "data"
    done = _console_cli(data, "createadmin", "--username", "admin")
    assert done.returncode == 0, done.stderr
    assert _mode(data) == 0o700
    for name in ("console.sqlite3", "secret_key"):
        assert _mode(data / name) == 0o600, name
    for path in data.rglob("*"):
        assert _mode(path) & 0o077 == 0, f"{path} is {oct(_mode(path))}"

    data.chmod(0o755)
    (data / "console.sqlite3").chmod(0o644)
    done = _console_cli(data, "manage", "migrate", "--verbosity", "0")
    assert done.returncode == 0, done.stderr
    assert _mode(data) == 0o700 and _mode(data / "console.sqlite3") == 0o600


def test_uploaded_zip_is_private(client, settings_console):
    from django.core.files.uploadedfile import SimpleUploadedFile

    from edge_inspector.console import datasets

    old = os.umask(0o022)
    try:
        path = datasets.store_upload(SimpleUploadedFile("a.zip", b"PK\x05\x06" + b"\0" * 18), "a")
    finally:
        os.umask(old)
    assert _mode(path) == 0o600 and _mode(path.parent) == 0o700


def test_systemd_console_unit_sets_private_modes():
    unit = (REPO / "deploy" / "systemd" / "edge-inspector-console.service").read_text()
    assert "UMask=0077" in unit and "StateDirectoryMode=0700" in unit
    assert "EDGE_INSPECTOR_DATA_DIR=/var/lib/edge-inspector-console" in unit


# --- item 10: disk and memory exhaustion by logged-in users ------------------------------------------
def _zip_bytes(members: dict[str, bytes], compression=None) -> bytes:
    import io
    import zipfile

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression or zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


def _leftovers(settings_console) -> list[Path]:
    from edge_inspector.data.archive import default_cache_dir

    uploads = sorted(Path(settings_console["UPLOADS_DIR"]).glob("*")) if Path(
        settings_console["UPLOADS_DIR"]).exists() else []
    cache = default_cache_dir()
    return uploads + (sorted(p for p in cache.glob("*") if "bomb" in p.name or "many" in p.name)
                      if cache.exists() else [])


def test_small_members_bomb_refused_before_extraction_and_deleted(client, settings_console):
    """Red team F10: 512 members of 1 MiB zeros (each under the per-member ratio check): 840 KB became
    537 MB in the cache, and the rejected upload and its extraction were never deleted."""
    from django.core.files.uploadedfile import SimpleUploadedFile

    from edge_inspector.console.models import Dataset

    data = _zip_bytes({f"bomb/train/good/{i:03d}.png": b"\0" * (1 << 20) for i in range(64)})
    assert len(data) < 200_000  # 64 MiB of members in ~70 kB
    client.post("/datasets/upload", {"name": "bomb", "archive": SimpleUploadedFile("bomb.zip", data)})
    record = Dataset.objects.get(name="bomb")
    assert record.status == "invalid" and "zip bomb" in record.error and "deleted" in record.error, record.error
    assert _leftovers(settings_console) == []


def test_entry_count_read_from_the_directory_record(client, settings_console, tmp_path):
    """Red team F10: 100,000 one-byte members were all extracted; 1,000,000 cost 472 MB before refusal.
    The count comes from the end-of-central-directory record, before ZipFile parses a member."""
    from django.core.files.uploadedfile import SimpleUploadedFile

    from edge_inspector.console import uploads
    from edge_inspector.console.models import Dataset

    settings_console["MAX_ZIP_ENTRIES"] = 500
    data = _zip_bytes({f"many/train/good/{i:04d}.png": b"x" for i in range(600)})
    client.post("/datasets/upload", {"name": "many", "archive": SimpleUploadedFile("many.zip", data)})
    record = Dataset.objects.get(name="many")
    assert record.status == "invalid" and "600 members exceed the limit of 500" in record.error, record.error
    assert _leftovers(settings_console) == []

    # A forged record: the directory declares 2**40 entries (ZIP64): refused from 64 KiB of tail alone.
    forged = tmp_path / "forged.zip"
    import struct

    zip64 = struct.pack("<4sQ2H2L4Q", b"PK\x06\x06", 44, 45, 45, 0, 0, 1 << 40, 1 << 40, 1 << 45, 0)
    locator = struct.pack("<4sLQL", b"PK\x06\x07", 0, 0, 1)
    eocd = struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, 0xFFFF, 0xFFFF, 0xFFFFFFFF, 0xFFFFFFFF, 0)
    forged.write_bytes(zip64 + locator + eocd)
    assert uploads.directory_size(forged) == (1 << 40, 1 << 45)
    limits = uploads.UploadLimits(1 << 30, 1 << 30, 50_000, 1 << 30)
    try:
        uploads.check_zip(forged, limits)
    except uploads.UploadRefused as exc:
        assert "1099511627776 members exceed the limit of 50000" in str(exc)
    else:
        raise AssertionError("forged ZIP64 directory accepted")


def test_upload_over_the_size_limit_is_cut_off_and_not_kept(client, settings_console):
    """Red team F10: a 900 MiB upload was stored in data/datasets. Here the limit is 1 MB and the
    body 3 MB: the handler stops it while it streams and nothing is stored."""
    from django.core.files.uploadedfile import SimpleUploadedFile

    from edge_inspector.console.models import AuditLog, Dataset

    settings_console["MAX_UPLOAD_MB"] = 1
    response = client.post("/datasets/upload", {"name": "huge", "archive": SimpleUploadedFile("huge.zip",
                                                                                            b"\0" * (3 << 20))})
    assert response.status_code == 413
    assert b"exceeds the limit of 1.0 MB" in response.content and b"EDGE_INSPECTOR_MAX_UPLOAD_MB" in response.content
    assert not Dataset.objects.filter(name="huge").exists()
    assert _leftovers(settings_console) == []
    assert AuditLog.objects.filter(action="dataset.upload_refused", username="operator").exists()


def test_per_user_quota(client, settings_console, demo_dataset):
    """Nothing stopped repeats: each user's stored archives plus their unpacked size count against a quota."""
    from django.core.files.uploadedfile import SimpleUploadedFile

    from edge_inspector.console.models import Dataset

    from .test_datasets import zip_folder

    data = zip_folder(demo_dataset, "widget")
    settings_console["UPLOAD_QUOTA_MB"] = 1  # the demo ZIP is ~0.2 MB packed, about as much unpacked
    accepted = 0
    for i in range(6):
        response = client.post("/datasets/upload", {"name": f"w{i}", "archive": SimpleUploadedFile("w.zip", data)})
        if response.status_code == 413:
            assert b"exceed your quota of 1.0 MB" in response.content
            break
        assert Dataset.objects.get(name=f"w{i}").status == "valid"
        accepted += 1
    assert 1 <= accepted < 6
    assert len(list(Path(settings_console["UPLOADS_DIR"]).glob("*.zip"))) == accepted


# --- Low: login throttling, TLS cookies -------------------------------------------------------------------
def test_login_lockout_after_repeated_failures(user, settings_console):
    """Red team Low: no login throttling or lockout, failed logins not audited."""
    from datetime import timedelta

    from edge_inspector.console.models import AuditLog, LoginFailure

    settings_console.update(LOGIN_MAX_FAILURES=3, LOGIN_LOCKOUT_MINUTES=15)
    c = Client()
    for _ in range(3):
        response = c.post("/accounts/login/", {"username": "operator", "password": "guess"})
        assert response.status_code == 200 and b"Wrong user name or password" in response.content
    response = c.post("/accounts/login/", {"username": "operator", "password": PASSWORD})  # right password
    assert response.status_code == 200 and b"Too many failed logins" in response.content
    assert b"try again in 15 minute(s)" in response.content
    assert "_auth_user_id" not in c.session
    assert AuditLog.objects.filter(action="user.login_failed", detail__username="operator").count() == 3
    assert AuditLog.objects.filter(action="user.login_locked").count() == 1
    assert LoginFailure.objects.count() == 3  # refusals while locked do not extend the lock

    LoginFailure.objects.update(created_at=timezone_now() - timedelta(minutes=16))  # the lock ages out
    response = c.post("/accounts/login/", {"username": "operator", "password": PASSWORD})
    assert response.status_code == 302
    assert AuditLog.objects.filter(action="user.login", username="operator").exists()
    assert not LoginFailure.objects.filter(username="operator").exists()


def test_login_lockout_per_address(user, settings_console):
    """Guessing many user names from one address is throttled too."""
    settings_console.update(LOGIN_MAX_FAILURES=100, LOGIN_MAX_FAILURES_PER_IP=4)
    c = Client(REMOTE_ADDR="10.0.0.9")
    for i in range(4):
        c.post("/accounts/login/", {"username": f"user{i}", "password": "guess"})
    response = c.post("/accounts/login/", {"username": "operator", "password": PASSWORD})
    assert b"Too many failed logins" in response.content
    other = Client(REMOTE_ADDR="10.0.0.10")
    assert other.post("/accounts/login/", {"username": "operator", "password": PASSWORD}).status_code == 302


def timezone_now():
    from django.utils import timezone

    return timezone.now()


_TLS_PROBE = r"""
import json, os, sys
os.environ["DJANGO_SETTINGS_MODULE"] = "edge_inspector.console.settings"
import django
django.setup()
from django.conf import settings
from django.core.management import call_command
from django.test.utils import setup_test_environment
setup_test_environment()  # lets the test client's host "testserver" in
call_command("migrate", interactive=False, verbosity=0)
settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
from django.contrib.auth import get_user_model
from django.test import Client
get_user_model().objects.create_user("u", password="a-long-enough-pass")
c = Client(HTTP_X_FORWARDED_PROTO="https")
login = c.get("/accounts/login/")
r = c.post("/accounts/login/", {"username": "u", "password": "a-long-enough-pass"})
print(json.dumps({"status": r.status_code, "session_secure": bool(r.cookies["sessionid"]["secure"]),
                  "csrf_secure": bool(login.cookies["csrftoken"]["secure"]),
                  "hsts": r.headers.get("Strict-Transport-Security", ""),
                  "plain_hsts": Client().get("/accounts/login/").headers.get("Strict-Transport-Security", "")}))
"""


def test_secure_cookies_and_hsts_behind_a_tls_proxy(tmp_path):
    """Red team Low: no way to set Secure cookies / HSTS / SECURE_PROXY_SSL_HEADER behind TLS. A real console
    settings module in a fresh process, with the variables a TLS deployment sets."""
    import json

    # A fresh console per data dir, on its own SQLite file (also when the suite runs on PostgreSQL).
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("EDGE_INSPECTOR_") and k not in ("DJANGO_SETTINGS_MODULE", "DATABASE_URL")}

    def probe(**extra):
        done = subprocess.run([sys.executable, "-c", _TLS_PROBE], capture_output=True, text=True, cwd=REPO,
                              env={**env, "EDGE_INSPECTOR_DATA_DIR": str(tmp_path / str(len(extra))), **extra},
                              timeout=120)
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout.strip().splitlines()[-1])

    tls = probe(EDGE_INSPECTOR_HTTPS="1", EDGE_INSPECTOR_TRUST_PROXY_HEADER="1")
    assert tls["status"] == 302 and tls["session_secure"] and tls["csrf_secure"]
    assert tls["hsts"] == "max-age=31536000" and tls["plain_hsts"] == ""  # HSTS only over (proxied) TLS
    plain = probe()
    assert not plain["session_secure"] and plain["hsts"] == ""  # the loopback default keeps working over HTTP


def test_unlock_command_ends_a_lockout(user, settings_console):
    from django.core.management import call_command

    settings_console.update(LOGIN_MAX_FAILURES=2)
    c = Client()
    for _ in range(2):
        c.post("/accounts/login/", {"username": "operator", "password": "guess"})
    assert b"Too many failed logins" in c.post("/accounts/login/", {"username": "operator",
                                                                  "password": PASSWORD}).content
    call_command("unlock", "operator")
    assert c.post("/accounts/login/", {"username": "operator", "password": PASSWORD}).status_code == 302


def test_deleting_a_dataset_frees_its_disk_and_quota(db, settings_console, demo_dataset):
    """The quota needs a way out: an engineer deletes their own upload (ZIP and extraction), not another's."""
    from django.core.files.uploadedfile import SimpleUploadedFile

    from edge_inspector.console.models import AuditLog, Dataset
    from edge_inspector.console.uploads import used_bytes

    from .conftest import make_client
    from .test_datasets import zip_folder

    eng, other = make_client("eng", "engineer"), make_client("eng2", "engineer")
    eng.post("/datasets/upload", {"name": "mine", "archive": SimpleUploadedFile("m.zip", zip_folder(demo_dataset,
                                                                                                    "w"))})
    from edge_inspector.data.archive import default_cache_dir

    record = Dataset.objects.get(name="mine")
    assert record.status == "valid" and used_bytes("eng") > 0
    extracted = [p for p in default_cache_dir().glob(f"{Path(record.path).stem}-*")]
    assert extracted  # validation extracted it into the cache
    assert other.post(f"/datasets/{record.pk}/delete").status_code == 403
    assert eng.post(f"/datasets/{record.pk}/delete").status_code == 302
    assert not Dataset.objects.filter(name="mine").exists()
    assert not Path(record.path).exists() and used_bytes("eng") == 0
    assert not any(p.exists() for p in extracted)
    assert _leftovers(settings_console) == []
    assert AuditLog.objects.get(action="dataset.delete").username == "eng"
