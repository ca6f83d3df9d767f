"""``edge-inspector check-config``: validate a configuration file and its models without running."""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "check-config",
        help="validate a configuration file, its models and sources; print every problem at once",
        description="Validate FILE: YAML syntax, every field (unknown keys, types, ranges, choices; each "
        "problem with its YAML path and line), then that every model card exists, its model file matches "
        "the card's sha256 and loads in its backend, that replay/video paths exist and that the fusion "
        "rule fits the models. Exits 0 with a summary when valid, 1 with the full list of problems.",
    )
    p.add_argument("file", type=Path, help="configuration file (e.g. config.yaml)")
    p.add_argument("--no-models", action="store_true", help="skip loading the models (syntax and fields only)")
    p.set_defaults(func=run)


_PROBLEM_PATH = re.compile(r"^(?P<path>[a-z_]+(?:\[\d+\]|\.[a-z_]+)*)(?P<rest>.*)$", re.S)


def with_line(problem: str, lines: dict[tuple, int]) -> str:
    """``models[1] (x.card.json): ...`` -> ``models[1] (line 9) (x.card.json): ...``.

    The loader's own problems carry their YAML line; the model and source checks run on the
    parsed config and name only the YAML path, so the line is looked up here (the nearest known
    parent, as the loader does for a missing key).
    """
    m = _PROBLEM_PATH.match(problem)
    if not m:
        return problem
    path: tuple = tuple(int(p) if p.isdigit() else p for p in re.findall(r"[a-z_]+|\d+", m.group("path")))
    for n in range(len(path), 0, -1):
        if path[:n] in lines:
            return f"{m.group('path')} (line {lines[path[:n]]}){m.group('rest')}"
    return problem


def _yaml_lines(path: Path) -> dict[tuple, int]:
    from ..config import _line_map, _load_yaml

    try:
        return _line_map(_load_yaml(path.read_text(encoding="utf-8"))[1])
    except Exception:  # noqa: BLE001 - the file loaded a moment ago; without lines the problems still print
        return {}


def run(args: argparse.Namespace) -> int:
    from ..config import load_config
    from ..publishers import publisher_problems
    from ..runtime.daemon import load_models, publisher_warning, source_problems

    cfg = load_config(args.file)  # a ConfigError: cli.main prints it (stderr, exit 1)
    problems = source_problems(cfg) + publisher_problems(cfg.publishers)
    models = []
    if not args.no_models:
        models, model_problems = load_models(cfg)
        problems += model_problems
    if problems:
        lines = _yaml_lines(args.file)
        print(f"{args.file}: {len(problems)} problem(s):", file=sys.stderr)
        for p in problems:
            print(f"  - {with_line(p, lines)}", file=sys.stderr)
        return 1
    print(f"{args.file}: valid. line {cfg.line}")
    for cam in cfg.cameras:
        src = cam.source
        where = getattr(src, "path", None) or getattr(src, "device", "")
        roi = f", roi {cam.roi}" if cam.roi else ""
        print(f"  camera {cam.id}: {src.type} {where} (queue {cam.queue_size}, {cam.policy}{roi})")
    for mcfg, model in models:
        print(f"  model {model.name} v{model.card.version} ({model.card.kind}, {mcfg.backend}, "
              f"{model.input_size[1]}x{model.input_size[0]}, {mcfg.role}, sha256 ok)")
    if args.no_models:
        for mcfg in cfg.models:
            print(f"  model {mcfg.path} ({mcfg.backend}, {mcfg.role}, not loaded)")
    print(f"  fusion {cfg.fusion.rule}; publishers: {', '.join(p.type for p in cfg.publishers) or 'none'}; "
          f"saving {cfg.saving.mode}; metrics "
          f"{f'{cfg.metrics.host}:{cfg.metrics.port}' if cfg.metrics.enabled else 'off'}")
    if (warning := publisher_warning(cfg)) is not None:
        print(f"warning: {warning}")
    return 0
