"""``config.yaml``: typed, validated configuration of the daemon (pydantic v2, Frigate-style).

Why this shape: every field is described and unknown keys are refused (``extra="forbid"``), so a
typo such as ``queue_polciy`` is an error instead of a silently ignored setting. ``load_config``
reports *every* problem at once, each with its YAML path and line (``cameras[1].source.fps
(line 12): Input should be greater than 0``), because an engineer at a line PC fixes a file
faster from one complete list than from a fix-rerun loop.

Relative paths (models, sources, saving dir, publisher files) are resolved against the folder of
the configuration file, so a systemd unit works whatever its working directory is.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from .errors import EdgeInspectorError
from .lineops.drift import DriftConfig
from .lineops.review import ReviewConfig
from .lineops.shadow import ShadowConfig
from .parts import PartTriggerConfig, compile_part_pattern
from .preprocess import check_roi
from .publishers import PUBLISHERS, PublisherConfig
from .sources import SOURCES
from .sources.genicam import GenicamSourceConfig  # defined beside its source: imports without Aravis

ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"

# A field whose value is read once, when the daemon starts (the metrics server, the pipeline's queues,
# decode pool and frame counters): a SIGHUP reload cannot apply a change, ``restart_only_changes``
# finds it so the reload warns, and the configuration reference marks the field.
RESTART_ONLY = {"reload": "restart"}
IMAGE_PATTERN = "*.png,*.jpg,*.jpeg,*.bmp,*.tif,*.tiff"


class ConfigError(EdgeInspectorError, ValueError):
    """The configuration is invalid; ``problems`` lists every problem found, each with its path."""

    def __init__(self, path: Path | str, problems: list[str]):
        self.path = str(path)
        self.problems = list(problems)
        listing = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(f"{self.path}: {len(self.problems)} problem(s) in the configuration:\n{listing}")


_NUMBERS = (int, float, int | None, float | None)


class _Model(BaseModel):
    # inf/nan are never a sensible setting (quota_mb: .inf passed validation and crashed the saver)
    model_config = ConfigDict(extra="forbid", protected_namespaces=(), allow_inf_nan=False)

    @model_validator(mode="before")
    @classmethod
    def _numbers_are_numbers(cls, data: Any) -> Any:
        """``queue_size: true`` became 1: a number field does not take a boolean. (Numeric text stays
        accepted: ``${VAR}`` expansion gives text, e.g. ``port: ${METRICS_PORT}``.)"""
        if isinstance(data, dict):
            bad = [f"{k}: expected a number, got {v!r}" for k, v in data.items()
                   if k in cls.model_fields and cls.model_fields[k].annotation in _NUMBERS and isinstance(v, bool)]
            if bad:
                raise ValueError("; ".join(bad))
        return data


# -- sources ---------------------------------------------------------------------------------------
def _check_part_pattern(value: str | None) -> str | None:
    compile_part_pattern(value)  # ValueError -> reported with the field's YAML path
    return value


class CameraSourceConfig(_Model):
    """A live camera through OpenCV ``VideoCapture``."""

    type: Literal["camera"] = Field(description="A live camera (USB index, RTSP/HTTP URL or GStreamer pipeline).")
    device: int | str = Field(
        description="USB/V4L2 index (0), a stream URL (rtsp://..., http://...), or a GStreamer pipeline "
        "(any string containing '!', opened with CAP_GSTREAMER and ending in appsink)."
    )
    fps: float | None = Field(None, gt=0, le=10_000,
                              description="Frame rate to request from the camera (None: its default).")
    width: int | None = Field(None, gt=0, le=100_000,
                              description="Frame width to request (None: the camera's default).")
    height: int | None = Field(None, gt=0, le=100_000,
                               description="Frame height to request (None: the camera's default).")


class VideoSourceConfig(_Model):
    """A video file, decoded frame by frame (for testing a line from a recording)."""

    type: Literal["video"] = Field(description="A video file read with OpenCV.")
    path: Path = Field(description="Video file (any container/codec OpenCV's FFmpeg build reads).")
    loop: bool = Field(False, description="Start again at the end instead of finishing.")
    rate_fps: float = Field(0.0, ge=0, le=10_000, description="Frames per second to deliver; 0 = as fast as "
                            "possible.")


class FolderSourceConfig(_Model):
    """A watched folder: each new image file that appears is inspected once."""

    type: Literal["folder"] = Field(description="Watch a folder for new image files (e.g. from a smart camera's FTP).")
    path: Path = Field(description="Folder to watch (created if missing).")
    pattern: str = Field(IMAGE_PATTERN, description="Comma-separated glob patterns of files to pick up.")
    settle_ms: int = Field(
        300, ge=0, le=3_600_000, description="A file is read only once its size and mtime have been stable this "
        "long and it decodes (see incomplete_grace_ms). Temporary names (.tmp, .part, dot-files) are always "
        "ignored: the safest writer writes <name>.tmp and renames it when complete.")
    poll_ms: int = Field(100, gt=0, le=60_000, description="How often the folder is listed.")
    process_existing: bool = Field(True, description="Also inspect files already present at start-up.")
    incomplete_grace_ms: int = Field(
        5000, ge=0, le=3_600_000, description="A settled file that does not decode (or lacks its end marker) "
        "is looked at again until it stayed unchanged this long; only then it gets its 'error' verdict. "
        "Covers writers that pause longer than settle_ms.")
    max_file_mb: float = Field(
        256.0, gt=0, le=65_536, description="Files larger than this get an 'error' verdict without being read "
        "(a huge file must not take the daemon's memory).")
    follow_symlinks: bool = Field(
        False, description="Follow symbolic links whose target is outside the watched folder. Off: such links "
        "are skipped and counted (links to files inside the folder are always followed).")
    part_id_pattern: str | None = Field(
        None, description="Regular expression with a named group (?P<part_id>...) searched in each file name; "
        "the verdict carries the match as part_id (e.g. '^(?P<part_id>[A-Z0-9-]+)_'). No match: no part_id.")

    @field_validator("part_id_pattern")
    @classmethod
    def _part_pattern(cls, value: str | None) -> str | None:
        return _check_part_pattern(value)


class ReplaySourceConfig(_Model):
    """A recorded folder of images replayed in name order."""

    type: Literal["replay"] = Field(description="Replay a recorded image folder in sorted name order.")
    path: Path = Field(description="Folder of recorded images.")
    pattern: str = Field(IMAGE_PATTERN, description="Comma-separated glob patterns of files to replay.")
    rate_fps: float = Field(0.0, ge=0, le=10_000, description="Frames per second; 0 = as fast as the pipeline "
                            "takes them.")
    loop: bool = Field(False, description="Start again after the last file instead of finishing.")
    part_id_pattern: str | None = Field(
        None, description="As for a folder source: a regular expression with a named group (?P<part_id>...) "
        "searched in each file name; the verdict carries the match as part_id.")

    @field_validator("part_id_pattern")
    @classmethod
    def _part_pattern(cls, value: str | None) -> str | None:
        return _check_part_pattern(value)


SourceConfig = Annotated[
    CameraSourceConfig | VideoSourceConfig | FolderSourceConfig | ReplaySourceConfig | GenicamSourceConfig,
    Field(discriminator="type"),
]

#: Why these defaults: a live camera cannot be paused, so an old frame is worth less than the newest
#: one (drop the oldest, count it); files on disk wait patiently, so blocking loses nothing.
DEFAULT_QUEUE_POLICY = {"camera": "drop-oldest", "video": "block", "folder": "block", "replay": "block",
                        "genicam": "drop-oldest"}


class CameraConfig(_Model):
    id: str = Field(pattern=ID_PATTERN, description="Camera id used in topics, metrics and verdicts.")
    source: SourceConfig = Field(description="Where frames come from; `type` selects the kind.")
    roi: list[int] | None = Field(
        None, min_length=4, max_length=4,
        description="Region of interest [x, y, w, h] in frame pixels; only this crop is inspected.")
    queue_size: int = Field(8, ge=1, le=10_000, description="Frames buffered between grabbing and preprocessing.")
    queue_policy: Literal["block", "drop-oldest"] | None = Field(
        None, description="When the queue is full: 'block' the source, or 'drop-oldest' and count it. "
        "Default: drop-oldest for cameras, block for video/folder/replay and triggered GenICam cameras.")

    @field_validator("roi")
    @classmethod
    def _roi_positive(cls, roi: list[int] | None) -> list[int] | None:
        return check_roi(roi)

    @property
    def policy(self) -> str:
        if self.queue_policy is None and getattr(self.source, "trigger", "free-run") != "free-run":
            return "block"  # a triggered GenICam camera: every frame is a part, none may be dropped
        return self.queue_policy or DEFAULT_QUEUE_POLICY[self.source.type]


# -- models and fusion -----------------------------------------------------------------------------
class ModelConfig(_Model):
    path: Path = Field(description="Model card (<name>.card.json) or model file beside its card.")
    name: str | None = Field(None, description="Optional label; must match the card's name when given.")
    backend: Literal["onnxruntime", "openvino", "tensorrt"] = Field(
        "onnxruntime", description="Inference backend (the PyTorch reference lives in the toolchain, not the daemon). "
        "'openvino' needs the [openvino] extra.")
    threads: int = Field(1, ge=0, le=1024, description="Intra-op threads for CPU backends (0 = library default).")
    weight: float = Field(1.0, ge=0, le=1e6, description="Weight of this model in the 'weighted' fusion rule.")
    role: Literal["primary", "shadow"] = Field(
        "primary", description="'shadow' models are scored and reported in the verdict's votes but do not "
        "influence the decision (for trying a new model on the line).")
    providers: list[str] | None = Field(
        None, description="onnxruntime only: execution providers in order of preference, e.g. "
        "[CUDAExecutionProvider, CPUExecutionProvider]. Default: CPU.")
    precision: Literal["fp32", "bf16", "fp16", "int8", "auto"] | None = Field(
        None, description="tensorrt: which engine to load (as built by `edge-inspector build-engine`; default "
        "fp16). openvino: inference precision (default auto: the fastest one the model's card holds a passing "
        "accuracy check for and the device runs, i.e. int8 for an int8 model, else bf16, else fp32); "
        "bf16/fp16 need device support, int8 needs a model made by `edge-inspector quantize`.")
    engine: Path | None = Field(
        None, description="tensorrt only: engine file; default <model>.<precision>.engine beside the model.")
    device: int | str | None = Field(
        None, description="tensorrt: GPU index (default 0). openvino: device name, CPU (default), GPU, GPU.1, "
        "NPU or AUTO.")
    cache_dir: Path | None = Field(
        None, description="openvino only: compiled-model cache (fast restarts and reloads); default "
        "$XDG_CACHE_HOME/edge-inspector/openvino.")
    streams: int | None = Field(
        None, ge=1, le=64, description="CPU backends (onnxruntime, openvino): parallel inference streams a batch "
        "is spread over, one frame per request (default: one single-threaded stream per thread, at most 4; "
        "a lone frame still gets every thread); 1 = one stream using all threads.")

    @model_validator(mode="after")
    def _device_matches_backend(self) -> ModelConfig:
        if self.backend == "tensorrt" and self.device is not None and (
                not isinstance(self.device, int) or self.device < 0):
            raise ValueError(f"device: tensorrt expects a GPU index (0, 1, ...), got {self.device!r}")
        if self.backend == "openvino" and self.device is not None and not isinstance(self.device, str):
            raise ValueError(f"device: openvino expects a device name (CPU, GPU, NPU, AUTO), got {self.device!r}")
        if self.precision == "auto" and self.backend != "openvino":
            raise ValueError(f"precision: auto is for backend openvino; {self.backend} expects fp32, fp16 or int8")
        return self

    def backend_options(self) -> dict:
        """Keyword arguments for ``LoadedModel.load`` beyond backend and threads."""
        if self.backend == "tensorrt":
            return {"precision": self.precision or "fp16", "engine": self.engine, "device": self.device or 0}
        if self.backend == "openvino":
            return {"precision": self.precision or "auto", "device": self.device or "CPU",
                    "cache_dir": self.cache_dir, "streams": self.streams}
        if self.backend == "onnxruntime":
            out: dict = {"providers": self.providers} if self.providers else {}
            return out if self.streams is None else {**out, "streams": self.streams}
        return {}


# The fusion rules; each value has its function in runtime/decision.py FUSION_RULES (a test checks both agree).
FusionRule = Literal["any", "all", "weighted", "classifier_then_detector", "vote", "soft_vote"]


class FusionConfig(_Model):
    rule: FusionRule = Field(
        "any", description="How model scores combine: any model defective, all models, the weighted mean of "
        "normalised scores vs `threshold`, or the classifier decides and the detector localises/confirms. "
        "Ensembles: 'vote' (majority of the members' verdicts, weight = votes, a tie is a defect) or "
        "'soft_vote' (mean of normalised scores vs `threshold`); the verdict carries the ensemble's "
        "confidence and each member's vote and confidence.")
    threshold: float = Field(
        0.5, gt=0, lt=1, description="Threshold on the weighted mean (rules 'weighted' and 'soft_vote').")
    require_confirmation: bool = Field(
        False, description="classifier_then_detector: a defect also needs the detector's score >= 0.5.")


# -- other sections -------------------------------------------------------------------------------
class SavingConfig(_Model):
    mode: Literal["none", "defects", "all", "sample"] = Field("none", description="Which frames to save as JPEG.")
    sample_every: int = Field(100, ge=1, le=10**9,
                              description="mode 'sample': save one frame in this many (per camera).")
    dir: Path = Field(Path("frames"), description="Root folder; files go to <dir>/YYYY-MM-DD/<camera>/"
                      "<frame>-<run>.jpg (<run>: the daemon's start time and a random tag, so no run overwrites "
                      "another's evidence).")
    quota_mb: float = Field(1024.0, gt=0, le=1e9, description="Disk quota for saved frames; the oldest are deleted "
                            "first.")
    min_free_mb: float = Field(
        512.0, ge=0, le=1e9, description="Free-space floor: no frame is saved while the disk holding `dir` has less "
        "free space than this, so the MQTT spool and JSONL files on the same disk keep room (saving degrades before "
        "verdicts). 0 = no floor.")
    overlay: bool = Field(True, description="Also save <frame>-<run>_overlay.jpg: the anomaly heatmap and region "
                          "boxes drawn on the frame (when a detector gives a map).")
    jpeg_quality: int = Field(90, ge=1, le=100, description="JPEG quality of saved frames.")


class MetricsConfig(_Model):
    enabled: bool = Field(True, description="Serve Prometheus metrics over HTTP.")
    host: str = Field("127.0.0.1", description="Bind address (loopback by default; 0.0.0.0 exposes it).")
    port: int = Field(9108, ge=0, le=65535, description="TCP port (0 = any free port).")

    @field_validator("host")
    @classmethod
    def _host_is_an_address(cls, host: str) -> str:
        """An empty or malformed address passed check-config and failed at run (F12)."""
        import ipaddress

        if re.fullmatch(r"[0-9.]+", host or ""):
            try:
                ipaddress.IPv4Address(host)
            except ValueError:
                raise ValueError(f"{host!r} is not an IPv4 address") from None
        elif ":" in host:
            try:
                ipaddress.IPv6Address(host)
            except ValueError:
                raise ValueError(f"{host!r} is not an IPv6 address") from None
        elif not re.fullmatch(r"(?=.{1,253}$)([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.?)+", host or ""):
            raise ValueError(f"{host!r} is not an IP address or host name")
        return host


class LoggingConfig(_Model):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field("INFO", description="Log level.")


class InferenceConfig(_Model):
    batch_max: int = Field(8, ge=1, le=1024, description="Largest batch built from frames already waiting.")
    batch_timeout_ms: float = Field(
        0.0, ge=0, le=1000, description="Extra wait for a fuller batch once a frame is in hand; 0 = never wait "
        "(a lone frame is inferred at once: single-frame latency).")
    queue_size: int = Field(32, ge=1, le=100_000, description="Frames buffered between preprocessing and "
                            "inference.", json_schema_extra=RESTART_ONLY)
    decode_workers: int = Field(
        0, ge=0, le=32, json_schema_extra=RESTART_ONLY,
        description="Threads that decode and preprocess frames (in frame order per camera); "
        "0 = one per core, at most 4.")
    reduced_decode: Literal["off", "safe", "fast"] = Field(
        "safe", description="Decode JPEG frames at 1/2, 1/4 or 1/8 size when the model input (after the ROI) "
        "is that much smaller: 'safe' leaves the last halving to the preprocessing (model input within 0.005 "
        "mean / 0.1 max of a full decode), 'fast' decodes as small as possible (0.015 / 0.35), 'off' never. "
        "Only when no frame saving or review capture needs the full frame.")

    @field_validator("reduced_decode", mode="before")
    @classmethod
    def _yaml_off(cls, value: Any) -> Any:
        """YAML reads a bare ``off`` as False (and ``on`` as True)."""
        return {False: "off", True: "safe"}.get(value, value) if isinstance(value, bool) else value


class DaemonConfig(_Model):
    line: str = Field(pattern=ID_PATTERN, description="Production line id, used in topics and verdicts.")
    cameras: list[CameraConfig] = Field(min_length=1, description="Frame sources, one per camera.")
    models: list[ModelConfig] = Field(min_length=1, description="Models run on every frame.")
    fusion: FusionConfig = Field(default_factory=FusionConfig, description="How model scores become one verdict.")
    publishers: list[PublisherConfig] = Field(default_factory=list, description="Where verdicts are sent.")
    saving: SavingConfig = Field(default_factory=SavingConfig, description="Saving of frames and heatmaps.")
    metrics: MetricsConfig = Field(default_factory=MetricsConfig, description="Prometheus exporter.",
                                   json_schema_extra=RESTART_ONLY)
    logging: LoggingConfig = Field(default_factory=LoggingConfig, description="Logging.")
    inference: InferenceConfig = Field(default_factory=InferenceConfig, description="Batching of inference.")
    drift: DriftConfig = Field(default_factory=DriftConfig, description="Drift alarm on the OK-score distribution.")
    shadow: ShadowConfig = Field(default_factory=ShadowConfig, description="Running of models with role 'shadow'.")
    review: ReviewConfig = Field(default_factory=ReviewConfig, description="Capture of uncertain/flagged frames.")
    part_triggers: PartTriggerConfig = Field(default_factory=PartTriggerConfig,
                                             description="Part ids announced over MQTT (edge_inspector/parts.py).")
    state_dir: Path | None = Field(
        None, json_schema_extra=RESTART_ONLY,
        description="Folder where per-camera frame counters (and watched folders' progress) persist, so "
        "(camera, frame) stays unique across restarts (consumers dedupe on it) and a watched folder neither "
        "re-inspects nor misses files. None: $STATE_DIRECTORY/state when systemd sets STATE_DIRECTORY (the "
        "shipped unit does), otherwise nothing persists: counters restart at 0 and watched folders are inspected "
        "again at each start (a warning says so). Replay sources always number frames by file position.")

    @model_validator(mode="after")
    def _unique_ids(self) -> DaemonConfig:
        ids = [c.id for c in self.cameras]
        dupes = sorted({i for i in ids if ids.count(i) > 1})
        if dupes:
            raise ValueError(f"cameras: duplicate camera id(s) {dupes}")
        primaries = [m for m in self.models if m.role == "primary"]
        if not primaries:
            raise ValueError("models: at least one model must have role 'primary'")
        return self

    def camera(self, camera_id: str) -> CameraConfig:
        for cam in self.cameras:
            if cam.id == camera_id:
                return cam
        raise KeyError(camera_id)


# -- loading ---------------------------------------------------------------------------------------
_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def _expand_env(node: Any, path: str, problems: list[str]) -> Any:
    """Replace ``${VAR}`` in string values (e.g. ``${CREDENTIALS_DIRECTORY}`` from systemd)."""
    if isinstance(node, dict):
        return {k: _expand_env(v, f"{path}.{k}" if path else str(k), problems) for k, v in node.items()}
    if isinstance(node, list):
        return [_expand_env(v, f"{path}[{i}]", problems) for i, v in enumerate(node)]
    if isinstance(node, str) and "${" in node:
        def sub(m: re.Match) -> str:
            name = m.group(1)
            if name not in os.environ:
                problems.append(f"{path}: environment variable {name} is not set")
                return m.group(0)
            return os.environ[name]
        return _ENV.sub(sub, node)
    return node


#: Limits that a configuration file never comes near, so a hostile or broken file is refused in
#: milliseconds instead of exhausting the stack (deep nesting), the CPU and memory (alias bombs) or
#: blocking on a FIFO (F12 in the 2026-12 red-team review).
MAX_CONFIG_BYTES = 1024 * 1024
MAX_DEPTH = 50
MAX_NODES = 100_000  # YAML nodes with every alias expanded


class _LimitError(yaml.YAMLError):
    def __init__(self, message: str, mark: Any = None):
        super().__init__(message)
        self.problem, self.problem_mark = message, mark


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys and nesting deeper than MAX_DEPTH (composition is recursive)."""

    def __init__(self, stream: str):
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                raise _LimitError(f"nested more than {MAX_DEPTH} levels deep", self.peek_event().start_mark)
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue  # '<<: *defaults' keys may be overridden by explicit ones: that is what merging is for
            key = key_node.value if isinstance(key_node, yaml.ScalarNode) else id(key_node)
            if key in seen:
                raise _LimitError(f"duplicate key {key!r} (first at line {seen[key]}); each key may appear once",
                                  key_node.start_mark)
            seen[key] = key_node.start_mark.line + 1
        return super().construct_mapping(node, deep=deep)


