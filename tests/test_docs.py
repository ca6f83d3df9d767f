"""The user guide stays true to the code.

- the generated references (docs/reference/) match what ``edge_inspector.docsgen`` produces now;
- ``mkdocs build --strict`` passes (broken links, missing anchors and pages fail it), offline;
- every example the guide marks is executed or validated: the getting-started commands run on
  generated data in a temporary folder, configuration snippets validate with the real loader,
  verdict examples validate with the real message model, and the consumer examples receive real
  messages from Mosquitto and ZeroMQ.

Marking a block in a page: an HTML comment right before the fenced block, e.g.
``<!-- test: run -->`` (shell commands, run in order per page), ``<!-- test: config -->`` (a
complete config.yaml), ``<!-- test: config-error -->`` (an invalid config.yaml, followed by the
```text block the loader must print), ``<!-- test: verdict -->`` (a verdict message). A run block
may shrink sizes for the test: ``<!-- test: run small="--replay 200=>--replay 12" -->``
(``;`` separates several replacements), and name text its output must contain, as the page says
it will: ``expect="nothing was changed"`` (``;`` separates several).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from edge_inspector import docsgen

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
VENV_BIN = Path(sys.executable).parent
MARKER = re.compile(r"<!--\s*test:\s*(?P<kind>[\w-]+)(?P<args>.*?)\s*-->\s*\n+"
                    r"(?P<indent>[ \t]*)```(?P<lang>[\w-]*)\n(?P<body>.*?)\n(?P=indent)```", re.S)
FOLLOWING_TEXT = re.compile(r"```text\n(?P<body>.*?)\n```", re.S)


@dataclass(frozen=True)
class Block:
    page: str
    kind: str
    args: dict[str, str]
    lang: str
    body: str
    after: str  # the page text following the block

    @property
    def id(self) -> str:
        return f"{self.page}:{self.kind}"


def marked_blocks(kind: str) -> list[Block]:
    blocks = []
    for page in sorted(DOCS.rglob("*.md")):
        text = page.read_text()
        for m in MARKER.finditer(text):
            if m.group("kind") != kind:
                continue
            args = dict(re.findall(r'(\w+)="([^"]*)"', m.group("args")))
            body = textwrap.dedent(m.group("body"))  # blocks inside list items are indented
            blocks.append(Block(str(page.relative_to(DOCS)), kind, args, m.group("lang"), body, text[m.end():]))
    return blocks


def _params(kind: str) -> list:
    blocks = marked_blocks(kind)
    counts: dict[str, int] = {}
    params = []
    for b in blocks:
        counts[b.page] = counts.get(b.page, 0) + 1
        params.append(pytest.param(b, id=f"{b.page}#{counts[b.page]}"))
    return params


KINDS = ("run", "config", "config-error", "verdict")


def test_every_marker_is_understood() -> None:
    """A marker the parser misses would silently skip its block: count them independently."""
    for page in sorted(DOCS.rglob("*.md")):
        text = page.read_text()
        markers = re.findall(r"<!--\s*test:\s*([\w-]+)", text)
        parsed = [m.group("kind") for m in MARKER.finditer(text)]
        assert parsed == markers, f"docs/{page.relative_to(DOCS)}: markers {markers}, parsed blocks {parsed}"
        assert set(markers) <= set(KINDS), f"docs/{page.relative_to(DOCS)}: unknown marker kind in {markers}"


# -- generated references --------------------------------------------------------------------------


def test_generated_references_are_fresh(capsys: pytest.CaptureFixture[str]) -> None:
    rc = docsgen.main(["--check"])
    err = capsys.readouterr().err
    assert rc == 0, f"stale references (run python -m edge_inspector.docsgen):\n{err}"


def test_check_names_stale_missing_and_orphan_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    docs = tmp_path / "docs"
    assert docsgen.main(["--docs-dir", str(docs)]) == 0
    ref = docs / "reference"
    assert docsgen.main(["--check", "--docs-dir", str(docs)]) == 0
    capsys.readouterr()

    verdict = ref / "verdict.md"
    verdict.write_text(verdict.read_text().replace("| `frame` |", "| `frame_no` |"))
    (ref / "cli.md").unlink()
    (ref / "old-page.md").write_text("# gone\n")
    assert docsgen.main(["--check", "--docs-dir", str(docs)]) == 1
    err = capsys.readouterr().err
    assert f"{verdict}: stale" in err
    assert f"{ref / 'cli.md'}: missing" in err
    assert f"{ref / 'old-page.md'}: orphan" in err
    assert "model-card.md" not in err  # untouched files are not reported

    assert docsgen.main(["--docs-dir", str(docs)]) == 0  # regenerating repairs all three
    assert not (ref / "old-page.md").exists()
    assert docsgen.main(["--check", "--docs-dir", str(docs)]) == 0


def test_references_cover_the_code() -> None:
    """Spot checks that the generator walked the real sources, not an empty schema."""
    from edge_inspector.card import ModelCard
    from edge_inspector.cli import build_parser
    from edge_inspector.messages import Verdict

    pages = {p.name: p.text for p in docsgen.generate()}
    for field in Verdict.model_json_schema(by_alias=True)["properties"]:
        assert f"| `{field}` |" in pages["verdict.md"]
    for field in ModelCard.model_json_schema(by_alias=True)["properties"]:
        assert f"| `{field}` |" in pages["model-card.md"]
    schema = json.loads(pages["verdict.schema.json"])
    assert schema["required"] == Verdict.model_json_schema(by_alias=True)["required"]
    subcommands = [a for a in build_parser()._actions if a.__class__.__name__ == "_SubParsersAction"]
    for name in subcommands[0].choices:
        assert f"## {name} {{#{name}}}" in pages["cli.md"]
    if "metrics.md" in pages:
        from edge_inspector.metrics import Metrics

        names = {f.name for f in Metrics().registry.collect()}
        for name in names:
            assert f"`{name}" in pages["metrics.md"], name
    if "configuration.md" in pages:
        assert "## CameraConfig {#cameraconfig}" in pages["configuration.md"]


def test_generator_needs_no_torch() -> None:
    """The references come from the runtime modules, which must import without torch (DEVELOPING.md)."""
    code = ("import sys; sys.modules['torch'] = None\n"
            "from edge_inspector import docsgen\n"
            "print(len(docsgen.generate()))")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert int(proc.stdout.strip()) == len(docsgen.generate())


def test_schema_walker_links_nested_and_discriminated_models() -> None:
    from typing import Annotated, Literal

    from pydantic import BaseModel, Field

    class A(BaseModel):
        type: Literal["a"] = "a"
        x: int = Field(3, ge=1, description="an x | with a pipe")

    class B(BaseModel):
        type: Literal["b"] = "b"
        tags: list[str] = Field(default_factory=lambda: ["t"])

    class Root(BaseModel):
        item: Annotated[A | B, Field(discriminator="type")]
        items: list[A] = Field(default_factory=list, min_length=1, max_length=4)
        stamp: str = Field(default_factory=lambda: str(uuid.uuid4()))

    text = "\n".join(docsgen.schema_sections(docsgen.json_schema(Root), "Root"))
    assert "## A {#a}" in text and "## B {#b}" in text
    assert "Chosen by `type`: `a` -> [A](#a), `b` -> [B](#b)" in text
    assert "| `x` | integer (>= 1) | `3` | an x \\| with a pipe |" in text
    assert '| `tags` | list of string | `["t"]` |' in text  # factory default documented
    assert "| `stamp` | string | *computed* |" in text  # a non-constant factory is not
    assert "list of [A](#a) (1 to 4 items)" in text


# -- the site ----------------------------------------------------------------------------------------


def test_every_generated_page_is_in_the_nav() -> None:
    class Loader(yaml.SafeLoader):  # mkdocs.yml uses mkdocs' own tags (!relative); their values don't matter here
        pass

    Loader.add_multi_constructor("!", lambda loader, suffix, node: None)
    config = yaml.load((ROOT / "mkdocs.yml").read_text(), Loader=Loader)  # noqa: S506 - SafeLoader subclass
    nav = json.dumps(config["nav"])
    for page in docsgen.generate():
        if page.name.endswith(".md"):
            assert f'"reference/{page.name}"' in nav, f"reference/{page.name} is generated but not in mkdocs.yml nav"


def test_mkdocs_build_strict_offline(tmp_path: Path) -> None:
    site = tmp_path / "site"
    # from another folder than the repository, as a packager or CI step might: paths must not depend on the cwd
    proc = subprocess.run([str(VENV_BIN / "mkdocs"), "build", "--strict", "-f", str(ROOT / "mkdocs.yml"),
                           "--site-dir", str(site)], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120,
                          env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})  # material's end-of-life banner
    assert proc.returncode == 0, proc.stdout + proc.stderr
    index = (site / "index.html").read_text()
    assert "fonts.googleapis.com" not in index and "fonts.gstatic.com" not in index
    assert (site / "reference" / "verdict.schema.json").is_file()
    consumer = (site / "integration.html").read_text()
    assert "Deduper" in consumer  # the example file was included, not a dangling snippet line
    # browsable from disk (file://, no server): every local link names a file that exists, none a folder
    for page in site.rglob("*.html"):
        if page.name == "404.html":  # only a web server shows it (absolute links by design)
            continue
        for href in re.findall(r'href="([^"#?]+)', page.read_text()):
            if re.match(r"[a-z]+:|//", href) or href.startswith("data:"):
                continue
            target = (page.parent / href).resolve()
            assert target.is_file(), f"{page.relative_to(site)} links to {href}: not a file, a browser on file:// fails"


# -- examples ---------------------------------------------------------------------------------------


@pytest.fixture
def config_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(tmp_path / "credentials"))
    monkeypatch.setenv("CAMERA_PASSWORD", "secret")


@pytest.mark.parametrize("block", _params("config"))
def test_config_examples_validate(block: Block, config_env: None, tmp_path: Path) -> None:
    from edge_inspector.config import parse_config
    from edge_inspector.runtime.daemon import publisher_warning

    cfg = parse_config(block.body, source=block.id, base=tmp_path)
    # a reader copies these: one without publishers would run and send every verdict nowhere
    assert publisher_warning(cfg) is None, f"{block.page}: a copyable configuration without publishers"


@pytest.mark.parametrize("block", _params("config-error"))
def test_config_error_examples_print_what_the_loader_prints(block: Block, tmp_path: Path) -> None:
    from edge_inspector.config import ConfigError, load_config

    shown = FOLLOWING_TEXT.search(block.after)
    assert shown, f"{block.page}: a config-error block must be followed by a ```text block with the message"
    path = tmp_path / "config.yaml"
    path.write_text(block.body + "\n")
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert str(err.value).replace(str(path), "config.yaml") == shown.group("body")


@pytest.mark.parametrize("block", _params("verdict"))
def test_verdict_examples_validate(block: Block) -> None:
    from edge_inspector.messages import Verdict

    Verdict.model_validate_json(block.body)
    shown = set(json.loads(block.body))
    fields = set(Verdict.model_json_schema(by_alias=True)["properties"])
    assert shown == fields, f"{block.page}: example lacks {sorted(fields - shown)}"  # show the whole message
    schema = Verdict.model_json_schema(by_alias=True)
    message = json.loads(block.body)
    for key, def_name in (("models", "ModelVote"), ("regions", "Region")):
        wanted = set(schema["$defs"][def_name]["properties"])
        for item in message[key]:
            assert set(item) == wanted, f"{block.page}: a {key} item lacks {sorted(wanted - set(item))}"


def test_mqtt_consumer_example_dedupes(mosquitto) -> None:
    import paho.mqtt.client as mqtt

    from edge_inspector.messages import Verdict

    prefix = f"docs-{uuid.uuid4().hex[:8]}"
    pub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    pub.connect(mosquitto.host, mosquitto.port)
    pub.loop_start()
    try:
        pub.publish(f"{prefix}/line-1/status", "online", qos=1, retain=True).wait_for_publish(5)
        consumer = subprocess.Popen(
            [sys.executable, str(DOCS / "examples" / "mqtt_consumer.py"), "--host", mosquitto.host,
             "--port", str(mosquitto.port), "--prefix", prefix, "--client-id", prefix, "--count", "5"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        first = consumer.stdout.readline()  # the retained status: proof that it has subscribed
        assert first.strip() == f"{prefix}/line-1/status: online", first
        verdicts = [
            Verdict(line="line-1", camera="cam-0", frame=1, captured_at="t", verdict="ok", score=0.1),
            Verdict(line="line-1", camera="cam-0", frame=1, captured_at="t", verdict="ok", score=0.1),  # re-sent
            Verdict(line="line-1", camera="cam-0", frame=2, captured_at="t", verdict="defect", score=0.9,
                    defect_type="scratch"),
            Verdict(line="line-1", camera="cam-1", frame=2, captured_at="t", verdict="error", error="decode"),
            # after a daemon restart frame numbers start again: same (camera, frame), a new part
            Verdict(line="line-1", camera="cam-0", frame=1, captured_at="t2", verdict="ok", score=0.2),
            # schema 2: the trigger named the part
            Verdict(line="line-1", camera="cam-0", frame=2, captured_at="t2", verdict="ok", score=0.2,
                    part_id="SN-7", triggered_at="t2"),
        ]
        for v in verdicts:
            pub.publish(f"{prefix}/line-1/{v.camera}/verdict", v.to_json(), qos=1).wait_for_publish(5)
        out, _ = consumer.communicate(timeout=20)
    finally:
        pub.loop_stop()
        pub.disconnect()
    assert consumer.returncode == 0, out
    assert out.splitlines() == [
        "line-1/cam-0 frame 1: pass",
        "line-1/cam-0 frame 2: reject (scratch, score 0.9)",
        "line-1/cam-1 frame 2: hold for manual check (decode)",
        "line-1/cam-0 frame 1: pass",
        "line-1/cam-0 frame 2 part SN-7: pass",
    ]


def test_zmq_consumer_example_receives_verdicts() -> None:
    import zmq

    from edge_inspector.messages import Verdict

    ctx = zmq.Context()
    pub = ctx.socket(zmq.PUB)
    port = pub.bind_to_random_port("tcp://127.0.0.1")
    consumer = subprocess.Popen(
        [sys.executable, str(DOCS / "examples" / "zmq_consumer.py"), "--endpoint", f"tcp://127.0.0.1:{port}",
         "--topic", "edge-inspector/line-1/", "--count", "2"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 20
        frame = 0
        while consumer.poll() is None and time.monotonic() < deadline:  # PUB/SUB: resend until it listens
            frame += 1
            v = Verdict(line="line-1", camera="cam-0", frame=frame, captured_at="t", verdict="ok", score=0.2)
            pub.send_multipart([b"edge-inspector/line-1/cam-0/verdict", v.to_json().encode()])
            pub.send_multipart([b"edge-inspector/line-2/cam-0/verdict", v.to_json().encode()])  # filtered out
            pub.send_multipart([b"edge-inspector/line-1/cam-0/alarm", b'{"alarm": "drift", "active": true}'])
            time.sleep(0.1)
        out, _ = consumer.communicate(timeout=5)
    finally:
        if consumer.poll() is None:
            consumer.kill()
        pub.close(linger=0)
        ctx.term()
    lines = [line for line in out.splitlines() if not line.startswith("edge-inspector/line-1/cam-0/alarm: ")]
    assert consumer.returncode == 0 and len(lines) == 2, out
    assert all(line.startswith("edge-inspector/line-1/cam-0/verdict: frame ") and line.endswith(" ok score 0.2")
               for line in lines), out


def _apply_small(command: str, spec: str) -> str:
    for pair in filter(None, spec.split(";")):
        old, new = pair.split("=>")
        assert old.strip() in command, f"small=: {old.strip()!r} not in the command it should shrink"
        command = command.replace(old.strip(), new.strip())
    return command


def _nav_pages() -> list[str]:
    """Pages in the order of mkdocs.yml's nav: the order a reader follows them (and runs their commands)."""
    class Loader(yaml.SafeLoader):  # mkdocs.yml uses mkdocs' own tags (!relative); their values don't matter here
        pass

    Loader.add_multi_constructor("!", lambda loader, suffix, node: None)
    config = yaml.load((ROOT / "mkdocs.yml").read_text(), Loader=Loader)  # noqa: S506 - SafeLoader subclass
    return re.findall(r'"([\w./-]+\.md)"', json.dumps(config["nav"]))


