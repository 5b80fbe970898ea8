"""The one exception type for a user's mistake.

Anything raised as ``LongdocError`` is shown as a one-line message with a non-zero exit code by the
CLI (and as a failed step in the pipeline); anything else is a bug and keeps its traceback.
"""


class LongdocError(Exception):
    """A problem the user can fix: bad input, bad configuration, an unreachable service."""