def _check_size(root: yaml.Node) -> None:
    """Refuse recursive aliases and alias bombs: count nodes with aliases expanded, each shared node once."""
    sizes: dict[int, int] = {}
    active: set[int] = set()
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:  # iterative post-order walk: no recursion, whatever the file
        node, children_done = stack.pop()
        key = id(node)
        if children_done:
            children = _children(node)
            sizes[key] = 1 + sum(sizes[id(c)] for c in children)
            active.discard(key)
            if sizes[key] > MAX_NODES:
                raise _LimitError(f"expands to more than {MAX_NODES} values (aliases of aliases: an alias "
                                  "bomb?)", node.start_mark)
            continue
        if key in sizes:
            continue
        if key in active:
            raise _LimitError("recursive alias: a node contains an alias of itself", node.start_mark)
        active.add(key)
        stack.append((node, True))
        for child in _children(node):
            if id(child) in active:
                raise _LimitError("recursive alias: a node contains an alias of itself", child.start_mark)
            if id(child) not in sizes:
                stack.append((child, False))


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.MappingNode):
        return [n for pair in node.value for n in pair]
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    return []


def _flow_depth(text: str) -> tuple[int, int]:
    """(deepest [ { nesting, its line), outside comments. PyYAML's scanner is quadratic in flow nesting
    (1000 levels took seconds), so this is checked on the text before YAML sees it."""
    depth = deepest = 0
    line = where = 1
    comment = False
    prev = "\n"
    for ch in text:
        if ch == "\n":
            line += 1
            comment = False
        elif comment:
            pass
        elif ch == "#" and prev in " \t\n":
            comment = True
        elif ch in "[{":
            depth += 1
            if depth > deepest:
                deepest, where = depth, line
        elif ch in "]}":
            depth = max(0, depth - 1)
        prev = ch
    return deepest, where


