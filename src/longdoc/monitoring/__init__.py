"""Watching a deployed model: what each served document looked like to it (``profile``), the same profile of the
documents it was evaluated on (the reference, written at evaluation and registered with the model), reading what
the service recorded (``records``), telling drift from noise (``drift``), the served accuracy from labelled
feedback (``feedback``) and the report people look at (``report``).

Below the evaluation layer: evaluation writes the reference with :func:`profile.profile_frame`, and the Bento
records served documents with the same function, so the two can only differ by what was sent.
"""
