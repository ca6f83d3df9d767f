"""No committed file carries an absolute path of a development machine (a home folder, this checkout's
location, a pytest temp folder): such a path is wrong everywhere else and leaks where the work was done.
Container paths (/opt/edge-inspector, /var/lib/..., /root/.cache in the image build) are not machine paths."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MACHINE_PATH = re.compile(r"(?<![\w.~-])(/home/[\w.-]+|/Users/[\w.-]+|/work/[\w.-]+|/tmp/pytest-of-[\w.-]+|"
                          r"[A-Za-z]:\\Users\\)")
BINARY = {".png", ".jpg", ".jpeg", ".onnx", ".zip", ".pb", ".ico", ".gz"}


def machine_paths(text: str) -> list[str]:
    return MACHINE_PATH.findall(text)


def test_the_pattern_finds_what_it_should_and_nothing_else() -> None:
    assert machine_paths('default="/home/anna/data/mvtec"') == ["/home/anna"]
    assert machine_paths("card: /work/main/models/x.card.json") == ["/work/main"]
    assert machine_paths("tmp /tmp/pytest-of-root/pytest-3/x") == ["/tmp/pytest-of-root"]
    assert machine_paths("/opt/edge-inspector/bin/python /var/lib/edge-inspector /root/.cache/pip ~/work/x") == []


def test_no_tracked_file_names_a_development_machine_path() -> None:
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    files = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
    found = []
    for name in files.decode().split("\0"):
        path = ROOT / name
        if not name or path.suffix.lower() in BINARY or not path.is_file() or path == Path(__file__).resolve():
            continue
        try:
            text = path.read_text()
        except UnicodeDecodeError:
            continue
        for lineno, line in enumerate(text.splitlines(), 1):
            found += [f"{name}:{lineno}: {hit}" for hit in machine_paths(line)]
    assert not found, "absolute machine paths in committed files:\n" + "\n".join(found[:50])