def _load_yaml(text: str) -> tuple[Any, yaml.Node | None]:
    """Parse once: (data, node tree for line numbers). Raises yaml.YAMLError (with a mark where known)."""
    deepest, line = _flow_depth(text)
    if deepest > MAX_DEPTH:
        raise _LimitError(f"nested more than {MAX_DEPTH} levels deep (line {line})")
    loader = _StrictLoader(text)
    try:
        root = loader.get_single_node()
        if root is None:
            return None, None
        _check_size(root)
        return loader.construct_document(root), root
    except RecursionError as exc:
        raise _LimitError(f"nested too deeply (more than {MAX_DEPTH} levels)") from exc
    finally:
        loader.dispose()


def _line_map(root: yaml.Node | None) -> dict[tuple, int]:
    """YAML path tuple -> 1-based line, from the composed node tree (for error messages)."""
    lines: dict[tuple, int] = {}
    if root is None:
        return lines
    stack: list[tuple[yaml.Node, tuple]] = [(root, ())]
    while stack:  # iterative, and bounded by _check_size
        node, path = stack.pop()
        lines.setdefault(path, node.start_mark.line + 1)
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                k = key.value if isinstance(key, yaml.ScalarNode) else None
                lines[(*path, k)] = key.start_mark.line + 1
                stack.append((value, (*path, k)))
        elif isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                stack.append((item, (*path, i)))
    return lines


