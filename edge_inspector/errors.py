"""The one base class of the package's known errors.

Every module keeps its own error type (``CardError``, ``ConfigError``, ``DatasetError``...), each
mixing in ``EdgeInspectorError`` beside its historical parent (``ValueError`` or ``RuntimeError``,
so existing ``except ValueError`` callers still catch it). What the base promises: the message
names the file, field or device and what was expected, so it can be shown to a user as it is. The
CLI relies on that: ``cli.main`` prints any ``EdgeInspectorError`` that reaches it as
``<command>: <message>`` on stderr and exits 1, without a traceback; any other exception is a bug
and keeps its traceback.
"""

from __future__ import annotations


class EdgeInspectorError(Exception):
    """A known failure with a message fit for the user (see the module docstring)."""
