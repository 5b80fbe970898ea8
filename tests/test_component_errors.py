"""A pipeline step that fails on a user's mistake (a ``LongdocError``) ends with its message, not a traceback;
any other exception is a bug and keeps its traceback.

Real kfp local runs (the SubprocessRunner ``longdoc run`` uses) of the project's own components, built by the
factory: what kfp ships to the step is the body's source, so only a run shows what the step prints.
"""

from __future__ import annotations

import pytest

from components.factory import build_components
from longdoc.config.params import parse_params


def _failed_step(component, root, capfd, **arguments) -> str:
    """Run one step in a subprocess as `longdoc run` does; it must fail. Everything it printed."""
    from kfp import local

    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(root), raise_on_error=True)
    capfd.readouterr()
    with pytest.raises(RuntimeError, match="finished with status"):
        component(**arguments)
    out, err = capfd.readouterr()
    return out + err


def test_a_users_mistake_ends_the_step_with_its_message_and_a_bug_keeps_its_traceback(tmp_path, capfd):
    package = build_components("python:3.11").package
    params = parse_params({"registry": {"tracking_uri": f"sqlite:///{tmp_path / 'mlruns.db'}"}}).model_dump_json()
    mistake = _failed_step(package, tmp_path / "kfp", capfd, params=params, model_name="longdoc-nosuch")
    assert "error: no model longdoc-nosuch @champion in the registry" in mistake, mistake[-3000:]
    assert "Traceback" not in mistake, mistake[-3000:]
    bug = _failed_step(package, tmp_path / "kfp", capfd, params="{not json", model_name="longdoc-nosuch")
    assert "Traceback" in bug and "JSONDecodeError" in bug, bug[-3000:]
