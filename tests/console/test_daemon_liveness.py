"""The dashboard badge follows the daemon, not the page: real daemon, real console, headless Chromium.

Integrators stopped the daemon and the dashboard kept a green "live" badge (only "last 26 s ago"
gave it away). Now the badge turns red, "daemon unreachable for N s", from the daemon's pid, and
"no verdicts for N s" when the stream falls silent.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from edge_inspector.console.subscriber import DaemonWatch
from tests.fixtures.models import make_model, write_frames

from .conftest import CHROMEDRIVER, CHROMIUM, NO_BROWSER, PASSWORD, REPO, free_port
from .test_browser import wait_http


def test_watch_states_from_a_real_pid(tmp_path):
    pid_file = tmp_path / "d.pid"
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        pid_file.write_text(f"{proc.pid}\n")
        watch = DaemonWatch(pid_file, None, silence_s=5)
        now = time.time()
        assert watch.status(now - 1, now)["state"] == "live"
        silent = watch.status(now - 12, now)
        assert silent["state"] == "silent" and silent["text"] == "no verdicts for 12 s"
        proc.kill()
        proc.wait()
        first = watch.status(now, now)
        later = watch.status(now, now + 7)
        assert first["state"] == later["state"] == "down"
        assert later["text"].startswith("daemon unreachable for 7 s")
        assert f"pid {proc.pid} is not running" in later["text"]
    finally:
        if proc.poll() is None:
            proc.kill()
    assert DaemonWatch(None, None).status(None)["state"] == "unknown"
    assert DaemonWatch(tmp_path / "missing.pid", None).status(time.time())["state"] == "down"


@pytest.mark.skipif(not (CHROMIUM and CHROMEDRIVER), reason=NO_BROWSER)
def test_badge_turns_red_when_the_daemon_dies(tmp_path, browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    card = make_model(tmp_path / "models", name="live-fm")
    frames = write_frames(tmp_path / "frames", n=3)
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    cfg = tmp_path / "config.yaml"
    cfg.write_text(f"line: line1\ncameras:\n  - id: cam-live\n    source: {{type: folder, path: {inbox}, poll_ms: 50, "
                   f"settle_ms: 50}}\nmodels:\n  - path: {card}\n    threads: 1\n"
                   f"publishers:\n  - {{type: zmq, endpoint: \"{endpoint}\"}}\nmetrics: {{enabled: false}}\n")
    pid_file = tmp_path / "daemon.pid"
    env = {**os.environ, "EDGE_INSPECTOR_CACHE": str(tmp_path / "cache"), "PYTHONPATH": str(REPO),
           "OMP_NUM_THREADS": "1"}
    for var in ("DJANGO_SETTINGS_MODULE", "EDGE_INSPECTOR_DATA_DIR"):
        env.pop(var, None)
    cli = [sys.executable, "-m", "edge_inspector"]
    daemon = subprocess.Popen([*cli, "run", "--config", str(cfg), "--pid-file", str(pid_file)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    console_cli = [*cli, "console", "--data-dir", str(tmp_path / "data")]
    created = subprocess.run([*console_cli, "createadmin", "--username", "admin"], input=PASSWORD + "\n", text=True,
                             capture_output=True, env=env, timeout=60)
    assert created.returncode == 0, created.stderr
    port = free_port()
    console = subprocess.Popen([*console_cli, "--port", str(port), "--zmq", endpoint, "--daemon-pid-file",
                                str(pid_file), "--frames-root", str(tmp_path)],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    try:
        deadline = time.monotonic() + 30
        while not pid_file.exists():
            assert daemon.poll() is None and time.monotonic() < deadline, "daemon did not start"
            time.sleep(0.1)
        url = f"http://127.0.0.1:{port}"
        wait_http(url + "/accounts/login/", 30, console)
        wait = WebDriverWait(browser, 20)
        browser.get(url + "/")
        browser.find_element(By.ID, "id_username").send_keys("admin")
        browser.find_element(By.ID, "id_password").send_keys(PASSWORD)
        browser.find_element(By.ID, "login-submit").click()
        badge = (By.ID, "live-status")
        wait.until(lambda d: d.find_element(*badge).get_attribute("data-state") == "live")
        for i, frame in enumerate(sorted(frames.glob("*.png"))):  # verdicts flowing: still live
            (inbox / f"{i}.png").write_bytes(frame.read_bytes())
        wait.until(lambda d: any("cam-live" in r.text for r in d.find_elements(By.CSS_SELECTOR, "#verdicts tr")))
        assert browser.find_element(*badge).text == "live"
        daemon.send_signal(signal.SIGKILL)  # a crash: no clean exit, the pid file stays behind
        daemon.wait()
        wait.until(ec.text_to_be_present_in_element(badge, "daemon unreachable for"))
        element = browser.find_element(*badge)
        assert "text-bg-danger" in element.get_attribute("class") and "is not running" in element.text
        assert browser.save_screenshot(str(tmp_path / "daemon-down.png"))
    finally:
        for proc in (daemon, console):
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
