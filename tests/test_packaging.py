"""The Bento is built with the same package versions the model was trained with."""

from importlib import metadata

import yaml

from tests.conftest import ROOT


def test_bentofile_pins_match_the_training_environment():
    bentofile = yaml.safe_load((ROOT / "serving" / "bentofile.yaml").read_text())
    assert bentofile["python"]["lock_packages"] is False  # offline builds
    for line in bentofile["python"]["packages"]:
        name, version = line.split("==")
        assert metadata.version(name) == version, f"{name}: bentofile {version}, installed {metadata.version(name)}"
    assert set(bentofile["include"]) == {"service.py", "static/*.html"}