def _format_loc(loc: tuple, data: Any) -> tuple[str, tuple]:
    """Pydantic loc -> ('cameras[1].source.fps', data path). Skips union tags that are not data keys."""
    text, path, node = "", (), data
    for part in loc:
        if isinstance(part, int) and isinstance(node, list):
            text += f"[{part}]"
            path += (part,)
            node = node[part] if part < len(node) else None
        elif isinstance(node, dict) and part in node:
            text += f".{part}" if text else str(part)
            path += (part,)
            node = node[part]
        elif isinstance(node, dict) and part != "__root__" and not _is_union_tag(part):
            text += f".{part}" if text else str(part)  # a missing field
            path += (part,)
            node = None
        # else: a discriminator tag or function-validator name that pydantic inserts: not in YAML
    return text or "(top level)", path


def _is_union_tag(part: Any) -> bool:
    """A location part pydantic inserts for a discriminated union (a source or publisher type, from their
    registries) or a function validator: not a YAML key."""
    return isinstance(part, str) and (part in SOURCES or part in PUBLISHERS or part.startswith("function-"))


def _problems_from(exc: ValidationError, data: Any, lines: dict[tuple, int]) -> list[str]:
    problems = []
    for err in exc.errors(include_url=False):
        text, path = _format_loc(tuple(err["loc"]), data)
        line = None
        for n in range(len(path), 0, -1):  # the nearest line we know (a missing key: its parent's)
            if path[:n] in lines:
                line = lines[path[:n]]
                break
        msg = err["msg"]
        if err["type"] == "literal_error" or err["type"] == "enum":
            msg += f" (got {err.get('input')!r})"
        elif err["type"] == "union_tag_invalid":
            ctx = err.get("ctx", {})
            msg = f"unknown type {ctx.get('tag')!r}; expected one of {ctx.get('expected_tags')}"
        where = f"{text} (line {line})" if line else text
        problems.append(f"{where}: {msg}")
    return problems


