"""The Bento is built with the same package versions the model was trained with."""

from importlib import metadata

import yaml

from tests.conftest import ROOT


def test_bentofile_pins_match_the_training_environment():
    bentofile = yaml.safe_load((ROOT / "serving" / "bentofile.yaml").read_text())
    assert bentofile["python"]["lock_packages"] is False  # offline builds
    for line in bentofile["python"]["packages"]:
        name, version = line.split("==")
        installed = metadata.version(name).split("+")[0]  # torch's local build tag (+cpu) is not a version pin
        assert installed == version, f"{name}: bentofile {version}, installed {installed}"
    assert set(bentofile["include"]) == {"service.py", "static/*.html"}
