"""The whole console on real processes, driven from headless Chromium.

A real daemon (`edge-inspector run`: watched folder, a tiny ONNX placeholder model, ZeroMQ PUB,
JSONL, --pid-file) and a real `edge-inspector console` (--zmq to the daemon, --models-dir = the
daemon's models dir, --daemon-pid-file). In the browser: log in; bad uploads (not a ZIP, a ZIP
with a '..' member) show a clear message; a generated ZIP dataset validates; the default detector
trains at 64 px with the real `train`/`evaluate` CLIs; the comparison page lists it; Promote makes
the daemon reload onto the trained model; frames dropped into the watched folder come back as
verdicts on the dashboard. Screenshots of the dashboard and comparison page go to
$EDGE_INSPECTOR_SCREENSHOTS when set (how docs/images/console-*.png are made), else to tmp_path.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import zipfile
from functools import partial
from pathlib import Path

import pytest

from edge_inspector.card import load_card
from tests.fixtures.models import make_model
from tests.fixtures.waiting import wait_for

from .conftest import CHROMEDRIVER, CHROMIUM, PASSWORD, REPO, free_port

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not (CHROMIUM and CHROMEDRIVER),
                       reason="Debian chromium and chromium-driver are not installed (apt-get install "
                              "chromium chromium-driver)"),
]
MODEL = "e2e-fm"  # the name the job trains; the daemon's config points at models/e2e-fm.card.json


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


_wait = partial(wait_for, poll=0.2)  # page/broker polls need not spin faster


@pytest.fixture
def stack(tmp_path):
    """Real daemon + real console on free ports, sharing the models dir, pid file and frames root."""
    root, inbox = tmp_path / "daemon", tmp_path / "inbox"
    models_dir = root / "models"
    inbox.mkdir(parents=True)
    # The placeholder the daemon starts with: the path the promoted model will replace, another model name.
    card_path = make_model(models_dir, "detector", name=MODEL, size=64)
    placeholder = load_card(card_path).model_copy(update={"name": "placeholder-detector"})
    placeholder.save(card_path)
    zport, port, mport = free_port(), free_port(), free_port()
    endpoint = f"tcp://127.0.0.1:{zport}"
    cfg = tmp_path / "config.yaml"
    cfg.write_text(
        f"line: line-e2e\ncameras:\n  - id: cam-e2e\n    source: {{type: folder, path: {inbox}, settle_ms: 50, "
        f"poll_ms: 50}}\nmodels:\n  - path: {card_path}\n    threads: 1\n"
        f"publishers:\n  - {{type: zmq, endpoint: \"{endpoint}\"}}\n"
        f"  - {{type: jsonl, path: {tmp_path}/verdicts.jsonl}}\n"
        f"saving: {{mode: all, dir: {root / 'frames'}, overlay: true}}\n"
        f"metrics: {{enabled: true, host: 127.0.0.1, port: {mport}}}\n"
    )
    pid_file, daemon_log, console_log = tmp_path / "daemon.pid", tmp_path / "daemon.log", tmp_path / "console.log"
    env = {**os.environ, "EDGE_INSPECTOR_CACHE": str(tmp_path / "cache"), "PYTHONPATH": str(REPO),
           "OMP_NUM_THREADS": "1"}
    for var in ("DJANGO_SETTINGS_MODULE", "EDGE_INSPECTOR_DATA_DIR"):
        env.pop(var, None)
    cli = [sys.executable, "-m", "edge_inspector"]
    procs = []
    try:
        procs.append(subprocess.Popen([*cli, "run", "--config", str(cfg), "--pid-file", str(pid_file)],
                                      stdout=open(daemon_log, "wb"), stderr=subprocess.STDOUT, env=env))  # noqa: SIM115
        console_cli = [*cli, "console", "--data-dir", str(tmp_path / "data")]
        created = subprocess.run([*console_cli, "createadmin", "--username", "admin"], input=PASSWORD + "\n",
                                 text=True, capture_output=True, env=env, timeout=60)
        assert created.returncode == 0, created.stderr
        procs.append(subprocess.Popen(
            [*console_cli, "--port", str(port), "--zmq", endpoint, "--models-dir", str(models_dir),
             "--daemon-pid-file", str(pid_file), "--frames-root", str(root), "--daemon-config", str(cfg),
             "--daemon-metrics", f"http://127.0.0.1:{mport}/metrics"],
            stdout=open(console_log, "wb"), stderr=subprocess.STDOUT, env=env))  # noqa: SIM115
        logs = (daemon_log, console_log)
        _wait(lambda: pid_file.exists() or procs[0].poll() is not None, 30, "the daemon's pid file", logs)
        assert procs[0].poll() is None, daemon_log.read_text()
        _wait(lambda: _answers(f"http://127.0.0.1:{port}/accounts/login/") or procs[1].poll() is not None, 30,
              "the console", logs)
        assert procs[1].poll() is None, console_log.read_text()
        yield {"url": f"http://127.0.0.1:{port}", "inbox": inbox, "models_dir": models_dir, "logs": logs,
               "daemon_log": daemon_log, "jsonl": tmp_path / "verdicts.jsonl", "pid": procs[0].pid}
    finally:
        for proc in reversed(procs):
            _stop(proc)




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


def _jsonl(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.endswith("}")]


def _dataset_files(tmp_path: Path) -> dict[str, Path]:
    from edge_inspector.data.synthetic import generate_demo_dataset

    demo = generate_demo_dataset(tmp_path / "gen" / "demo", n_train=30, n_test_good=6, n_test_defect=3, size=64,
                                 seed=0)
    files = {"good": Path(shutil.make_archive(str(tmp_path / "gen" / "demo"), "zip", demo.parent, demo.name))}
    files["not_zip"] = tmp_path / "gen" / "notes.zip"
    files["not_zip"].write_text("this is a text file, not an archive\n")
    files["txt"] = tmp_path / "gen" / "notes.txt"
    files["txt"].write_text("plain text\n")
    files["evil"] = tmp_path / "gen" / "evil.zip"
    with zipfile.ZipFile(files["evil"], "w") as zf:
        zf.writestr("train/good/000.png", (demo / "train" / "good" / "000.png").read_bytes())
        zf.writestr("../escaped.png", b"x")
    files["frames"] = demo / "test"
    return files


def test_console_daemon_end_to_end_in_browser(stack, browser, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    url, logs = stack["url"], stack["logs"]
    shots = Path(os.environ.get("EDGE_INSPECTOR_SCREENSHOTS") or tmp_path)
    shots.mkdir(parents=True, exist_ok=True)
    files = _dataset_files(tmp_path)
    wait = WebDriverWait(browser, 20)

    from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException

    def text_of(by: str, value: str) -> str:
        """Text of an element, or "" while a navigation or the page's own refresh replaces it."""
        try:
            return browser.find_element(by, value).text
        except (NoSuchElementException, StaleElementReferenceException):
            return ""

    def body() -> str:
        return text_of(By.TAG_NAME, "body")

    def upload(name: str, path: Path) -> None:
        browser.get(url + "/datasets/")
        form = browser.find_element(By.CSS_SELECTOR, "form[action$='/datasets/upload']")
        form.find_element(By.NAME, "name").send_keys(name)
        form.find_element(By.NAME, "archive").send_keys(str(path))
        click(form.find_element(By.CSS_SELECTOR, "button[type=submit]"))

    def click(element) -> None:  # below the fold otherwise (1280x900); Bootstrap scrolls smoothly
        browser.execute_script("arguments[0].scrollIntoView({block: 'center', behavior: 'instant'});", element)
        element.click()

    def page_shows(text: str, timeout: float = 30) -> None:  # the dataset page refreshes itself while pending
        _wait(lambda: text in body(), timeout, f"{text!r} on {browser.current_url}", logs)

    # log in
    browser.get(url + "/")
    assert "/accounts/login/" in browser.current_url
    browser.find_element(By.ID, "id_username").send_keys("admin")
    browser.find_element(By.ID, "id_password").send_keys(PASSWORD)
    browser.find_element(By.ID, "login-submit").click()
    wait.until(ec.presence_of_element_located((By.ID, "live-status")))

    # bad uploads: each one says what is wrong on the page
    upload("wrong-extension", files["txt"])
    page_shows("notes.txt: expected a .zip file")
    upload("not-a-zip", files["not_zip"])
    page_shows("not a ZIP archive")
    assert "Validation failed" in body()
    upload("traversal", files["evil"])
    page_shows("unsafe member '../escaped.png'")
    assert "would escape the extraction folder" in body()

    # a good ZIP validates
    upload("demo", files["good"])
    page_shows("Total 39 images, 3 defective")
    assert "Validation failed" not in body()

    # train the default detector (the form's first choice) at 64 px; the job page follows it to the end
    click(browser.find_element(By.LINK_TEXT, "Train a model on it"))
    training_page = browser.current_url  # /training/?dataset=N

    def train(name: str, size: int) -> None:
        browser.get(training_page)
        assert browser.find_element(By.ID, "id_kind").get_attribute("value") == "feature_memory"
        browser.find_element(By.ID, "id_name").send_keys(name)
        browser.find_element(By.ID, "id_input_size").send_keys(str(size))
        browser.find_element(By.ID, "id_extra_args").send_keys("--threads 1")
        click(browser.find_element(By.CSS_SELECTOR, "form[action$='/training/'] button[type=submit]"))
        wait.until(ec.presence_of_element_located((By.ID, "job-status")))
        _wait(lambda: text_of(By.ID, "job-status") in ("done", "failed", "cancelled"), 180,
              f"training job {name} to finish", logs)
        assert browser.find_element(By.ID, "job-status").text == "done", browser.find_element(By.ID, "job-log").text
        wait.until(ec.visibility_of_element_located((By.ID, "job-model-link")))

    train(MODEL, 64)
    train(f"{MODEL}-48px", 48)  # a second model, so the comparison has something to compare

    # comparison page: the trained model with its evaluation metrics
    browser.get(url + "/models/")
    table = browser.find_element(By.ID, "comparison")
    assert f"{MODEL} v1" in table.text and f"{MODEL}-48px v1" in table.text and "image.auroc" in table.text
    wait.until(lambda d: d.execute_script("return !!document.getElementById('metrics-chart').offsetHeight"))
    time.sleep(0.5)  # Chart.js animation
    assert browser.save_screenshot(str(shots / "console-compare.png"))

    # promote: files land in the daemon's models dir and the daemon reloads onto the trained model
    click(browser.find_element(By.LINK_TEXT, f"{MODEL} v1"))
    click(browser.find_element(By.ID, "promote-button"))
    page_shows(f"daemon pid {stack['pid']} signalled to reload")
    page_shows(f"The daemon confirms {MODEL} v1 is live")  # from the daemon's own model_info
    assert "deployed" in body()
    _wait(lambda: any("reloaded" in line and f"models ['{MODEL}']" in line
                      for line in stack["daemon_log"].read_text().splitlines()), 30, "the daemon to reload", logs)
    assert load_card(stack["models_dir"] / f"{MODEL}.card.json").input.height == 64

    # verdicts published by the real daemon appear on the dashboard
    browser.get(url + "/")
    # the badge follows the daemon: alive by its pid, but an idle line (no verdict for a minute) is not "live"
    wait.until(lambda d: d.find_element(By.ID, "live-status").get_attribute("data-state") in ("live", "silent"))
    frames = sorted(files["frames"].glob("*/*.png"))
    for frame in frames:
        shutil.copy(frame, stack["inbox"] / f"{frame.parent.name}_{frame.name}")
    _wait(lambda: sum("cam-e2e" in r.text for r in browser.find_elements(By.CSS_SELECTOR, "#verdicts tr"))
          >= len(frames), 40, f"{len(frames)} verdicts on the dashboard", logs)
    wait.until(ec.text_to_be_present_in_element((By.ID, "camera-line-e2e__cam-e2e"), "%"))
    wait.until(lambda d: d.find_element(By.ID, "live-status").get_attribute("data-state") == "live")
    published = _wait(lambda: len(lines := _jsonl(stack["jsonl"])) == len(frames) and lines, 10,
                      "the JSONL publisher", logs)
    assert {m["name"] for v in published for m in v["models"]} == {MODEL}  # verdicts from the promoted model
    time.sleep(1.5)  # let the thumbnails load for the screenshot
    assert browser.save_screenshot(str(shots / "console-dashboard.png"))
    for name in ("console-compare.png", "console-dashboard.png"):
        assert (shots / name).stat().st_size > 10_000
