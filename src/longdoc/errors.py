"""The one exception type for a user's mistake.

Anything raised as ``LongdocError`` is shown as a one-line message with a non-zero exit code by the
CLI (and as a failed step in the pipeline); anything else is a bug and keeps its traceback.
"""

from longdoc.redaction import redact


class LongdocError(Exception):
    """A problem the user can fix: bad input, bad configuration, an unreachable service.

    Its message is redacted where it is made (:func:`longdoc.redaction.redact`): a URL quoted in it, from
    params, the environment or a library's own error, never shows its password or token, wherever the
    message ends up (the terminal, a pod's log, an MLflow tag).
    """

    def __init__(self, *args: object) -> None:
        super().__init__(*(redact(arg) if isinstance(arg, str) else arg for arg in args))
