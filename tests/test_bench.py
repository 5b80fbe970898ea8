"""Each benchmark runs at its smallest size and writes its output (figures are not asserted: no timed tests)."""

import json
import os
import subprocess
import sys

from tests.conftest import ROOT


def test_bench_suite_runs_tiny(tmp_path, small_corpus):
    # Isolated stores: with no champion and no Bento the registry-backed sections report "not run".
    env = {**os.environ, "BENTOML_HOME": str(tmp_path / "bentoml"),
           "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'none' / 'mlruns.db'}"}
    done = subprocess.run([sys.executable, "-m", "bench.run", "--tiny", "--corpus", str(small_corpus),
                           "--out", str(tmp_path)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    for name in ("inference_vs_recipe", "hardware_efficiency", "length_scaling", "quantization", "embedding_cache",
                 "training_throughput", "serving", "cli", "summary"):
        assert (tmp_path / f"{name}.json").is_file(), name
    assert (tmp_path / "length_scaling.png").stat().st_size > 5_000
    recipe = json.loads((tmp_path / "inference_vs_recipe.json").read_text())["window_126"]
    assert recipe["recipe"]["docs_per_s"] > 0 and recipe["longdoc"]["docs_per_s"] > 0
    assert json.loads((tmp_path / "summary.json").read_text())["machine"]["cpus"] >= 1
    cache = json.loads((tmp_path / "embedding_cache.json").read_text())
    assert cache["cached"]["total_seconds"] > 0 and cache["uncached"]["total_seconds"] > 0
    cli = json.loads((tmp_path / "cli.json").read_text())
    assert cli["help"]["exit_code"] == 0 and cli["refuse_unreachable_tracking"]["exit_code"] == 2
    assert "cannot be reached" in cli["refuse_unreachable_tracking"]["said"]
    for name in ("quantization", "serving"):  # measured on a real run's models in tests/test_pipeline.py
        assert json.loads((tmp_path / f"{name}.json").read_text())["status"].startswith("not run")