def _resolve(p: Path, base: Path) -> Path:
    p = Path(os.path.expanduser(str(p)))
    return p if p.is_absolute() else (base / p)


def resolve_paths(cfg: DaemonConfig, base: Path) -> DaemonConfig:
    """Make every relative path absolute against ``base`` (the config file's folder)."""
    for cam in cfg.cameras:
        if hasattr(cam.source, "path"):
            cam.source.path = _resolve(cam.source.path, base)
    for model in cfg.models:
        model.path = _resolve(model.path, base)
        if model.engine is not None:
            model.engine = _resolve(model.engine, base)
        if model.cache_dir is not None:
            model.cache_dir = _resolve(model.cache_dir, base)
    cfg.saving.dir = _resolve(cfg.saving.dir, base)
    cfg.review.dir = _resolve(cfg.review.dir, base)
    if cfg.drift.reference_file is not None:
        cfg.drift.reference_file = _resolve(cfg.drift.reference_file, base)
    if cfg.state_dir is not None:
        cfg.state_dir = _resolve(cfg.state_dir, base)
    for pub in cfg.publishers:  # publisher configs own their fields; resolve every Path-typed value
        for name in type(pub).model_fields:
            value = getattr(pub, name)
            if isinstance(value, Path):
                setattr(pub, name, _resolve(value, base))
    return cfg


