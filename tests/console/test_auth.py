"""Login on every page, CSRF on POSTs, admin creation, settings parsing."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.test import Client
from django.urls import reverse

from edge_inspector.console.admin_user import AdminUserError, create_admin
from edge_inspector.console.conf import ConsoleConfigError, parse_database_url
from edge_inspector.console.models import AuditLog, Verdict

from .conftest import PASSWORD

PAGES = ["/", "/gallery/", "/datasets/", "/training/", "/models/", "/audit/", "/api/verdicts", "/api/jobs/1",
         "/frames/1/frame"]


@pytest.mark.parametrize("url", PAGES)
def test_every_page_requires_login(db, url):
    response = Client().get(url)
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/?next=")


def test_login_then_dashboard(user):
    c = Client()
    assert c.post("/accounts/login/", {"username": "operator", "password": "wrong-password"}).status_code == 200
    response = c.post("/accounts/login/", {"username": "operator", "password": PASSWORD})
    assert response.status_code == 302 and response["Location"] == "/"
    page = c.get("/")
    assert page.status_code == 200
    assert b"Latest verdicts" in page.content and b"dashboard.js" in page.content


def test_vendored_static_served_without_login(db):
    c = Client()
    css = c.get("/static/console/vendor/bootstrap/bootstrap.min.css")
    assert css.status_code == 200 and b"Bootstrap" in b"".join(css.streaming_content)
    assert c.get("/static/console/vendor/chartjs/chart.umd.min.js").status_code == 200
    assert c.get("/static/../settings.py").status_code == 404


def test_csrf_enforced_on_post(user):
    verdict = Verdict.objects.create(line="l", camera="cam-0", frame=1, captured_at="2026-11-24T10:00:00Z",
                                     verdict="defect", score=0.9)
    c = Client(enforce_csrf_checks=True)
    c.force_login(user)
    url = reverse("review_verdict", args=[verdict.pk])
    assert c.post(url, {"note": "x"}).status_code == 403
    verdict.refresh_from_db()
    assert not verdict.review
    page = c.get("/gallery/")
    token = page.context["csrf_token"]
    assert c.post(url, {"note": "glare", "csrfmiddlewaretoken": str(token)}).status_code == 302
    verdict.refresh_from_db()
    assert verdict.review and verdict.review_note == "glare" and verdict.reviewed_by == "operator"
    assert AuditLog.objects.filter(action="verdict.false_alarm", username="operator").exists()


def test_create_admin_checks_password(db):
    with pytest.raises(AdminUserError, match="password"):
        create_admin("boss", "short")
    user, created = create_admin("boss", "a-long-enough-pass")
    assert created and user.is_superuser
    _, created = create_admin("boss", "another-long-pass")
    assert not created
    assert Client().login(username="boss", password="another-long-pass")


def test_database_url_parsing(tmp_path):
    assert parse_database_url("sqlite:///c.db", tmp_path)["NAME"] == str(tmp_path / "c.db")
    assert parse_database_url("sqlite:////var/x.db", tmp_path)["NAME"] == str(Path("/var/x.db"))
    pg = parse_database_url("postgres://ei:p%40ss@db.local:5433/console", tmp_path)
    assert pg["ENGINE"] == "django.db.backends.postgresql"
    assert (pg["USER"], pg["PASSWORD"], pg["HOST"], pg["PORT"], pg["NAME"]) == ("ei", "p@ss", "db.local", "5433",
                                                                                 "console")
    with pytest.raises(ConsoleConfigError, match="unsupported scheme"):
        parse_database_url("mysql://x/y", tmp_path)


def test_createadmin_management_command(db, monkeypatch):
    from django.core.management import CommandError, call_command

    monkeypatch.setenv("EDGE_INSPECTOR_ADMIN_PASSWORD", "from-the-env-123")
    call_command("createadmin", username="ops")
    assert Client().login(username="ops", password="from-the-env-123")
    monkeypatch.setenv("EDGE_INSPECTOR_ADMIN_PASSWORD", "x")
    with pytest.raises(CommandError, match="password"):
        call_command("createadmin", username="ops2")


def test_migrations_match_models():
    """The committed migrations cover every model change (makemigrations --check exits 1 otherwise)."""
    from django.core.management import call_command

    call_command("makemigrations", "console", check=True, dry_run=True, verbosity=0)