def _in_nav_order(blocks: list[Block]) -> list[Block]:
    order = {page: i for i, page in enumerate(_nav_pages())}
    return sorted(blocks, key=lambda b: order.get(b.page, len(order)))  # stable: a page's blocks stay in order


RUN_BLOCKS = _in_nav_order(marked_blocks("run"))


def _wait_port_free(host: str, port: int, timeout: float = 30.0) -> None:
    import socket

    deadline = time.monotonic() + timeout
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind((host, port))
                return
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail(f"{host}:{port} stays in use (another edge-inspector daemon?); the demo needs it")
        time.sleep(0.5)


@pytest.mark.skipif(not RUN_BLOCKS, reason="no <!-- test: run --> blocks in the guide")
def test_getting_started_commands_run(tmp_path: Path) -> None:
    """Runs the commands the guide tells a new user to type, in order, in a fresh folder.

    The folder gets what a checkout has (config.yaml, tools/), so the commands run as written;
    ``small=`` shrinks only sizes. ``edge-inspector`` resolves to this environment's entry point, as
    it does for a user who activated ``.venv``.
    """
    for name in ("config.yaml", "tools"):
        src = ROOT / name
        if src.is_dir():
            shutil.copytree(src, tmp_path / name)
        elif src.is_file():
            shutil.copy(src, tmp_path / name)
    (tmp_path / ".venv").symlink_to(VENV_BIN.parent, target_is_directory=True)  # `.venv/bin/...` as in a checkout
    env = {**os.environ, "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}", "OMP_NUM_THREADS": "2",
           "PYTHONPATH": str(ROOT)}
    _wait_port_free("127.0.0.1", 9108)  # config.yaml's metrics port: another daemon may hold it briefly
    for block in RUN_BLOCKS:
        script = _apply_small(block.body, block.args.get("small", ""))
        # own process group: a daemon a block started in the background is stopped even when the block fails
        proc = subprocess.Popen(["bash", "-euo", "pipefail", "-c", script], cwd=tmp_path, env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
        try:
            output, _ = proc.communicate(timeout=300)
        except subprocess.TimeoutExpired:
            output = "(timed out after 300 s)"
        finally:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait()
        assert proc.returncode == 0, f"{block.page}: commands failed:\n{script}\n--- output:\n{output}"
        for expected in filter(None, block.args.get("expect", "").split(";")):
            assert expected.strip() in output, f"{block.page}: the page promises {expected.strip()!r}:\n{output}"


# -- names the guide mentions exist in the code ----------------------------------------------------

HAND_WRITTEN = [p for p in sorted(DOCS.rglob("*.md")) if "reference" not in p.relative_to(DOCS).parts]


def test_every_metric_the_guide_names_exists() -> None:
    pytest.importorskip("edge_inspector.metrics")
    from edge_inspector.metrics import Metrics

    series = set()
    for family in Metrics().registry.collect():
        series.add(family.name)
        suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "gauge": ("",)}
        series.update(family.name + s for s in suffixes.get(family.type, ("",)))
    for page in HAND_WRITTEN:
        for name in set(re.findall(r"\bedge_inspector_[a-z_]+[a-z]", page.read_text())):
            assert name in series, f"docs/{page.relative_to(DOCS)} names metric {name}, which the code does not have"