def parse_config(text: str, source: str = "<config>", base: Path | None = None) -> DaemonConfig:
    """Validate YAML text; raise ConfigError listing every problem with its path and line."""
    try:
        data, root = _load_yaml(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        raise ConfigError(source, [f"not valid YAML{where}: {getattr(exc, 'problem', None) or exc}"]) from None
    if data is None:
        raise ConfigError(source, ["the file is empty; expected a mapping with line, cameras, models"])
    if not isinstance(data, dict):
        raise ConfigError(source, [f"expected a mapping at the top level, got {type(data).__name__}"])
    problems: list[str] = []
    data = _expand_env(data, "", problems)
    lines = _line_map(root)
    try:
        cfg = DaemonConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(source, problems + _problems_from(exc, data, lines)) from None
    if problems:
        raise ConfigError(source, problems)
    return resolve_paths(cfg, base if base is not None else Path.cwd())


def restart_only(field: Any) -> bool:
    """Whether a pydantic ``FieldInfo`` is marked RESTART_ONLY (a reload cannot apply it)."""
    extra = field.json_schema_extra
    return isinstance(extra, dict) and extra.get("reload") == "restart"


def restart_only_changes(old: BaseModel, new: BaseModel, prefix: str = "") -> list[str]:
    """Dotted paths of the RESTART_ONLY fields whose value differs between two configs.

    Generic over the model tree (nested sections are walked; lists such as cameras are applied by a
    reload and compared as a whole by it), so marking a field is all a new restart-only setting needs.
    """
    changed = []
    for name, field in type(new).model_fields.items():
        before, after = getattr(old, name), getattr(new, name)
        if restart_only(field):
            if before != after:
                changed.append(prefix + name)
        elif isinstance(after, BaseModel) and type(before) is type(after):
            changed += restart_only_changes(before, after, f"{prefix}{name}.")
    return changed


def load_config(path: Path | str) -> DaemonConfig:
    """Read and validate ``config.yaml``; relative paths resolve against its folder."""
    path = Path(path)
    return parse_config(read_text_file(path), str(path), base=path.resolve().parent)


def read_text_file(path: Path, limit: int = MAX_CONFIG_BYTES) -> str:
    """A regular UTF-8 file of at most ``limit`` bytes, or a ConfigError saying which of these it is not.

    Why each check: a FIFO or ``/dev/zero`` named as the config blocked or ate memory; a file saved as
    UTF-16 or Latin-1 gave a UnicodeDecodeError traceback.
    """
    import stat as stat_

    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError as exc:
        raise ConfigError(path, [f"cannot read the file ({exc.strerror or exc})"]) from None
    try:
        st = os.fstat(fd)
        if not stat_.S_ISREG(st.st_mode):
            raise ConfigError(path, ["not a regular file (a FIFO, device or folder); expected a YAML file"])
        if st.st_size > limit:
            raise ConfigError(path, [f"the file is {st.st_size} bytes; a configuration is at most {limit} bytes"])
        data = os.read(fd, limit + 1)
    except OSError as exc:
        raise ConfigError(path, [f"cannot read the file ({exc.strerror or exc})"]) from None
    finally:
        os.close(fd)
    if len(data) > limit:
        raise ConfigError(path, [f"the file is larger than {limit} bytes; a configuration is at most that"])
    if data[:2] in (b"\xff\xfe", b"\xfe\xff") or data[:4] in (b"\x00\x00\xfe\xff", b"\xff\xfe\x00\x00"):
        raise ConfigError(path, ["the file is UTF-16/UTF-32 encoded; save it as UTF-8"])
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[:exc.start].count(b"\n") + 1
        raise ConfigError(path, [f"line {line}: byte 0x{data[exc.start]:02x} is not UTF-8; save the file as "
                                 "UTF-8"]) from None
