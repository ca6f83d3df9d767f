"""End to end in a real browser: the `edge-inspector console` process, headless Chromium, ZeroMQ.

Logs in, opens the dashboard, publishes a verdict over ZeroMQ and waits for it to appear on the
page without a reload; saves a screenshot under the test's tmp dir.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.error
import urllib.request

import cv2
import numpy as np
import pytest
import zmq

from edge_inspector.messages import Verdict as VerdictMessage

from .conftest import CHROMEDRIVER, CHROMIUM, PASSWORD, REPO, free_port

pytestmark = pytest.mark.skipif(not (CHROMIUM and CHROMEDRIVER),
                                reason="Debian chromium and chromium-driver are not installed (apt-get install "
                                       "chromium chromium-driver)")


def wait_http(url: str, timeout: float, proc: subprocess.Popen) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"console exited with {proc.returncode}:\n{proc.stdout.read()}")
        try:
            urllib.request.urlopen(url, timeout=1)  # noqa: S310 - local test server
            return
        except urllib.error.HTTPError:
            return  # any HTTP answer means it is serving
        except OSError:
            time.sleep(0.2)
    raise AssertionError(f"console did not answer on {url} within {timeout}s")


@pytest.fixture
def console(tmp_path):
    """A real `edge-inspector console` process on free ports, with an admin created through the CLI."""
    data_dir, frames = tmp_path / "data", tmp_path / "daemon"
    (frames / "frames").mkdir(parents=True)
    port, zmq_port = free_port(), free_port()
    endpoint = f"tcp://127.0.0.1:{zmq_port}"
    env = {**os.environ, "EDGE_INSPECTOR_CACHE": str(tmp_path / "cache"), "PYTHONPATH": str(REPO)}
    env.pop("DJANGO_SETTINGS_MODULE", None)
    env.pop("EDGE_INSPECTOR_DATA_DIR", None)
    cli = [sys.executable, "-m", "edge_inspector", "console", "--data-dir", str(data_dir)]
    created = subprocess.run([*cli, "createadmin", "--username", "admin"], input=PASSWORD + "\n", text=True,
                             capture_output=True, env=env, timeout=60)
    assert created.returncode == 0, created.stderr
    assert "created admin user admin" in created.stdout
    proc = subprocess.Popen([*cli, "--port", str(port), "--zmq", endpoint, "--frames-root", str(frames),
                             "--models-dir", str(tmp_path / "models")],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    try:
        wait_http(f"http://127.0.0.1:{port}/accounts/login/", 30, proc)
        yield {"url": f"http://127.0.0.1:{port}", "zmq": endpoint, "frames": frames}
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()




def test_dashboard_shows_zmq_verdict_live(console, browser, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    ctx = zmq.Context.instance()
    pub = ctx.socket(zmq.PUB)
    pub.setsockopt(zmq.LINGER, 0)
    pub.bind(console["zmq"])
    frame = np.zeros((96, 128, 3), np.uint8)
    cv2.rectangle(frame, (30, 30), (70, 60), (255, 255, 255), -1)
    cv2.imwrite(str(console["frames"] / "frames" / "4242.jpg"), frame)
    cv2.imwrite(str(console["frames"] / "frames" / "4242_overlay.jpg"), cv2.applyColorMap(frame, cv2.COLORMAP_JET))
    try:
        wait = WebDriverWait(browser, 20)
        browser.get(console["url"] + "/")
        assert "/accounts/login/" in browser.current_url  # login required
        browser.find_element(By.ID, "id_username").send_keys("admin")
        browser.find_element(By.ID, "id_password").send_keys(PASSWORD)
        browser.find_element(By.ID, "login-submit").click()
        wait.until(ec.text_to_be_present_in_element((By.ID, "live-status"), "live"))
        browser.execute_script("window.__notReloaded = true;")

        msg = VerdictMessage(line="line-7", camera="cam-browser", frame=4242, captured_at="2026-11-24T12:00:00.000Z",
                             verdict="defect", score=0.97, defect_type="scratch", latency_ms={"total": 12.5},
                             image="frames/4242.jpg")
        row = (By.CSS_SELECTOR, "#verdicts tr")
        deadline = time.monotonic() + 20
        found = False
        while time.monotonic() < deadline and not found:
            # Re-published until seen: PUB drops messages until the console's SUB has joined;
            # the console deduplicates on (line, camera, frame, captured_at).
            pub.send_multipart([b"edge-inspector/line-7/cam-browser/verdict", msg.to_json().encode()])
            time.sleep(0.5)
            found = any("cam-browser" in r.text and "4242" in r.text for r in browser.find_elements(*row))
        assert found, "verdict published over ZeroMQ never appeared on the dashboard"
        wait.until(ec.text_to_be_present_in_element((By.ID, "camera-line-7__cam-browser"), "defect 100.0 %"))
        assert browser.execute_script("return window.__notReloaded === true;"), "the page was reloaded"
        wait.until(ec.text_to_be_present_in_element((By.ID, "feed-status"), "s ago"))
        assert console["zmq"] in browser.find_element(By.ID, "feed-status").text
        rows = [r.text for r in browser.find_elements(*row) if "4242" in r.text]
        assert len(rows) == 1 and "defect" in rows[0] and "scratch" in rows[0]
        thumb = browser.find_element(By.CSS_SELECTOR, "#camera-line-7__cam-browser img.thumb")
        wait.until(lambda d: d.execute_script("return arguments[0].complete && arguments[0].naturalWidth", thumb))
        assert browser.execute_script("return arguments[0].naturalWidth", thumb) == 128  # overlay served
        shot = tmp_path / "dashboard.png"
        assert browser.save_screenshot(str(shot)) and shot.stat().st_size > 1000
    finally:
        pub.close()
