"""Promote a trained model: copy it into the daemon's models dir, point the daemon's config at it,
SIGHUP, and confirm from the daemon itself which model is live.

Files are copied by ``toolchain.modelfiles.deploy_copy`` (staged in a temporary folder, renamed into
place) so the daemon, reloading at any moment, never reads a half-written model; the card is renamed
last so a card never points at a model file that is not there yet. The daemon re-verifies the sha256
on reload.

Why the config edit and the confirmation: the daemon only reloads the cards its ``config.yaml``
names, so copying a model trained under a new name changed nothing while the console showed a
green "deployed" (integrators' check, 2026-12). With ``--daemon-config`` the promoted card
replaces one model slot (:func:`replace_model_slot`: the slot of the same model name, else the
first of the same kind, else the first), written atomically and validated as the daemon would
before it is written. With ``--daemon-metrics`` the console then reads the daemon's
``edge_inspector_model_info`` until the promoted name and version are live; only then is the
model marked deployed. A refused reload (the daemon keeps its old models) is reported as such.
"""

from __future__ import annotations

import os
import signal
from dataclasses import dataclass, field
from pathlib import Path

from django.utils import timezone

from edge_inspector.card import load_card
from edge_inspector.deploy_model import DeployError, SlotChange, confirm_live, replace_model_slot
from edge_inspector.toolchain.modelfiles import deploy_copy  # the one model-copy helper (no torch)

from .models import TrainedModel, audit


class PromoteError(RuntimeError):
    """The model cannot be promoted (bad card, unwritable models dir); nothing was signalled."""


@dataclass
class PromoteResult:
    copied: list[str] = field(default_factory=list)
    signalled_pid: int | None = None
    signal_error: str = ""
    #: what changed in the daemon's config ("models[0].path: old -> new"), "" when nothing needed to
    config_change: str = ""
    #: True: the daemon reports the promoted name+version live; False: it does not (refused or too
    #: slow); None: no way to ask it (no --daemon-metrics)
    confirmed: bool | None = None
    #: the models the daemon reported last ("name vX (backend)")
    live: list[str] = field(default_factory=list)
    confirm_error: str = ""


def read_pid(pid_file: Path) -> int:
    try:
        text = Path(pid_file).read_text().strip()
    except OSError as exc:
        raise ProcessLookupError(f"daemon pid file {pid_file}: cannot read ({exc.strerror})") from exc
    if not text.isdigit() or int(text) <= 1:
        raise ProcessLookupError(f"daemon pid file {pid_file}: expected a process id, found {text[:40]!r}")
    return int(text)


def promote(model: TrainedModel, models_dir: Path, pid_file: Path | None, user, *,
            daemon_config: Path | None = None, metrics_url: str | None = None,
            confirm_timeout: float = 30.0) -> PromoteResult:
    """Copy, point the config at it, SIGHUP, confirm; ``deployed`` only once the daemon reports it live."""
    card_path = Path(model.card_path)
    try:
        card = load_card(card_path)
    except ValueError as exc:
        raise PromoteError(str(exc)) from exc
    models_dir = Path(models_dir)
    try:
        models_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise PromoteError(f"models dir {models_dir}: cannot create ({exc.strerror})") from exc
    result = PromoteResult()
    try:  # model, siblings, calibration record, the card last (toolchain/modelfiles.py: staged, then renamed)
        result.copied = [str(p) for p in deploy_copy(card_path, models_dir)]
    except OSError as exc:
        raise PromoteError(str(exc)) from exc
    change: SlotChange | None = None
    if daemon_config is not None:
        try:
            change = replace_model_slot(Path(daemon_config), models_dir / card_path.name)
        except DeployError as exc:
            raise PromoteError(str(exc)) from exc
        result.config_change = str(change) if change else ""
    if pid_file is None:
        result.signal_error = "no daemon pid file configured (--daemon-pid-file); reload the daemon yourself"
    else:
        try:
            pid = read_pid(pid_file)
        except ProcessLookupError as exc:
            result.signal_error = str(exc)
        else:
            try:
                os.kill(pid, signal.SIGHUP)
                result.signalled_pid = pid
            except ProcessLookupError:
                result.signal_error = f"daemon pid {pid} from {pid_file} is not running"
            except PermissionError:
                result.signal_error = f"not allowed to signal daemon pid {pid} from {pid_file} (run as its user)"
    if metrics_url:
        # Not signalled: look once (it may already run this model), do not hold the request for nothing.
        wait = confirm_timeout if result.signalled_pid is not None else 0.0
        result.confirmed, result.live, result.confirm_error = confirm_live(
            metrics_url, card.name, card.version, wait)
        if not result.confirmed and result.signalled_pid is None:
            result.confirm_error = result.confirm_error or "the daemon was not signalled"
    if result.confirmed is True:
        TrainedModel.objects.filter(name=model.name).exclude(pk=model.pk).update(deployed=False)
        model.deployed, model.deployed_at = True, timezone.now()
        model.save(update_fields=["deployed", "deployed_at"])
    elif result.confirmed is False:
        if change is not None:
            try:
                change.revert()
                result.config_change += " (reverted: the daemon did not take the model)"
            except OSError as exc:
                result.confirm_error += f"; could not revert {change.config}: {exc}"
        if model.deployed:
            model.deployed = False
            model.save(update_fields=["deployed"])
    audit(
        user,
        "model.promote",
        model=model.name,
        version=model.version,
        card=str(card_path),
        models_dir=str(models_dir),
        copied=result.copied,
        sighup_pid=result.signalled_pid,
        signal_error=result.signal_error,
        config_change=result.config_change,
        confirmed=result.confirmed,
        live=result.live,
        confirm_error=result.confirm_error,
    )
    return result
