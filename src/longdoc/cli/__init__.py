"""The ``longdoc`` command: the top layer, which reads the params, resolves the tracking URI and calls
the stages (``app``: the table of commands; ``summary``: the table a run ends with)."""
