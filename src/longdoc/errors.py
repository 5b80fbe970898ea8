"""The one exception type for a user's mistake.

Anything raised as ``LongdocError`` is shown as a one-line message with a non-zero exit code by the
CLI (and as a failed step in the pipeline); anything else is a bug and keeps its traceback.

In a pipeline step the CLI is not there to catch it: kfp ships only a component body's source to the
step and runs it under its own executor (``python -m kfp.dsl.executor_main``), which lets an exception
end the process with Python's traceback. So the rule is installed here, where every step that can
raise a ``LongdocError`` has imported it, for that process only: the step prints ``error: <message>``
and exits 1 (kfp marks it failed and ``longdoc run`` names it); any other exception still goes to the
previous hook, traceback and all.
"""

import sys

from longdoc.redaction import redact

KFP_EXECUTOR = "kfp.dsl.executor_main"  # the module kfp runs a lightweight component's step as


class LongdocError(Exception):
    """A problem the user can fix: bad input, bad configuration, an unreachable service.

    Its message is redacted where it is made (:func:`longdoc.redaction.redact`): a URL quoted in it, from
    params, the environment or a library's own error, never shows its password or token, wherever the
    message ends up (the terminal, a pod's log, an MLflow tag).
    """

    def __init__(self, *args: object) -> None:
        super().__init__(*(redact(arg) if isinstance(arg, str) else arg for arg in args))


def in_pipeline_step() -> bool:
    """True in a process that kfp's executor runs as ``__main__`` (a step, local or on a cluster)."""
    spec = getattr(sys.modules.get("__main__"), "__spec__", None)
    return getattr(spec, "name", None) == KFP_EXECUTOR


def exit_cleanly_in_pipeline_steps() -> None:
    """In a pipeline step, make an unhandled ``LongdocError`` print its message and exit 1, without a traceback."""
    if not in_pipeline_step() or getattr(sys.excepthook, "longdoc", False):
        return
    previous = sys.excepthook

    def hook(kind, value, traceback) -> None:
        if issubclass(kind, LongdocError):
            print(f"error: {value}", file=sys.stderr, flush=True)  # Python still exits 1: the step fails
        else:
            previous(kind, value, traceback)

    hook.longdoc = True  # type: ignore[attr-defined]
    sys.excepthook = hook


exit_cleanly_in_pipeline_steps()
