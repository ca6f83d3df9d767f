"""Automatic model choice: train every candidate, pick by composite score on VALIDATION, report on test.

Why validation and not test: choosing the best of three models on the test split and then
reporting that split's figures overstates what the line will see (a selection bias that grows with
the number of candidates). The test split is touched exactly once, by the chosen model.

Layout written under ``out``:
  <name>.onnx, <name>.card.json (+ any other file the trainer wrote with the model's name, such as
  a calibration file)       the chosen model, ready for ``models/``; its card's ``metrics`` hold the
                             test figures
  candidates/<kind>/         every candidate as the trainer wrote it
  auto_report/auto.json|html the candidates' validation figures, the choice and its test figures
  auto_report/test/          the chosen model's full evaluation report on the test split
  auto_report/synthetic_val/ only when validation has no labelled defect (a native split): the synthetic
                             defects the candidates were ranked on (data/synthetic_val.py)

Where the validation split holds good parts only, candidates are ranked on synthetic defects made from
those good parts, and only candidates that learn from normal images are ranked: a classifier tops its
training up with the same generator's defects and would rank itself first. By default only
feature_memory and its twins are candidates then (``SYNTHETIC_VAL_CANDIDATES``: why, beside it).
"""

from __future__ import annotations

import html
import logging
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ..card import load_card
from ..data.synthetic_val import SIZES, synthetic_validation
from ..data.types import Dataset, DatasetError, Sample
from ..errors import EdgeInspectorError
from ..evaluate.energy import EnergyMeter
from ..evaluate.metrics import DEFAULT_WEIGHTS, composite_inputs
from ..evaluate.report import fmt, page, table, terminal_summary, write_evaluation_report, write_json
from ..evaluate.runner import evaluate_model
from ..evaluate.types import EvaluationReport
from ..models import NORMAL_ONLY_KINDS
from .modelfiles import deploy_copy

log = logging.getLogger(__name__)

DEFAULT_CANDIDATES = ("feature_memory", "autoencoder", "classifier")
#: the default when validation has no labelled defect. Measured (bench/results/accuracy_auto_native.txt): synthetic
#: defects chose feature_memory's input size as the real defects do (the 2x twin on 1024 px frames: escape 0.247 ->
#: 0.037), but not detector families: on kolektorsdd they ranked the autoencoder first (val composite 0.618 vs
#: 0.552) where the real test defects rank it far below (image AUROC 0.877 vs 0.960); an autoencoder answers to
#: contrast, which synthetic defects have plenty of. Nor the patch neighbourhood: they ranked 3x3 first on all
#: three shared sets, the real defects prefer 5x5 on two; the twin still runs, the default usually wins.
SYNTHETIC_VAL_CANDIDATES = ("feature_memory",)
MASK_CANDIDATES = ("segmenter",)  # added to the defaults when the training split has defect masks
Trainer = Callable[..., Path]  # same signature as edge_inspector.toolchain.train.train_model


class AutoError(EdgeInspectorError, RuntimeError):
    """``auto`` cannot choose a model (no candidate given, none survived); ``cli.main`` prints it."""


def default_candidates(dataset: Dataset) -> tuple[str, ...]:
    """The default kinds, plus the supervised segmenter when training defects carry masks (it needs them);
    ``SYNTHETIC_VAL_CANDIDATES`` (and their twins) when validation has no labelled defect."""
    if not any(s.label == 1 for s in dataset.split("val")):
        return SYNTHETIC_VAL_CANDIDATES
    has_masks = any(s.label == 1 and s.mask_path is not None for s in dataset.split("train"))
    return DEFAULT_CANDIDATES + (MASK_CANDIDATES if has_masks else ())


HIRES_FACTOR = 2  # the high-resolution variant's input is this many times the default one
HIRES_MAX_SIDE = 640  # and at most this on its longer side (inference cost grows with the pixels)


