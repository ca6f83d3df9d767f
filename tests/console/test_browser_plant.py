"""Two lines live through one broker, stored in PostgreSQL, in headless Chromium.

Real processes only: two daemons (`edge-inspector run`, lines ``line-a`` and ``line-b``, watched
folders, MQTT to one Mosquitto), one `edge-inspector console --mqtt-host` on a throwaway PostgreSQL
cluster (DATABASE_URL). In the browser: the lines page lists both lines online with their parts;
the line page and the camera page show their verdicts live; stopping one daemon turns its line
offline on the page (its retained status), without a reload. The rows are then read back from
PostgreSQL itself. The lines page screenshot goes to $EDGE_INSPECTOR_SCREENSHOTS when set (how
docs/images/console-lines.png is made), else to tmp_path.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from functools import partial
from pathlib import Path

import cv2
import numpy as np
import pytest

from tests.fixtures.models import make_model
from tests.fixtures.waiting import wait_for
from tests.publishers.util import unique_prefix

from .conftest import CHROMEDRIVER, CHROMIUM, NO_BROWSER, PASSWORD, REPO, free_port

pytestmark = [pytest.mark.slow, pytest.mark.skipif(not (CHROMIUM and CHROMEDRIVER), reason=NO_BROWSER)]
LINES = ("line-a", "line-b")


_wait = partial(wait_for, poll=0.2)  # page/broker polls need not spin faster


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _answers(url: str) -> bool:
    import urllib.error
    import urllib.request

    try:
        urllib.request.urlopen(url, timeout=1)  # noqa: S310 - local test server
    except urllib.error.HTTPError:
        return True
    except OSError:
        return False
    return True


def drop_frames(inbox: Path, start: int, n: int) -> None:
    """Dark parts pass the tiny detector (its score is the brightness); every third one is bright: a defect."""
    for i in range(start, start + n):
        tmp = inbox / f".f{i:04d}.png"
        cv2.imwrite(str(tmp), np.full((64, 64, 3), 230 if i % 3 == 0 else 10, dtype=np.uint8))
        tmp.rename(inbox / f"f{i:04d}.png")


@pytest.fixture
def plant(tmp_path, mosquitto, postgres):
    """Two daemons on one broker and a console following the broker, stored in a new PostgreSQL database."""
    prefix = unique_prefix()
    db_name = f"plant_{uuid.uuid4().hex[:8]}"
    database_url = postgres.create_database(db_name)
    card = make_model(tmp_path / "models", "detector", name="plant-fm", size=64)
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "EDGE_INSPECTOR_CACHE": str(tmp_path / "c"),
           "DATABASE_URL": database_url}
    for var in ("DJANGO_SETTINGS_MODULE", "EDGE_INSPECTOR_DATA_DIR"):
        env.pop(var, None)
    cli = [sys.executable, "-m", "edge_inspector"]
    procs: dict[str, subprocess.Popen] = {}
    logs, inboxes = [], {}
    try:
        for line in LINES:
            inbox = inboxes[line] = tmp_path / line / "inbox"
            inbox.mkdir(parents=True)
            cfg = tmp_path / line / "config.yaml"
            cfg.write_text(
                f"line: {line}\ncameras:\n  - id: cam-0\n    source: {{type: folder, path: {inbox}, settle_ms: 50, "
                f"poll_ms: 50}}\nmodels:\n  - path: {card}\n    threads: 1\npublishers:\n"
                f"  - {{type: mqtt, host: {mosquitto.host}, port: {mosquitto.port}, topic_prefix: {prefix}, "
                f"client_id: daemon-{line}-{prefix}, spool_dir: {tmp_path / line / 'spool'}, "
                f"reconnect_min_delay: 0.2, reconnect_max_delay: 1.0}}\nmetrics: {{enabled: false}}\n")
            log = tmp_path / line / "daemon.log"
            logs.append(log)
            procs[line] = subprocess.Popen([*cli, "run", "--config", str(cfg)], stdout=open(log, "wb"),  # noqa: SIM115
                                           stderr=subprocess.STDOUT, env=env)
        console_cli = [*cli, "console", "--data-dir", str(tmp_path / "console-data")]
        created = subprocess.run([*console_cli, "createadmin", "--username", "admin"], input=PASSWORD + "\n",
                                 text=True, capture_output=True, env=env, timeout=90)
        assert created.returncode == 0, created.stderr
        port = free_port()
        console_log = tmp_path / "console.log"
        logs.append(console_log)
        procs["console"] = subprocess.Popen(
            [*console_cli, "--port", str(port), "--zmq", f"tcp://127.0.0.1:{free_port()}",
             "--mqtt-host", mosquitto.host, "--mqtt-port", str(mosquitto.port), "--mqtt-prefix", prefix,
             "--mqtt-client-id", f"console-{prefix}", "--keep-days", "30"],
            stdout=open(console_log, "wb"), stderr=subprocess.STDOUT, env=env)  # noqa: SIM115
        _wait(lambda: _answers(f"http://127.0.0.1:{port}/accounts/login/") or procs["console"].poll() is not None,
              60, "the console", logs)
        assert procs["console"].poll() is None, console_log.read_text()
        yield {"url": f"http://127.0.0.1:{port}", "procs": procs, "inboxes": inboxes, "logs": logs,
               "postgres": postgres, "db": db_name}
    finally:
        for proc in procs.values():
            _stop(proc)


def test_two_lines_live_through_one_broker_stored_in_postgresql(plant, browser, tmp_path):
    from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
    from selenium.webdriver.common.by import By

    url, logs = plant["url"], plant["logs"]
    shots = Path(os.environ.get("EDGE_INSPECTOR_SCREENSHOTS") or tmp_path)
    shots.mkdir(parents=True, exist_ok=True)

    def text_of(css: str) -> str:
        try:
            return browser.find_element(By.CSS_SELECTOR, css).text
        except (NoSuchElementException, StaleElementReferenceException):
            return ""

    browser.get(url + "/lines/")
    assert "/accounts/login/" in browser.current_url
    browser.find_element(By.ID, "id_username").send_keys("admin")
    browser.find_element(By.ID, "id_password").send_keys(PASSWORD)
    browser.find_element(By.ID, "login-submit").click()
    _wait(lambda: "/lines/" in browser.current_url, 20, "the lines page after login")
    browser.execute_script("window.__notReloaded = true;")

    # Both daemons say "online" (retained status) and their verdicts arrive, live on the page.
    for line in LINES:
        _wait(lambda line=line: "online" in text_of(f"#line-{line} .line-state"), 60, f"{line} online", logs)
    drop_frames(plant["inboxes"]["line-a"], 0, 6)
    drop_frames(plant["inboxes"]["line-b"], 100, 4)
    _wait(lambda: text_of("#line-line-a td:nth-child(4)") == "6" and text_of("#line-line-b td:nth-child(4)") == "4",
          60, "6 parts of line-a and 4 of line-b on the lines page", logs)
    assert "cam-0" in text_of("#line-line-a") and "s ago" in text_of("#line-line-b")
    assert text_of("#line-line-a td:nth-child(6)") == "33.3 %"  # frames 0 and 3 of 0-5 are defects
    assert browser.save_screenshot(str(shots / "console-lines.png"))

    # The line page: its camera card and its verdicts only, updating without a reload.
    browser.find_element(By.LINK_TEXT, "line-b").click()
    _wait(lambda: "4 parts" in text_of("#camera-line-b__cam-0"), 20, "line-b's camera card", logs)
    assert text_of("#line-status") == "online"
    drop_frames(plant["inboxes"]["line-b"], 104, 2)
    _wait(lambda: "6 parts" in text_of("#camera-line-b__cam-0"), 30, "2 more parts of line-b live", logs)
    rows = [r.text for r in browser.find_elements(By.CSS_SELECTOR, "#verdicts tr")]
    assert len(rows) == 6 and all("line-b" in r for r in rows), rows
    assert "MQTT" in text_of("#feed-status")

    # The camera page of line-a.
    browser.get(url + "/lines/line-a/cam-0/")
    _wait(lambda: "6 parts" in text_of("#camera-line-a__cam-0"), 20, "line-a cam-0 page", logs)
    assert text_of("#page-title") == "Camera cam-0"

    # Stopping line-a's daemon: its line turns offline on the lines page, live.
    browser.get(url + "/lines/")
    browser.execute_script("window.__notReloaded = true;")
    _stop(plant["procs"]["line-a"])
    _wait(lambda: "offline" in text_of("#line-line-a .line-state"), 30, "line-a offline", logs)
    assert "online" in text_of("#line-line-b .line-state")
    assert browser.execute_script("return window.__notReloaded === true;"), "the lines page was reloaded"

    # Read back from PostgreSQL itself: every verdict of both lines, and the lines' status.
    with plant["postgres"].connect(plant["db"]) as conn:
        counts = dict(conn.execute("SELECT line, count(*) FROM console_verdict GROUP BY line").fetchall())
        states = dict(conn.execute("SELECT line, state FROM console_linestatus").fetchall())
    assert counts == {"line-a": 6, "line-b": 6}
    assert states == {"line-a": "offline", "line-b": "online"}
    assert (shots / "console-lines.png").stat().st_size > 10_000
