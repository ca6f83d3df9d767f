"""Point a running daemon at a model and confirm from the daemon itself that it runs it.

Shared by the console's promote and the ``edge-inspector deploy`` command (for what ``train``,
``auto`` and ``export`` produce), so that "deployed" always means the same: the daemon's config
names the card (one model slot replaced in place, validated with the daemon's own loader before it
is written atomically), the daemon reloaded (SIGHUP), and its ``edge_inspector_model_info`` metric
reports the model's name and version. Django-free: the CLI uses it without the console.
"""

from __future__ import annotations

import os
import re
import shutil
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from edge_inspector.card import load_card

from .errors import EdgeInspectorError


class DeployError(EdgeInspectorError, RuntimeError):
    """The daemon's config cannot be pointed at the model (unreadable, invalid after the change)."""


@dataclass(frozen=True)
class SlotChange:
    index: int
    old: str
    new: str
    config: Path
    previous_text: str  # the file before the change: put back when the daemon does not take the model

    def revert(self) -> None:
        """Write the previous config back (atomically), so a restart does not load what the reload refused."""
        tmp = self.config.with_name(f".{self.config.name}.revert-tmp")
        tmp.write_text(self.previous_text, encoding="utf-8")
        os.replace(tmp, self.config)

    def __str__(self) -> str:
        return f"models[{self.index}].path: {self.old} -> {self.new}"


def _card_of(path: Path):
    try:
        return load_card(path)
    except (ValueError, OSError):
        return None


def replace_model_slot(config_path: Path, new_card: Path) -> SlotChange | None:
    """Point one ``models[i].path`` of the daemon's config at ``new_card``; None when one already does.

    The slot: the one whose card has the same model name, else the first with the same kind, else
    the first. Only that scalar is replaced in the text (comments and layout stay); the new text is
    validated with the daemon's own loader before it replaces the file atomically.
    """
    import tempfile

    import yaml

    from edge_inspector.config import ConfigError, load_config

    config_path = Path(config_path)
    try:
        text = config_path.read_text(encoding="utf-8")
        cfg = load_config(config_path)
    except (OSError, ConfigError) as exc:
        raise DeployError(f"daemon config {config_path}: {exc}") from exc
    new_card = Path(new_card).resolve()
    card = _card_of(new_card)
    if card is None:
        raise DeployError(f"{new_card}: not a readable model card")
    if any(Path(m.path).resolve() == new_card for m in cfg.models):
        return None
    cards = [_card_of(Path(m.path)) for m in cfg.models]
    index = next((i for i, c in enumerate(cards) if c is not None and c.name == card.name), None)
    if index is None:
        index = next((i for i, c in enumerate(cards) if c is not None and c.kind == card.kind), 0)
    root = yaml.compose(text, Loader=yaml.SafeLoader)
    node = None
    for key, value in getattr(root, "value", []):
        if key.value == "models" and isinstance(value, yaml.SequenceNode) and index < len(value.value):
            item = value.value[index]
            node = next((v for k, v in item.value if k.value == "path"), None) \
                if isinstance(item, yaml.MappingNode) else None
    if not isinstance(node, yaml.ScalarNode):
        raise DeployError(f"daemon config {config_path}: cannot find models[{index}].path to replace")
    try:
        rel = os.path.relpath(new_card, config_path.parent.resolve())
    except ValueError:
        rel = str(new_card)
    value = rel if not rel.startswith("..") else str(new_card)
    start, end = node.start_mark.index, node.end_mark.index
    new_text = text[:start] + yaml.safe_dump(value, default_style='"').strip().removesuffix("\n...") + text[end:]
    fd, tmp_name = tempfile.mkstemp(prefix=f".{config_path.name}.", suffix=".promote-tmp", dir=config_path.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(new_text)
        try:
            shutil.copymode(config_path, tmp)
        except OSError:
            pass
        try:
            load_config(tmp)  # what the daemon's reload will check first
        except ConfigError as exc:
            raise DeployError(f"daemon config {config_path} with the promoted model is invalid: {exc}") from exc
        os.replace(tmp, config_path)
    finally:
        tmp.unlink(missing_ok=True)
    return SlotChange(index, node.value, value, config_path, text)


_MODEL_INFO = re.compile(r'^edge_inspector_model_info\{([^}]*)\}\s+1(?:\.0)?\s*$', re.M)
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def live_models(metrics_url: str, timeout: float = 3.0) -> list[dict[str, str]]:
    """The models the daemon reports loaded (its ``model_info`` series), from its metrics endpoint."""
    with urllib.request.urlopen(metrics_url, timeout=timeout) as resp:  # noqa: S310 - a configured URL
        text = resp.read().decode("utf-8", "replace")
    return [dict(_LABEL.findall(m.group(1))) for m in _MODEL_INFO.finditer(text)]


def confirm_live(metrics_url: str, name: str, version: str, timeout: float) -> tuple[bool, list[str], str]:
    """Poll the daemon until ``name`` ``version`` is live (True) or ``timeout`` passes (False)."""
    deadline = time.monotonic() + timeout
    live: list[str] = []
    error = ""
    while True:
        try:
            models = live_models(metrics_url)
            live = [f"{m.get('name')} v{m.get('version')} ({m.get('backend')})" for m in models]
            error = ""
            if any(m.get("name") == name and m.get("version") == version for m in models):
                return True, live, ""
        except (urllib.error.URLError, OSError, ValueError) as exc:
            error = f"daemon metrics {metrics_url}: {getattr(exc, 'reason', exc)}"
        if time.monotonic() >= deadline:
            return False, live, error
        time.sleep(0.25)
