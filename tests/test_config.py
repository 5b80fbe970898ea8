import re

import pytest

from longdoc.config.params import load_params, parse_params
from longdoc.errors import LongdocError
from longdoc.models.preflight import check_config
from tests.conftest import ROOT


def test_project_params_file_is_valid():
    params = load_params(ROOT / "params.yaml")
    assert params.train.variants[0] == "head"
    assert params.chunking.chunk_tokens == 128


@pytest.mark.parametrize("raw, fragment", [
    ({"train": {"epochs": 0}}, "train.epochs"),
    ({"train": {"nonsense": 1}}, "train.nonsense"),
    ({"chunking": {"chunk_tokens": 64, "overlap": 40}}, "overlap"),
    ({"data": {"test_fraction": 0}}, "data.test_fraction"),
    ({"serving": {"max_chars": 10_000, "max_body_bytes": 9_000}}, "max_body_bytes (9000) must exceed max_chars"),
    ({"serving": {"max_batch_docs": 0}}, "serving.max_batch_docs"),
    ({"serving": {"max_latency_ms": "fast"}}, "serving.max_latency_ms: Value error, must be auto or a whole number"),
    ({"serving": {"max_latency_ms": 0}}, "serving.max_latency_ms: Value error, must be auto or a whole number"),
])
def test_bad_values_are_named(raw, fragment):
    with pytest.raises(LongdocError, match=re.escape(fragment)):
        parse_params(raw)


def test_unknown_variant_fails_before_compute():
    with pytest.raises(LongdocError, match="unknown variant 'bigbird'; known variants: .*head_tail"):
        parse_params({"train": {"variants": ["bigbird"]}})


def test_chunk_longer_than_encoder_positions_fails():
    with pytest.raises(LongdocError, match="exceeds the encoder's 512 positions; use at most 510"):
        check_config(parse_params({"chunking": {"chunk_tokens": 511}}))


def test_dotted_overrides_apply(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text((ROOT / "params.yaml").read_text())
    assert load_params(path, {"train.epochs": 3}).train.epochs == 3
