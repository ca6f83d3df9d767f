"""One registry style for every plug-in point: sources, publishers, detectors.

A registry maps the name a user writes (the config's ``type``, the CLI's ``--model``) to where the
implementation lives, as a lazy ``"module:Class"`` string: listing the names (``check-config``, the
CLI's choices, the console's forms, the generated docs) never imports paho, pyzmq, Aravis or torch,
and an implementation is imported only when it is built. A value may also be the class itself (a
benchmark or a test may install a stand-in for one run).

Adding a plug-in = its own module plus one entry here in its package's registry (and, where the
config selects it, its config class in that package's union); tests check that each registry, its
config union and the lists read from it agree.
"""

from __future__ import annotations

import importlib
from typing import Any

from .errors import EdgeInspectorError


class Registry(dict[str, Any]):
    """name -> ``"module:Class"`` (or the class); ``load(name)`` imports and returns the class."""

    def __init__(self, what: str, entries: dict[str, Any], error: type[Exception] = EdgeInspectorError) -> None:
        super().__init__(entries)
        self.what = what  # e.g. "source type": used in the error message
        self.error = error

    def names(self) -> list[str]:
        """The registered names, in registration order (the order lists and docs show)."""
        return list(self)

    def load(self, name: str) -> Any:
        """The implementation registered as ``name``; the package's error type names the known ones."""
        if name not in self:
            raise self.error(f"unknown {self.what} {name!r}; expected one of {', '.join(self)}")
        entry = self[name]
        if not isinstance(entry, str):
            return entry
        module_name, _, attr = entry.partition(":")
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            raise self.error(f"{self.what} {name!r}: cannot import {module_name} ({exc})") from exc
        return getattr(module, attr)
