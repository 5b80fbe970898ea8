"""What a user can ask for, checked before any compute: the params schema (``params``), the variant
names (``variants``) and the ``dvc://`` corpus reference syntax (``dvc_reference``).

The lowest layer of the package: it imports nothing of longdoc but ``errors`` and ``redaction``, so
every stage, the CLI and the pipeline validate the same way without importing torch.
"""
