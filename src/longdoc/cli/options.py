"""What every command shares: the params file and --set options, and how they become validated params."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from longdoc.errors import LongdocError

ParamsOpt = Annotated[Path, typer.Option("--params", "-p", help="The params file.")]
SetOpt = Annotated[list[str] | None, typer.Option("--set", "-S", help="Override a param: train.epochs=1.")]
PROFILE_ENV = "LONGDOC_PROFILE"
OUT = Path("outputs")


def _params(path: Path, overrides: list[str] | None, extra: dict | None = None):
    """params.yaml, with the profile named by ``--profile`` (or LONGDOC_PROFILE) laid over it, then --set,
    then ``extra`` (a command's own options, taken as typed rather than parsed as YAML)."""
    from longdoc.config.params import load_params

    return load_params(path, {**_parse_sets(overrides), **(extra or {})}, os.environ.get(PROFILE_ENV) or None)


def _parse_sets(overrides: list[str] | None) -> dict:
    """``--set key=value`` options as dotted keys, each value read as YAML (``train.variants=[head]``)."""
    import yaml

    parsed = {}
    for item in overrides or []:
        key, sep, value = item.partition("=")
        if not sep:
            raise LongdocError(f"--set expects key=value, got {item!r}")
        parsed[key] = yaml.safe_load(value)
    return parsed


def _console():
    from rich.console import Console

    return Console(stderr=False)


def project_root() -> Path:
    root = Path.cwd()
    if not (root / "pipelines").is_dir():
        raise LongdocError(f"run this from the project root: no pipelines/ in {root}")
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    return root