def resolution_variants(dataset: Dataset, kinds: Sequence[str], given: Mapping[str, Mapping[str, Any]] | None = None
                        ) -> list[tuple[str, str, dict[str, Any]]]:
    """``(label, kind, options)`` for a high-resolution twin of each unsupervised candidate, when the
    frames are much larger than the default input.

    A defect that covers a few dozen pixels of a 1-2 MP frame shrinks to one or two feature-map
    cells at 224 px and drowns. The detectors are fully convolutional, so a larger input is the
    seamless form of tiling: every patch sees the same context as in a tile, without tile borders.
    It costs ``HIRES_FACTOR**2`` more compute per frame, so it only joins when the frames' short
    side is at least ``HIRES_FACTOR`` times the default input's, and it is kept only when the
    validation split ranks it above the default (the usual choice on validation).

    feature_memory's twin runs without its region branch (unless ``given``, the user's options per kind,
    sets ``region_window``): the twin is there for small defects, to which the branch adds only noise
    (2x-upscaled mpdd_metal_plate, the 640 px twin chosen either way: escape 0.037 without the branch,
    0.198 with it; bench/results/accuracy_auto_native.txt).
    """
    from ..data.readers import image_size  # noqa: PLC0415
    from .train import auto_input_size  # noqa: PLC0415 - the trainer owns the input-size rule

    train = dataset.split("train")
    if not train:
        return []
    sizes = [image_size(Path(s.path)) for s in train[:32]]
    short = sorted(min(h, w) for h, w in sizes)[len(sizes) // 2]
    base = auto_input_size(train)
    if short < HIRES_FACTOR * min(base):
        return []
    scale = min(HIRES_FACTOR, HIRES_MAX_SIDE / max(base))
    hires = tuple(int(round(v * scale / 32)) * 32 for v in base)
    given = given or {}
    out = []
    for kind in kinds:
        if kind not in NORMAL_ONLY_KINDS:
            continue
        options: dict[str, Any] = {"input_size": hires}
        if kind == "feature_memory" and "region_window" not in given.get(kind, {}):
            options["region_window"] = 0.0
        out.append((f"{kind}@{hires[0]}x{hires[1]}", kind, options))
    return out


#: option twins: (label suffix, kind, options) tried beside the kind's defaults and kept only when the
#: validation split ranks them higher. A wider patch neighbourhood (5 x 5 feature cells instead of 3 x 3)
#: raised image AUROC on every shared set (magnetic_tile 0.901 -> 0.927, kolektorsdd 0.959 -> 0.965,
#: native split; bench/results/accuracy_native.txt) but passed 2 of the demo line's 40 small defects (0 at
#: 3 x 3): which one a line needs depends on its defects' size, which only labelled defects can tell.
OPTION_VARIANTS: tuple[tuple[str, str, dict[str, Any]], ...] = (
    ("neighbourhood5", "feature_memory", {"neighbourhood": 5}),
)
#: twins that only labelled validation defects can judge. The region branch (models/region_memory.py) is on by
#: default: it raised image and pixel AUROC on all three shared sets and lowered kolektorsdd's escape (0.423 ->
#: 0.308), but passed one of the demo line's 40 scratches of a few pixels (none without it). Synthetic defects are
#: local blobs, the kind of defect the branch adds nothing to, so they rank its "off" twin first by construction
#: (val composite off vs on: mpdd_metal_plate 0.528 vs 0.505, kolektorsdd 0.552 vs 0.542, where the real test
#: defects say the reverse: kolektorsdd escape 0.423 off vs 0.308 on, mpdd pixel AUROC 0.986 vs 0.988).
LABELLED_OPTION_VARIANTS: tuple[tuple[str, str, dict[str, Any]], ...] = (
    ("no-region", "feature_memory", {"region_window": 0.0}),
)


def option_variants(kinds: Sequence[str], given: Mapping[str, Mapping[str, Any]] | None = None,
                    labelled: bool = True) -> list[tuple[str, str, dict[str, Any]]]:
    """``(label, kind, options)`` for each option twin of a candidate kind (``OPTION_VARIANTS``, and
    ``LABELLED_OPTION_VARIANTS`` when validation holds labelled defects); none for an option the user set
    for that kind already (their choice is the candidate, not a twin of it)."""
    given = given or {}
    variants = OPTION_VARIANTS + (LABELLED_OPTION_VARIANTS if labelled else ())
    return [(f"{kind}@{suffix}", kind, dict(opts)) for suffix, kind, opts in variants
            if kind in kinds and not set(opts) & set(given.get(kind, {}))]


def _default_trainer() -> Trainer:
    from .train import train_model  # noqa: PLC0415 - torch lives behind this import

    return train_model


def _check_val(dataset: Dataset) -> None:
    val = dataset.split("val")
    if not val:
        raise DatasetError(f"{dataset.root}: dataset has no validation split; auto chooses on validation "
                           "(load it with scheme='stratified' or a larger val_fraction)")
    if not any(s.label == 0 for s in val):
        raise DatasetError(f"{dataset.root}: the validation split has no good part, so models cannot be "
                           "ranked on it; use scheme='stratified' so val holds both good and defective parts")
    if not dataset.split("test"):
        raise DatasetError(f"{dataset.root}: dataset has no test split to report the chosen model on")


def _selection_split(dataset: Dataset, out: Path, seed: int) -> tuple[list[Sample], dict[str, Any]]:
    """The samples candidates are ranked on and a record of where their defects came from: the validation
    split itself, or (no labelled defect in it) its good parts plus synthetic defects written under
    ``out/auto_report/synthetic_val``."""
    val = dataset.split("val")
    n_real = sum(s.label == 1 for s in val)
    if n_real:
        return val, {"source": "labelled", "defective": n_real}
    folder = out / "auto_report" / "synthetic_val"
    made = synthetic_validation(val, folder, seed=seed)
    n_synth = sum(s.label == 1 for s in made.samples)
    log.warning("auto: the validation split of %s has no labelled defect; candidates are ranked on %d synthetic "
                "defects made from its %d good images (%s; drawn on the part only in %d of them, where it stands on "
                "a plain background; in %s). Only kinds that learn from normal images are ranked. The test split's "
                "real defects give the figures to trust.", dataset.name, n_synth, len(val),
                ", ".join(name for name, _ in SIZES), made.on_part, folder)
    return made.samples, {"source": "synthetic", "defective": n_synth, "folder": str(folder),
                          "sizes": {name: fraction for name, fraction in SIZES},
                          "on_part": made.on_part, "goods": made.goods,
                          "ranked_kinds": sorted(NORMAL_ONLY_KINDS)}


def _rankable(candidate: Mapping[str, Any], kind: str, val_defects: Mapping[str, Any]) -> bool:
    """Every scored candidate, except (synthetic validation defects) one that may have trained on them."""
    if "error" in candidate or candidate["val_composite"]["score"] is None:
        return False
    return val_defects["source"] != "synthetic" or kind in NORMAL_ONLY_KINDS


def _ranking_key(c: Mapping[str, Any]) -> tuple[float, float]:
    """Higher composite first; ties broken by lower latency (cheaper on the line)."""
    score = c["val_composite"]["score"] if c.get("val_composite") else None
    return (-1.0 if score is None else score, -(c.get("val_ms_per_image") or 0.0))


def run_auto(dataset: Dataset, out_dir: Path | str, *, models: Sequence[str] | None = None,
             trainer: Trainer | None = None, seed: int = 0, weights: Mapping[str, float] | None = None,
             options: Mapping[str, Mapping[str, Any]] | None = None, threads: int = 2,
             progress: bool = False) -> dict[str, Any]:
    """Train, choose on validation, report on test; return the summary dict (also in auto.json).

    ``models`` defaults to :func:`default_candidates` (the segmenter joins when training defects have masks).

    ``trainer`` defaults to ``edge_inspector.toolchain.train.train_model``; it must accept
    ``(kind, dataset, out_dir, *, name, seed, options, progress)`` and return a card path.
    A candidate whose training or evaluation fails is recorded with its error; auto fails only
    when no candidate survives.
    """
    if models is None:
        models = default_candidates(dataset)
    if not models:
        raise AutoError("no candidate model kind given (--models names none)")
    _check_val(dataset)
    weights = dict(DEFAULT_WEIGHTS if weights is None else weights)
    trainer = trainer or _default_trainer()
    out = Path(out_dir)
    (out / "candidates").mkdir(parents=True, exist_ok=True)
    val, val_defects = _selection_split(dataset, out, seed)
    test = dataset.split("test")
    info = {"name": dataset.name, "root": str(dataset.root), "split_info": dataset.split_info}
    candidates: list[dict[str, Any]] = []
    plan = ([(kind, kind, {}) for kind in models] + resolution_variants(dataset, models, options)
            + option_variants(models, options, labelled=val_defects["source"] != "synthetic"))
    for label, kind, variant in plan:
        cand: dict[str, Any] = {"kind": label}
        candidates.append(cand)
        opts = {**dict((options or {}).get(kind, {})), **variant}
        slug = label.replace("@", "-")
        try:
            with EnergyMeter() as meter:
                card_path = Path(trainer(kind, dataset, out / "candidates" / slug, name=f"{dataset.name}-{slug}",
                                         seed=seed, options=opts, progress=progress))
            cand["card"] = str(card_path)
            cand["training_energy"] = meter.result()
            report, _ = evaluate_model(card_path, val, dataset={**info, "split": "val"}, threads=threads,
                                       weights=weights, progress=progress)
        except Exception as exc:  # noqa: BLE001 - one failed candidate must not lose the others
            log.warning("auto: candidate %s failed: %s", kind, exc)
            log.debug("auto: candidate %s traceback", kind, exc_info=True)
            cand["error"] = f"{type(exc).__name__}: {exc}"
            continue
        cand["model"] = report.model.name
        cand["val"] = composite_inputs(report)
        cand["val_composite"] = report.composite.model_dump(exclude_unset=True)
        cand["val_ms_per_image"] = report.timing.ms_per_image
        cand["val_false_reject_rate"] = report.image.at.false_reject_rate
        cand["val_escape_rate"] = report.image.at.escape_rate
    viable = [c for c, (_, kind, _) in zip(candidates, plan, strict=True) if _rankable(c, kind, val_defects)]
    ranked = {id(c) for c in viable}
    for c in candidates:
        if "error" not in c and id(c) not in ranked and c["val_composite"]["score"] is not None:
            c["not_ranked"] = ("it may have trained on the same synthetic defects validation was ranked on "
                               "(only kinds that learn from normal images are ranked on them)")
    if not viable:
        errors = "; ".join(f"{c['kind']}: {c.get('error') or c.get('not_ranked') or 'no composite score'}"
                           for c in candidates)
        raise AutoError(f"no candidate could be trained and scored ({errors})")
    best = max(viable, key=_ranking_key)
    for c in candidates:
        c["chosen"] = c is best

    kept = deploy_copy(Path(best["card"]), out)  # model, siblings, calibration record; the card first
    chosen_card = kept[0]
    report, pred = evaluate_model(chosen_card, test, dataset={**info, "split": "test"}, threads=threads,
                                  weights=weights, progress=progress)
    write_evaluation_report(report, pred, out / "auto_report" / "test")
    _store_test_metrics(chosen_card, report, best.get("training_energy"))
    summary = {
        "schema": 1, "kind": "auto", "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "dataset": info, "weights": weights, "selection_split": "val",
        "val_defects": val_defects, "candidates": candidates,
        "chosen": {"kind": best["kind"], "card": str(chosen_card), "val_composite": best["val_composite"]["score"],
                   "files": [str(p) for p in kept]},
        "test": {**composite_inputs(report), "composite": report.composite.score,
                 "false_reject_rate": report.image.at.false_reject_rate,
                 "escape_rate": report.image.at.escape_rate,
                 "pixel_auroc": report.pixel.pixel_auroc,
                 "inference_energy_per_1000_parts": report.energy.inference_per_1000_parts},
        "test_summary": terminal_summary(report),
    }
    write_json(summary, out / "auto_report" / "auto.json")
    (out / "auto_report" / "auto.html").write_text(auto_html(summary))
    return summary


def _store_test_metrics(card_path: Path, report: EvaluationReport,
                        training_energy: Mapping[str, Any] | None) -> None:
    """Record the chosen model's test figures and training energy in its card (the model file, hence
    its sha256, is untouched)."""
    card = load_card(card_path)
    at = report.image.at
    figures = {**{f"test_{k}": v for k, v in composite_inputs(report).items()},
               "test_pixel_auroc": report.pixel.pixel_auroc,
               "test_false_reject_rate": at.false_reject_rate, "test_escape_rate": at.escape_rate,
               "test_composite": report.composite.score,
               # what the line pays per frame (decode + preprocess + inference, batched): the price of a
               # high-resolution twin (4x the pixels) is read off the card it was chosen with
               "test_ms_per_image": report.timing.ms_per_image}
    if training_energy and training_energy.get("energy_wh") is not None:
        figures["training_energy_wh"] = training_energy["energy_wh"]
        figures["training_cpu_seconds"] = training_energy.get("cpu_seconds")
        figures["training_energy_codecarbon"] = 1.0 if training_energy.get("method") == "codecarbon" else 0.0
    card.metrics.update(figures)
    card.save(card_path)


def placement_words(val_defects: Mapping[str, Any]) -> str:
    """Where the synthetic defects were drawn, in words."""
    on_part, goods = val_defects.get("on_part"), val_defects.get("goods")
    if on_part is None or goods is None:
        return "anywhere in the frame"
    if on_part == 0:
        return "anywhere in the frame (no plain background to tell the part from)"
    return f"on the part only in {on_part} of {goods} images (a plain background around it)"


def _val_defects_html(val_defects: Mapping[str, Any]) -> str:
    if val_defects.get("source") != "synthetic":
        return ""
    sizes = ", ".join(f"{name} (a window of {fraction:g} of the side)" for name, fraction in
                      (val_defects.get("sizes") or {}).items())
    return ('<p class="warn">The validation split has no labelled defect: the candidates were ranked on '
            f"{val_defects['defective']} <b>synthetic</b> defects made from its good images ({html.escape(sizes)}; "
            f"drawn {html.escape(placement_words(val_defects))}; the images are in "
            f"{html.escape(str(val_defects['folder']))}). Only kinds that learn from normal "
            "images were ranked on them. Their validation recall and F1 are not a line's escape rate; the test "
            "split's real defects below are.</p>")


def auto_html(summary: Mapping[str, Any]) -> str:
    rows, classes = [], []
    for c in summary["candidates"]:
        v = c.get("val") or {}
        energy = (c.get("training_energy") or {}).get("energy_wh")
        rows.append([c["kind"], c.get("model"), v.get("image_auroc"), v.get("f1"), v.get("recall"), v.get("pro"),
                     v.get("defect_type_auroc"), (c.get("val_composite") or {}).get("score"),
                     c.get("val_ms_per_image"), energy, c.get("error")])
        classes.append("best" if c.get("chosen") else "")
    test = summary["test"]
    body = [f"<h1>auto: {html.escape(summary['dataset']['name'])}</h1>",
            f"<p>Chosen: <b>{html.escape(summary['chosen']['kind'])}</b> "
            f"({html.escape(summary['chosen']['card'])}) by composite score on the <b>validation</b> split; "
            "the test split was used only to report the chosen model.</p>",
            "<h2>Candidates (validation split)</h2>",
            _val_defects_html(summary.get("val_defects") or {}),
            '<p class="note">train_model calibrates each threshold on this same validation split, so validation '
            "F1 and recall are optimistic for every candidate alike; AUROC and PRO do not depend on the threshold. "
            "The test figures below are the unbiased ones.</p>",
            table(["kind", "model", "AUROC", "F1", "recall", "PRO", "type AUROC", "composite", "ms/img",
                   "training Wh (estimate)", "error"], rows, classes),
            "<h2>Chosen model on the test split</h2>",
            table(["figure", "value"], [[k, v] for k, v in test.items() if not isinstance(v, dict)]),
            '<p>Full test report: <a href="test/report.html">test/report.html</a></p>',
            f'<p class="note">weights: {html.escape(", ".join(f"{k} {fmt(v)}" for k, v in summary["weights"].items()))}'
            "</p>"]
    return page(f"auto {summary['dataset']['name']}", "".join(body))
