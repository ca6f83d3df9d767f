"""The evaluation's own known error: a bad ``--weights``, a comparison without models, a bad setting.

Why a class of its own: these messages are written for the user (they name the option or the
environment variable and what was expected), so they must reach ``cli.main`` and be printed as
``<command>: <message>`` (stderr, exit 1, no traceback) like every other ``EdgeInspectorError``;
as plain ``ValueError``s the ``evaluate``/``compare``/``auto`` commands had to catch every
``ValueError`` to show them, and a real bug's ``ValueError`` lost its traceback the same way.
``ValueError`` stays a parent so existing ``except ValueError`` callers keep working.
"""

from __future__ import annotations

from ..errors import EdgeInspectorError


class EvaluationError(EdgeInspectorError, ValueError):
    """Evaluation was asked for something it cannot do; the message names the option and what was expected."""