def test_every_command_the_guide_shows_exists() -> None:
    from edge_inspector.cli import build_parser

    actions = [a for a in build_parser()._actions if a.__class__.__name__ == "_SubParsersAction"]
    commands = set(actions[0].choices)
    for page in HAND_WRITTEN:
        text = page.read_text()
        fenced = re.findall(r"```.*?```", text, re.S)
        inline = re.findall(r"`[^`\n]+`", re.sub(r"```.*?```", "", text, flags=re.S))
        code = fenced + inline
        for name in set(re.findall(r"\bedge-inspector ([a-z][a-z-]*[a-z])\b", "\n".join(code))):
            where = f"docs/{page.relative_to(DOCS)}"
            assert name in commands, f"{where} shows `edge-inspector {name}`, which does not exist"


def test_promql_in_the_monitoring_page_parses(tmp_path: Path) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool not installed (apt-get install prometheus)")
    text = (DOCS / "monitoring.md").read_text()
    table = text[text.index("| Question | PromQL |"):].split("\n\n", 1)[0].splitlines()[2:]
    exprs = [re.search(r"\| `([^`]+)`", row).group(1) for row in table]
    assert len(exprs) >= 8
    rules = {"groups": [{"name": "docs", "rules": [{"record": f"docs:q{i}", "expr": e} for i, e in enumerate(exprs)]}]}
    path = tmp_path / "rules.yml"
    path.write_text(yaml.safe_dump(rules))
    proc = subprocess.run([promtool, "check", "rules", str(path)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_every_repository_file_the_guide_names_exists() -> None:
    for page in HAND_WRITTEN:
        for path in set(re.findall(r"(?<![\w/])((?:deploy|tools|docs)/[\w./-]*\w)", page.read_text())):
            assert (ROOT / path).exists(), f"docs/{page.relative_to(DOCS)} names {path}, which is not in the repository"


def _shown_command_lines() -> list[tuple[str, str]]:
    """(page, command line) for every `edge-inspector SUBCOMMAND ...` in a code block or code span."""
    found = []
    for page in HAND_WRITTEN:
        text = page.read_text()
        chunks = re.findall(r"```[^\n]*\n(.*?)```", text, re.S)
        chunks += re.findall(r"`([^`\n]+)`", re.sub(r"```.*?```", "", text, flags=re.S))
        for chunk in chunks:
            chunk = re.sub(r"\\\n\s*", " ", chunk)  # a shell line continued with a backslash is one command
            for line in chunk.replace("&&", "\n").replace("|", "\n").replace(";", "\n").splitlines():
                m = re.search(r"(?:^|[\s/])edge-inspector ([a-z][a-z-]*[a-z]\b.*)", line)
                command = m.group(1).split(" #")[0].strip().removesuffix("&").strip() if m else ""  # & backgrounds
                if " " in command and "..." not in command:  # a bare `edge-inspector NAME` is a mention
                    found.append((str(page.relative_to(DOCS)), command))
    return found


def test_every_command_line_the_guide_shows_parses() -> None:
    """Options the guide shows must exist with the shown arity; a renamed flag fails here."""
    import contextlib
    import io
    import shlex

    from edge_inspector.cli import build_parser

    lines = _shown_command_lines()
    assert len(lines) >= 10
    parser = build_parser()
    for page, line in lines:
        err = io.StringIO()
        try:
            with contextlib.redirect_stderr(err):
                parser.parse_args(shlex.split(line))
        except SystemExit as exc:
            assert exc.code == 0, f"docs/{page}: `edge-inspector {line}` does not parse: {err.getvalue().strip()}"
