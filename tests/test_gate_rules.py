"""The promotion gate's rules stated as properties, fast.

tests/test_promotion.py drives the gate with fully registered models (seconds each). Here the rules
themselves are checked for any input: on real ``ModelVersion`` entities for the rules that only read
tags, and on cheap versions in a real SQLite MLflow registry (a run with a logged predictions file,
no model inside) for everything that reads predictions or moves the alias. Only the manual re-scoring
of a champion on other documents needs a loadable model; test_promotion.py covers that.
"""

from __future__ import annotations

import contextlib
import getpass
import json
import os
import re
import shutil
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mlflow.entities.model_registry import ModelVersion, ModelVersionTag

from longdoc.config.params import GateParams
from longdoc.errors import LongdocError
from longdoc.evaluation.metrics import paired_difference
from longdoc.registry import audit
from longdoc.registry.lease import alias_lease, breaking_name, lease_name
from longdoc.registry.promotion import (
    Decision,
    Difference,
    audit_trail,
    choose,
    current_champion,
    decide,
    difference,
    promote,
    refusals,
    require_version,
    rollback,
)

ALIAS = "champion"
LABELS = ["business", "politics", "sports"]
FAST = settings(max_examples=60, deadline=None)
SLOW = settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
GAP = "inverted_gap_macro_f1"


# --- real entities for the rules that read only tags ---------------------------------------------

def entity(version: int | str = 1, **tags: object) -> ModelVersion:
    """A real MLflow ModelVersion carrying ``tags`` (what the gate reads off a registered version)."""
    return ModelVersion("longdoc-task", str(version), 0, tags=[ModelVersionTag(k, str(v)) for k, v in tags.items()])


def gap_tags(low: float, gap: float | None = None, high: float | None = None) -> dict[str, float]:
    gap = low + 0.01 if gap is None else gap
    return {GAP: gap, f"{GAP}_lo": low, f"{GAP}_hi": gap + 0.01 if high is None else high}


finite = st.floats(-1, 1, allow_nan=False)


@FAST
@given(low=finite, limit=finite, equal=st.booleans())
def test_refused_for_the_gap_exactly_when_its_lower_bound_is_above_the_limit(low: float, limit: float,
                                                                              equal: bool) -> None:
    """The gap rule is on the interval's lower bound and strict: a bound equal to the limit passes."""
    if equal:
        limit = low
    candidate = entity(**gap_tags(low, gap=low + 0.03, high=low + 0.07), data_version="d1")
    reasons = refusals(candidate, "d1", GateParams(max_inverted_gap=limit))
    assert bool(reasons) == (low > limit)
    if reasons:
        assert reasons == [f"inverted gap {low + 0.03:+.4f} [{low:+.4f}, {low + 0.07:+.4f}]: lower bound above "
                           f"max_inverted_gap {limit}"]


@FAST
@given(low=finite, undertrained=st.booleans(), why=st.one_of(st.none(), st.text("abc xyz", min_size=1)),
       stale=st.booleans(), require=st.booleans())
def test_undertrained_or_stale_data_is_refused_whatever_the_score(low: float, undertrained: bool, why: str | None,
                                                                  stale: bool, require: bool) -> None:
    """Each rule adds its own reason, in order (gap, undertrained, data), independent of the others."""
    tags = {**gap_tags(low), "data_version": "d0" if stale else "d1", "undertrained": str(undertrained).lower()}
    if why is not None:
        tags["undertrained_reason"] = why
    rules = GateParams(max_inverted_gap=0.0, require_current_data=require)
    reasons = refusals(entity(**tags), "d1", rules)
    expected = [r for r, applies in [
        ("gap", low > 0.0),
        (f"undertrained: {why if why is not None else 'learned nothing'}", undertrained),
        ("trained on data d0, current data is d1", stale and require)] if applies]
    assert len(reasons) == len(expected)
    assert [r.startswith("inverted gap ") for r in reasons] == [e == "gap" for e in expected]
    assert [r for r in reasons if not r.startswith("inverted gap ")] == [e for e in expected if e != "gap"]


def test_a_perfect_score_does_not_save_an_undertrained_or_stale_version() -> None:
    """The refusals are about the version itself: the best scores in the registry change nothing."""
    best = {**gap_tags(-1.0), "normal_macro_f1": 1.0}
    assert refusals(entity(**best, data_version="d1", undertrained="true"), "d1", GateParams()) == [
        "undertrained: learned nothing"]
    assert refusals(entity(**best, data_version="d0"), "d1", GateParams()) == [
        "trained on data d0, current data is d1"]
    assert refusals(entity(**best), "d1", GateParams()) == ["trained on data None, current data is d1"]
    assert refusals(entity(**best, data_version="d1", undertrained="false"), "d1", GateParams()) == []


number = st.floats(-1, 1, allow_nan=False)


@FAST
@given(point=number, low=number, high=number, documents=st.integers(0, 10_000), rescored=st.booleans())
def test_a_difference_reads_as_signed_point_interval_and_documents(point: float, low: float, high: float,
                                                                   documents: int, rescored: bool) -> None:
    """The gate's reasons quote the difference: signed to 4 places, its interval, and its sample size."""
    text = str(Difference(point, low, high, documents, rescored))
    found = re.fullmatch(r"([+-]\d\.\d{4}) \[([+-]\d\.\d{4}), ([+-]\d\.\d{4})\] on (\d+) test documents(.*)", text)
    assert found, text
    for shown, value in zip(found.groups()[:3], (point, low, high), strict=True):
        assert abs(float(shown) - value) <= 5e-5
    assert int(found.group(4)) == documents
    assert found.group(5) == (", champion re-scored on the candidate's test split" if rescored else "")
    assert str(Difference(point, low, high, documents)) == str(Difference(point, low, high, documents, False))


def test_a_decision_reads_as_its_reasons_in_order() -> None:
    assert Decision("3", True, ["a", "b", "c"]).reason == "a; b; c"
    assert Decision(None, False).reason == "" and Decision(None, False).previous is None


@pytest.mark.parametrize("user", ["ops-alice", ""])
def test_an_audit_entry_says_who_when_why_and_what_it_replaced(monkeypatch, user: str) -> None:
    """LONGDOC_USER names who acted (CI, a shared account); unset or empty, the login name does."""
    monkeypatch.setenv("LONGDOC_USER", user)
    before = datetime.now(UTC)
    entry = audit.entry("promote", 7, "prod", None, "hotfix")
    assert set(entry) == {"action", "version", "alias", "previous", "who", "when", "why"}
    assert (entry["action"], entry["version"], entry["alias"], entry["previous"], entry["why"]) == (
        "promote", "7", "prod", None, "hotfix")
    assert entry["who"] == (user or getpass.getuser())
    when = datetime.fromisoformat(entry["when"])
    assert when.utcoffset() == timedelta(0) and re.search(r"T\d\d:\d\d:\d\d\.\d{6}\+00:00$", entry["when"])
    assert before - timedelta(minutes=5) <= when <= datetime.now(UTC) + timedelta(minutes=5)
    assert audit.entry("rollback", "2", ALIAS, "5", "")["previous"] == "5"


@FAST
@given(scores=st.lists(st.sampled_from([0.5, 0.6, 0.7, 0.8]), min_size=1, max_size=12))
def test_without_a_baseline_the_best_transformer_is_chosen_and_ties_go_to_the_oldest(scores: list[float]) -> None:
    """Highest macro-F1 wins; equal scores go to the lowest version number (as numbers: 9 before 10)."""
    versions = [entity(v, kind="model", variant=f"var{v}", normal_macro_f1=s) for v, s in enumerate(scores, start=5)]
    chosen, lost = choose(None, "longdoc-task", list(reversed(versions)), GateParams())
    best = max(scores)
    assert chosen.version == str(5 + scores.index(best))
    assert set(lost) == {v.version for v in versions} - {chosen.version}
    for version in versions:
        if version.version in lost:
            assert lost[version.version] == (
                f"v{chosen.version} (var{chosen.version}) is this run's choice; the best transformer is "
                f"v{chosen.version} (var{chosen.version}) (macro-F1 {best:.4f} vs "
                f"{float(version.tags['normal_macro_f1']):.4f})")


def test_equal_scores_go_to_the_lower_version_number_compared_as_numbers() -> None:
    """Versions 9 and 10 tie: 9 is older, although "10" sorts first as text."""
    tied = [entity(v, kind="model", normal_macro_f1=0.7) for v in (10, 9, 11)]
    chosen, lost = choose(None, "longdoc-task", tied, GateParams())
    assert chosen.version == "9" and set(lost) == {"10", "11"}


def test_a_lone_baseline_is_chosen_and_an_unnamed_variant_shows_as_a_question_mark() -> None:
    base = entity(3, kind="baseline", normal_macro_f1=0.2)
    assert choose(None, "longdoc-task", [base], GateParams()) == (base, {})
    chosen, lost = choose(None, "longdoc-task", [entity(4, kind="model", normal_macro_f1=0.9),
                                                 entity(5, normal_macro_f1=0.1)], GateParams())
    assert chosen.version == "4" and lost["5"].startswith("v4 (?) is this run's choice; the best transformer is v4 (?)")


# --- a real SQLite registry with cheap versions ----------------------------------------------------

def _empty_store() -> Path:
    """A migrated, empty MLflow SQLite store, built once per MLflow version and copied for each use.

    Creating the schema takes seconds; mutation testing runs this file once per mutant.
    """
    import mlflow

    path = Path(tempfile.gettempdir()) / f"longdoc-test-empty-mlflow-{mlflow.__version__}.db"
    if not path.is_file():
        fresh = path.with_suffix(f".{uuid.uuid4().hex}.tmp")
        uri = f"sqlite:///{fresh}"
        client = mlflow.MlflowClient(uri, uri)
        client.search_experiments()
        client.search_registered_models()
        os.replace(fresh, path)
    return path


@dataclass
class Store:
    """A real registry; each test uses its own registered model in it."""

    client: object
    uri: str
    experiment: str
    root: Path

    def model(self) -> str:
        name = f"longdoc-{uuid.uuid4().hex[:10]}"
        self.client.create_registered_model(name)
        return name

    def version(self, name: str, truth: list[str], predicted: list[str], ids: list[str] | None = None, *,
                kind: str = "model", data: str = "d1", score: float | None = None, gap_lo: float = -0.05,
                undertrained: bool = False) -> ModelVersion:
        """A version whose normal-view predictions on ``ids`` are ``predicted`` (inverted view: all wrong)."""
        ids = ids or [f"doc-{i:03d}" for i in range(len(truth))]
        wrong = [LABELS[(LABELS.index(y) + 1) % len(LABELS)] if y in LABELS else "x" for y in truth]
        frame = pd.concat([pd.DataFrame({"id": ids, "view": "normal", "label": truth, "predicted": predicted}),
                           pd.DataFrame({"id": ids, "view": "inverted", "label": truth, "predicted": wrong})])
        run = self.client.create_run(self.experiment)
        folder = self.root / run.info.run_id
        folder.mkdir()
        frame.to_parquet(folder / "predictions.parquet", index=False)
        self.client.log_artifact(run.info.run_id, str(folder / "predictions.parquet"), "evaluation")
        accuracy = float(np.mean(np.array(truth) == np.array(predicted)))
        tags = {"kind": kind, "variant": "tfidf_logreg" if kind == "baseline" else "head", "data_version": data,
                "normal_macro_f1": f"{accuracy if score is None else score:.6f}",
                "undertrained": str(undertrained).lower(),
                **{k: f"{v:.6f}" for k, v in gap_tags(gap_lo).items()}}
        created = self.client.create_model_version(name, f"runs:/{run.info.run_id}/model", run.info.run_id, tags=tags)
        return ModelVersion.from_proto(created.to_proto())  # as a tracking server returns it: version "3", not 3

    def answers(self, name: str, right: int, n: int = 30, **kw) -> ModelVersion:
        """A version that gets the first ``right`` of ``n`` fixed test documents right."""
        truth = [LABELS[i % len(LABELS)] for i in range(n)]
        predicted = [y if i < right else LABELS[(LABELS.index(y) + 1) % len(LABELS)] for i, y in enumerate(truth)]
        return self.version(name, truth, predicted, **kw)

    def champion(self, name: str) -> str | None:
        found = current_champion(self.client, name, ALIAS)
        return None if found is None else str(found.version)

    def tags(self, name: str, version: str) -> dict[str, str]:
        return self.client.get_model_version(name, version).tags


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Store:
    import mlflow

    root = tmp_path_factory.mktemp("registry")
    shutil.copy(_empty_store(), root / "mlruns.db")
    uri = f"sqlite:///{root / 'mlruns.db'}"
    client = mlflow.MlflowClient(uri, uri)
    experiment = client.create_experiment("gate", artifact_location=(root / "artifacts").as_uri())
    (root / "files").mkdir()
    return Store(client, uri, experiment, root / "files")


def gate(store: Store, name: str, versions: list[ModelVersion], data: str = "d1", **rules) -> Decision:
    return decide(store.client, name, [v.version for v in versions], ALIAS, data, GateParams(**rules))


def encoded(truth: list[str], *predictions: list[str]) -> tuple[np.ndarray, ...]:
    labels = sorted(set(truth).union(*predictions))
    return tuple(np.array([labels.index(v) for v in col]) for col in (truth, *predictions)) + (len(labels),)


labels = st.sampled_from(LABELS + ["tech"])


@SLOW
@given(rows=st.lists(st.tuples(st.sampled_from(LABELS), labels, labels), min_size=4, max_size=25))
def test_a_difference_is_paired_on_the_same_documents_whatever_their_order(store: Store, rows) -> None:
    """Transformer - baseline on identical documents (listed in any order), over every label either used."""
    truth, pa, pb = (list(col) for col in zip(*rows, strict=True))
    name = store.model()
    ids = [f"doc-{i:03d}" for i in range(len(rows))]
    a = store.version(name, truth, pa, ids)
    order = list(reversed(range(len(rows))))
    b = store.version(name, [truth[i] for i in order], [pb[i] for i in order], [ids[i] for i in order])
    diff = difference(store.client, name, a, b)
    y, ya, yb, n = encoded(truth, pa, pb)
    assert (diff.point, diff.low, diff.high) == pytest.approx(paired_difference("macro_f1", y, ya, yb, n))
    assert (diff.documents, diff.rescored) == (len(rows), False)
    assert difference(store.client, name, b, a).point == pytest.approx(-diff.point)


def test_versions_scored_on_other_documents_need_a_corpus_to_be_compared(store: Store) -> None:
    name = store.model()
    a = store.answers(name, 10)
    b = store.version(name, ["sports"] * 3, ["sports"] * 3, ["other-1", "other-2", "other-3"])
    with pytest.raises(LongdocError, match=f"^v{a.version} and v{b.version} were scored on different test "
                                           "documents and no corpus was given to re-score on$"):
        difference(store.client, name, a, b)


@SLOW
@given(right_model=st.integers(10, 30), right_base=st.integers(10, 30), slack=st.sampled_from([0.0, -1e-9]))
def test_the_baseline_is_chosen_unless_the_transformer_beats_it_by_min_gain(store: Store, right_model: int,
                                                                           right_base: int, slack: float) -> None:
    """A transformer must clear min_gain at the lower bound of the paired difference; equal is not enough."""
    name = store.model()
    base = store.answers(name, right_base, kind="baseline")
    model = store.answers(name, right_model)
    loser = store.answers(name, right_model, score=0.01)
    diff = difference(store.client, name, model, base)
    min_gain = max(diff.low + slack, 0.0)
    chosen, lost = choose(store.client, name, [base, loser, model], GateParams(min_gain=min_gain))
    if diff.low > min_gain:
        assert chosen.version == model.version
        assert lost[base.version] == f"v{model.version} (head) beats the baseline: {diff}"
    else:
        assert chosen.version == base.version
        assert lost[model.version] == (f"does not beat the baseline v{base.version} (tfidf_logreg) by min_gain "
                                       f"{min_gain}: difference {diff}")
    assert lost[loser.version].startswith(f"v{chosen.version} (")
    assert f"the best transformer is v{model.version} (head)" in lost[loser.version]
    assert len(lost) == 2


def test_first_gate_promotes_and_records_it_once(store: Store) -> None:
    name = store.model()
    first = store.answers(name, 20)
    decision = gate(store, name, [first])
    assert decision == Decision(first.version, True, ["no champion yet"], None)
    assert store.champion(name) == first.version
    tags = store.tags(name, first.version)
    assert (tags["status"], tags["gate"]) == (ALIAS, "passed: no champion yet")
    change = json.loads(tags["champion.change"])
    assert (change["action"], change["why"], tags["champion.previous"]) == ("gate", "no champion yet", "")
    [entry] = audit_trail(store.client, name)
    assert (entry["action"], entry["version"], entry["alias"], entry["previous"], entry["why"], entry["state"]) == (
        "gate", first.version, ALIAS, None, "no champion yet", "applied")
    assert (change["who"], change["when"]) == (entry["who"], entry["when"])
    assert store.client.get_run(change["record"]).data.tags["longdoc.registry.audit.seq"] == "1"  # links to its record
    assert audit_trail(store.client, name, applied_only=False) == [entry]  # nothing unfinished or failed
    assert "audit" not in store.client.get_registered_model(name).tags  # no growing JSON tag any more


def test_when_every_candidate_is_refused_nothing_changes_but_each_is_told_why(store: Store) -> None:
    name = store.model()
    champion = store.answers(name, 15)
    gate(store, name, [champion])
    fragile = store.answers(name, 30, gap_lo=0.2)
    lazy = store.answers(name, 30, undertrained=True)
    decision = gate(store, name, [fragile, lazy], max_inverted_gap=0.1)
    fragile_why = "inverted gap +0.2100 [+0.2000, +0.2200]: lower bound above max_inverted_gap 0.1"
    assert decision == Decision(None, False, [f"every candidate was refused (v{fragile.version} (head): {fragile_why}"
                                              f" | v{lazy.version} (head): undertrained: learned nothing)"],
                                champion.version)
    assert store.champion(name) == champion.version
    for version, why in ((fragile, fragile_why), (lazy, "undertrained: learned nothing")):
        tags = store.tags(name, version.version)
        assert (tags["status"], tags["gate"]) == ("challenger", f"refused: {why}")
        assert "champion.change" not in tags
    refused = audit_trail(store.client, name)[1:]
    assert {e["alias"] for e in refused} == {ALIAS}
    assert [(e["action"], e["version"], e["previous"], e["why"]) for e in refused] == [
        ("refused", fragile.version, champion.version, fragile_why),
        ("refused", lazy.version, champion.version, "undertrained: learned nothing")]


def test_the_champion_must_be_beaten_at_the_lower_bound(store: Store) -> None:
    name = store.model()
    old = store.answers(name, 5)
    gate(store, name, [old])
    fresh = store.answers(name, 25)
    decision = gate(store, name, [fresh])
    assert decision.promoted and decision.previous == old.version
    assert decision.reason == f"beats champion v{old.version} by {difference(store.client, name, fresh, old)}"
    assert store.tags(name, old.version)["status"] == f"replaced as {ALIAS} by v{fresh.version}"
    again = gate(store, name, [fresh], data="d1")
    assert again == Decision(fresh.version, False, ["already champion"], fresh.version)
    # gating the champion again changes nothing: it is not turned into a refused challenger
    assert (store.tags(name, fresh.version)["status"], store.champion(name)) == (ALIAS, fresh.version)
    assert [e["action"] for e in audit_trail(store.client, name)] == ["gate", "gate"]
    same = store.answers(name, 25)  # identical answers: a difference of exactly zero
    noise = gate(store, name, [same])
    zero = difference(store.client, name, same, fresh)
    assert not noise.promoted and noise.version == same.version and noise.previous == fresh.version
    assert noise.reason == f"does not beat champion v{fresh.version} by min_gain 0.0: difference {zero}"
    assert store.tags(name, same.version)["gate"] == f"refused: {noise.reason}"
    better = store.answers(name, 30)
    win = gate(store, name, [better])
    assert win.promoted
    assert win.reason == f"beats champion v{fresh.version} by {difference(store.client, name, better, fresh)}"
    assert store.champion(name) == better.version
    assert store.tags(name, better.version)["champion.previous"] == fresh.version
    changes = [e for e in audit_trail(store.client, name) if e["action"] != "refused"]
    assert [(e["version"], e["previous"]) for e in changes] == [
        (old.version, None), (fresh.version, old.version), (better.version, fresh.version)]


def test_version_must_name_an_existing_version_of_this_model(store: Store) -> None:
    name, other = store.model(), store.model()
    store.answers(other, 10)
    store.answers(other, 10)
    mine = store.answers(name, 10)
    assert str(require_version(store.client, name, mine.version).version) == mine.version
    for version, message in [("two", "version must be a number, got 'two'"), ("-1", "got '-1'"),
                             ("2", f"model '{name}' has no version 2")]:
        with pytest.raises(LongdocError, match=re.escape(message)):
            require_version(store.client, name, version)
    with pytest.raises(LongdocError, match="^no registered model named 'nosuch'$"):
        require_version(store.client, "nosuch", "1")
    with pytest.raises(LongdocError, match="^no registered model named 'nosuch'$"):
        promote(store.client, "nosuch", "1", ALIAS, "why", True, "d1", GateParams())


def test_manual_promotion_goes_through_the_gate_unless_forced_with_a_reason(store: Store) -> None:
    name = store.model()
    first = store.answers(name, 10)
    passed = promote(store.client, name, first.version, ALIAS, "", False, "d1", GateParams())
    assert passed == Decision(first.version, True, ["passed the gate"], None)
    assert store.tags(name, first.version)["champion.previous"] == ""
    worse = store.answers(name, 5, undertrained=True)
    trail = audit_trail(store.client, name)
    with pytest.raises(LongdocError, match=re.escape(
            f"{name} v{worse.version} does not pass the gate: undertrained: learned nothing (use --force --reason")):
        promote(store.client, name, worse.version, ALIAS, "because", False, "d1", GateParams())
    with pytest.raises(LongdocError, match="^--force needs --reason: the audit trail must say why"):
        promote(store.client, name, worse.version, ALIAS, "", True, "d1", GateParams())
    with pytest.raises(LongdocError, match=f"^{name} v{first.version} is already champion$"):
        promote(store.client, name, first.version, ALIAS, "again", True, "d1", GateParams())
    assert audit_trail(store.client, name) == trail and store.champion(name) == first.version
    lower = store.answers(name, 8)  # passes its own checks, loses to the champion
    verdict = difference(store.client, name, lower, first)
    with pytest.raises(LongdocError, match=re.escape(f"does not beat champion v{first.version} by min_gain 0.0: "
                                                     f"difference {verdict} (use --force")):
        promote(store.client, name, lower.version, ALIAS, "", False, "d1", GateParams())
    forced = promote(store.client, name, worse.version, ALIAS, "label drift", True, "d1", GateParams())
    why = "label drift (forced past: undertrained: learned nothing)"
    assert forced == Decision(worse.version, True, [why], first.version)
    tags = store.tags(name, worse.version)
    change = json.loads(tags["champion.change"])
    assert (tags["status"], change["action"], change["why"], tags["champion.previous"]) == (
        ALIAS, "promote", why, first.version)
    entry = audit_trail(store.client, name)[-1]
    assert (entry["action"], entry["version"], entry["previous"], entry["why"]) == (
        "promote", worse.version, first.version, why)
    better = store.answers(name, 30)
    plain = promote(store.client, name, better.version, ALIAS, "weekly", False, "d1", GateParams())
    assert plain.reasons == ["weekly"] and store.champion(name) == better.version


def test_rollback_walks_back_through_the_champions_rather_than_toggling(store: Store) -> None:
    name = store.model()
    with pytest.raises(LongdocError, match=f"^{name} has no champion to roll back$"):
        rollback(store.client, name, ALIAS, "")
    a, b, c = (store.answers(name, right) for right in (10, 20, 30))
    gate(store, name, [a])
    gate(store, name, [b])
    promote(store.client, name, c.version, ALIAS, "", False, "d1", GateParams())
    first = rollback(store.client, name, ALIAS, "c broke serving")
    assert first == Decision(b.version, True, ["c broke serving"], c.version)
    assert store.champion(name) == b.version
    assert (store.tags(name, c.version)["status"], store.tags(name, b.version)["status"]) == (
        "rolled back from champion", ALIAS)
    restored = store.tags(name, b.version)
    change = json.loads(restored["champion.change"])
    assert (change["action"], change["why"], restored["champion.previous"]) == (
        "rollback", "c broke serving", a.version)
    second = rollback(store.client, name, ALIAS, "")
    assert second == Decision(a.version, True, ["rollback"], b.version) and store.champion(name) == a.version
    with pytest.raises(LongdocError, match=f"^{name} v{a.version} has no previous champion to roll back to$"):
        rollback(store.client, name, ALIAS, "")
    changes = [(e["action"], e["version"], e["previous"], e["why"]) for e in audit_trail(store.client, name)]
    assert changes == [("gate", a.version, None, "no champion yet"),
                       ("gate", b.version, a.version, changes[1][3]),
                       ("promote", c.version, b.version, "passed the gate"),
                       ("rollback", b.version, c.version, "c broke serving"),
                       ("rollback", a.version, b.version, "rollback")]


actions = st.lists(st.one_of(st.tuples(st.just("gate"), st.integers(0, 30)),
                             st.tuples(st.just("force"), st.integers(0, 30)),
                             st.tuples(st.just("rollback"), st.just(0))), min_size=1, max_size=6)


@SLOW
@given(steps=actions)
def test_every_change_of_champion_has_exactly_one_audit_entry(store: Store, steps) -> None:
    """Whatever happens, the trail lists each alias change once, with who/when/why and the one it replaced."""
    name = store.model()
    changes = []
    for action, right in steps:
        before = store.champion(name)
        try:
            if action == "gate":
                gate(store, name, [store.answers(name, right)])
            elif action == "force":
                promote(store.client, name, store.answers(name, right).version, ALIAS, "ops", True, "d1",
                        GateParams())
            else:
                rollback(store.client, name, ALIAS, "")
        except LongdocError:
            assert action == "rollback"
        after = store.champion(name)
        if after != before:
            changes.append((after, before))
    trail = [e for e in audit_trail(store.client, name) if e["action"] != "refused"]
    assert [(e["version"], e["previous"]) for e in trail] == changes
    for entry in trail:
        assert entry["who"] and entry["why"] and datetime.fromisoformat(entry["when"]).tzinfo is not None
    # one version says it is champion, and it is the one the alias points to
    statuses = {v.version: v.tags.get("status") for v in store.client.search_model_versions(f"name='{name}'")}
    assert [str(v) for v, s in statuses.items() if s == ALIAS] == ([store.champion(name)] if store.champion(name)
                                                                    else [])


def test_the_lease_is_exclusive_and_released_after(store: Store) -> None:
    """While one writer holds an alias's lease nobody else gets it; it is free afterwards, even after an error."""
    name = store.model()
    with alias_lease(store.client, name, ALIAS, "first") as token:
        held = store.client.get_registered_model(lease_name(name, ALIAS)).tags
        assert (held["token"], held["holder"]) == (token, "first")
        with pytest.raises(LongdocError, match=rf"^{name}@{ALIAS} is being changed by first since "), \
                alias_lease(store.client, name, ALIAS, "second", wait_seconds=0.3):
            pass
        with alias_lease(store.client, name, "prod", "second"):  # another alias is another lease
            pass
    with pytest.raises(KeyError), alias_lease(store.client, name, ALIAS, "second"):
        raise KeyError("a failed promotion")
    with alias_lease(store.client, name, ALIAS, "third"):
        pass
    assert not store.client.search_registered_models(f"name LIKE '{lease_name(name, '')}%'")


def _beating(client, lease: str, stop: threading.Event, every: float = 0.05) -> threading.Thread:
    """A live holder's renewals: its ``beat`` tag changes while ``stop`` is not set."""
    def beat() -> None:
        count = 0
        while not stop.wait(every):
            count += 1
            with contextlib.suppress(Exception):
                client.set_registered_model_tag(lease, "beat", str(count))

    thread = threading.Thread(target=beat, daemon=True)
    thread.start()
    return thread


def test_a_live_holder_is_not_broken_whatever_its_clock_says(store: Store) -> None:
    """A holder whose clock is an hour behind wrote an expiry that looks past to everyone else; it keeps
    renewing, so its lease is alive: liveness is what a waiter observes on its own clock, not a timestamp."""
    name = store.model()
    lease = lease_name(name, ALIAS)
    past = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
    store.client.create_registered_model(lease, tags={"token": "alive", "holder": "slow clock", "taken": past,
                                                      "expires": past, "beat": "0"})
    stop = threading.Event()
    beater = _beating(store.client, lease, stop)
    try:
        with pytest.raises(LongdocError, match="being changed by slow clock"), \
                alias_lease(store.client, name, ALIAS, "next", wait_seconds=1.5, lease_seconds=0.5):
            pass
    finally:
        stop.set()
        beater.join()
    assert store.client.get_registered_model(lease).tags["token"] == "alive"


def test_a_dead_holders_lease_is_broken_after_a_lease_of_silence_whatever_its_clock_said(store: Store) -> None:
    """A holder whose clock ran an hour ahead and then died wrote an expiry far in the future; its lease is
    broken once a waiter has seen it unrenewed for a lease's length, and only that lease."""
    name = store.model()
    lease = lease_name(name, ALIAS)
    future = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    store.client.create_registered_model(lease, tags={"token": "dead", "holder": "crashed", "expires": future})
    started = time.monotonic()
    with alias_lease(store.client, name, ALIAS, "next", wait_seconds=5, lease_seconds=0.4) as token:
        assert store.client.get_registered_model(lease).tags["token"] == token != "dead"
    assert time.monotonic() - started >= 0.4  # not before a whole lease of silence


def test_a_dead_lease_being_broken_by_another_writer_is_left_to_it(store: Store) -> None:
    """Breaking is read-then-delete: two breakers could both read the dead token, and the slower one would
    delete the lease the faster one has just taken. A breaker first claims the dead token (a registered model
    named by it, created once); whoever cannot claim it leaves the lease alone."""
    name = store.model()
    lease = lease_name(name, ALIAS)
    past = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
    store.client.create_registered_model(lease, tags={"token": "dead", "holder": "crashed", "expires": past})
    store.client.create_registered_model(breaking_name(name, ALIAS, "dead"), tags={"holder": "other breaker"})
    with pytest.raises(LongdocError, match="being changed by crashed"), \
            alias_lease(store.client, name, ALIAS, "next", wait_seconds=1.0, lease_seconds=0.2):
        pass
    assert store.client.get_registered_model(lease).tags["token"] == "dead"


def test_a_holder_that_outlived_its_lease_does_not_release_the_next_holders(store: Store) -> None:
    """Released only if the token is still its own, however recently it renewed by its own clock: a laptop
    that slept through its lease had a monotonic clock that stood still meanwhile."""
    name = store.model()
    lease = lease_name(name, ALIAS)
    with alias_lease(store.client, name, ALIAS, "slept"):
        store.client.delete_registered_model(lease)  # as the next writer does once it saw the lease dead
        store.client.create_registered_model(lease, tags={"token": "next", "holder": "next"})
    assert store.client.get_registered_model(lease).tags["token"] == "next"


def test_a_holder_that_lost_its_lease_moves_no_alias(store: Store, monkeypatch) -> None:
    """The fencing check: right before the alias moves, the holder reads that the lease is still its own."""
    name = store.model()
    first, second = store.answers(name, 10), store.answers(name, 20)
    gate(store, name, [first])
    lease = lease_name(name, ALIAS)
    read_champion = current_champion

    def then_lose_the_lease(*args, **kwargs):  # the lease is broken while this writer compares (it slept)
        found = read_champion(*args, **kwargs)
        with contextlib.suppress(Exception):
            store.client.delete_registered_model(lease)
            store.client.create_registered_model(lease, tags={"token": "next", "holder": "next writer"})
        return found

    import longdoc.registry.promotion

    monkeypatch.setattr(longdoc.registry.promotion, "current_champion", then_lose_the_lease)
    with pytest.raises(LongdocError, match=f"lost the lease on {name}@{ALIAS} to next writer"):
        promote(store.client, name, second.version, ALIAS, "late", True, "d1", GateParams())
    monkeypatch.undo()
    assert store.champion(name) == first.version
    assert store.client.get_registered_model(lease).tags["token"] == "next"
    store.client.delete_registered_model(lease)


def test_a_change_that_died_half_way_is_closed_by_the_next_one(store: Store) -> None:
    """An unfinished record is applied if the alias went to its version, failed if not."""
    name = store.model()
    first, second, third = (store.answers(name, r) for r in (10, 20, 25))
    gate(store, name, [first])
    died_before = audit.open_record(store.client, name, audit.entry("promote", third.version, ALIAS, first.version,
                                                                    "died before the alias moved"))
    moved = audit.open_record(store.client, name, audit.entry("promote", second.version, ALIAS, first.version,
                                                              "died after the alias moved"))
    store.client.set_registered_model_alias(name, ALIAS, second.version)
    assert [r["state"] for r in audit_trail(store.client, name, applied_only=False)] == [
        "applied", "unfinished", "unfinished"]
    gate(store, name, [second])  # the next decision on this alias (it changes nothing: second holds it)
    states = {r["why"]: r["state"] for r in audit_trail(store.client, name, applied_only=False)}
    assert states["died before the alias moved"] == "failed" and states["died after the alias moved"] == "applied"
    assert [r["seq"] for r in audit_trail(store.client, name, applied_only=False)] == [1, 2, 3]
    assert {died_before, moved} <= {r.info.run_id for r in store.client.search_runs(
        [store.client.get_experiment_by_name(audit.experiment_name(name)).experiment_id])}


def test_a_change_whose_record_cannot_be_written_leaves_the_alias_where_it_was(store: Store, monkeypatch) -> None:
    """The record comes first: if it cannot be written, nothing moves, and the lease is given back."""
    name = store.model()
    first, second = store.answers(name, 10), store.answers(name, 20)
    gate(store, name, [first])

    def unwritable(*args, **kwargs):
        raise RuntimeError("the audit store refused the write")

    monkeypatch.setattr(audit, "open_record", unwritable)
    with pytest.raises(RuntimeError, match="refused the write"):
        promote(store.client, name, second.version, ALIAS, "hotfix", True, "d1", GateParams())
    assert store.champion(name) == first.version and store.tags(name, second.version).get("status") != ALIAS
    assert not store.client.search_registered_models(f"name LIKE '{lease_name(name, '')}%'")
    monkeypatch.undo()
    assert [r["version"] for r in audit_trail(store.client, name, applied_only=False)] == [first.version]


def test_the_audit_keeps_every_change_as_its_own_record_in_order(store: Store) -> None:
    """One record per change: nothing grows a single value, so long histories keep working."""
    name = store.model()
    versions = [store.answers(name, r) for r in (5, 6)]
    for version in versions:
        promote(store.client, name, version.version, ALIAS, "setup", True, "d1", GateParams())
    for i in range(30):
        promote(store.client, name, versions[i % 2].version, ALIAS, f"flip {i} " + "x" * 200, True, "d1",
                GateParams())
    trail = audit_trail(store.client, name)
    assert len(trail) == 32 and [r["seq"] for r in trail] == list(range(1, 33))
    assert all(b["previous"] == a["version"] for a, b in zip(trail, trail[1:], strict=False))
    assert trail[-1]["version"] == store.champion(name)


def test_no_alias_means_no_champion_and_no_history_means_an_empty_trail(store: Store) -> None:
    name = store.model()
    store.answers(name, 3)
    assert current_champion(store.client, name, ALIAS) is None
    assert current_champion(store.client, f"{name}-never-registered", ALIAS) is None  # no model: no champion either
    assert audit_trail(store.client, name) == []


def test_a_rollback_makes_the_restored_version_say_it_is_champion_again(store: Store) -> None:
    """Whatever its status said meanwhile, the version the alias goes back to is marked as the champion."""
    name = store.model()
    first = store.answers(name, 10)
    gate(store, name, [first])
    store.client.set_model_version_tag(name, first.version, "status", "archived")  # e.g. edited by hand meanwhile
    second = store.answers(name, 5)
    promote(store.client, name, second.version, ALIAS, "trial", True, "d1", GateParams())
    rollback(store.client, name, ALIAS, "trial over")
    assert store.champion(name) == first.version
    assert store.tags(name, first.version)["status"] == ALIAS
    assert store.tags(name, second.version)["status"] == "rolled back from champion"


def test_a_champion_set_outside_the_gate_has_nothing_to_roll_back_to(store: Store) -> None:
    """An alias set by hand carries no ``champion.previous``: rollback refuses rather than guessing."""
    name = store.model()
    version = store.answers(name, 3)
    store.client.set_registered_model_alias(name, ALIAS, version.version)
    with pytest.raises(LongdocError, match=f"^{name} v{version.version} has no previous champion to roll back to$"):
        rollback(store.client, name, ALIAS, "undo")
    assert store.champion(name) == version.version and audit_trail(store.client, name) == []


def test_every_candidate_of_a_run_is_tagged_with_why_it_won_or_lost(store: Store) -> None:
    """One run: a baseline, a clear winner and a weaker transformer; only the winner moves the alias."""
    name = store.model()
    champion = store.answers(name, 12)
    gate(store, name, [champion])
    base, strong, weak = store.answers(name, 12, kind="baseline"), store.answers(name, 30), store.answers(name, 20)
    decision = gate(store, name, [weak, base, strong])
    assert decision.promoted and (decision.version, decision.previous) == (strong.version, champion.version)
    assert store.champion(name) == strong.version
    tags = {v.version: store.tags(name, v.version) for v in (base, strong, weak)}
    assert tags[strong.version]["status"] == ALIAS and tags[strong.version]["gate"].startswith("passed: beats champion")
    assert tags[base.version]["gate"].startswith(f"refused: v{strong.version} (head) beats the baseline: ")
    assert tags[weak.version]["gate"].startswith(f"refused: v{strong.version} (head) is this run's choice")
    assert tags[base.version]["status"] == tags[weak.version]["status"] == "challenger"
    trail = [(e["action"], e["version"], e["previous"]) for e in audit_trail(store.client, name)[1:]]
    assert sorted(trail) == sorted([("refused", base.version, champion.version),
                                    ("refused", weak.version, champion.version),
                                    ("gate", strong.version, champion.version)])
    assert trail[-1][0] == "gate"


# --- trust under change (issue #20): the gate always compares -------------------------------------

def test_new_data_does_not_replace_the_champion_without_a_paired_comparison(store: Store) -> None:
    """A candidate on other data must beat the champion re-scored on its own test documents; a champion
    that cannot be re-scored (here: a version with no loadable model) is a refusal that says why."""
    name = store.model()
    old = store.answers(name, 15, data="d0")
    gate(store, name, [old], data="d0")
    fresh = store.answers(name, 30, data="d1")  # perfect, but on other data: the logged answers are not comparable
    decision = gate(store, name, [fresh], data="d1")
    assert not decision.promoted and store.champion(name) == old.version
    assert decision.reason.startswith(f"champion v{old.version} (data d0) could not be re-scored on the candidate's "
                                      "test documents (data d1): ")
    assert store.tags(name, fresh.version)["gate"] == f"refused: {decision.reason}"
    assert store.tags(name, old.version)["status"] == ALIAS


def test_a_registry_error_on_reading_the_champion_stops_the_gate(tmp_path: Path) -> None:
    """Only "alias not found" means no champion; a store that fails is an error, and nothing is written."""
    import sqlite3

    import mlflow

    shutil.copy(_empty_store(), tmp_path / "mlruns.db")
    uri = f"sqlite:///{tmp_path / 'mlruns.db'}"
    broken = Store(mlflow.MlflowClient(uri, uri), uri, "", tmp_path)
    broken.experiment = broken.client.create_experiment("gate", artifact_location=(tmp_path / "a").as_uri())
    name = broken.model()
    champion, candidate = broken.answers(name, 10), broken.answers(name, 12)
    gate(broken, name, [champion])
    with sqlite3.connect(tmp_path / "mlruns.db") as db:  # the alias points at a version the store cannot read
        db.execute("UPDATE registered_model_aliases SET version = 99 WHERE name = ?", (name,))
    with pytest.raises(LongdocError, match=f"^cannot read {name}@{ALIAS} from the registry "):
        gate(broken, name, [candidate])
    with pytest.raises(LongdocError, match=f"^cannot read {name}@{ALIAS} from the registry "):
        promote(broken.client, name, candidate.version, ALIAS, "fix", True, "d1", GateParams())
    with sqlite3.connect(tmp_path / "mlruns.db") as db:
        db.execute("UPDATE registered_model_aliases SET version = ? WHERE name = ?", (int(champion.version), name))
    assert broken.champion(name) == champion.version
    assert "status" not in broken.tags(name, candidate.version) and "gate" not in broken.tags(name, candidate.version)
    assert [r["version"] for r in audit_trail(broken.client, name, applied_only=False)] == [champion.version]


@pytest.mark.parametrize("tags", [{}, {f"{GAP}_lo": "nan"}, {f"{GAP}_lo": "n/a"}, {f"{GAP}_lo": "", GAP: "x"}])
def test_an_unknown_inverted_gap_is_a_refusal_that_says_so(tags: dict) -> None:
    """No evidence of robustness is no pass: the rule cannot be skipped by a missing or NaN value."""
    assert refusals(entity(**tags, data_version="d1"), "d1", GateParams()) == [
        "inverted gap unknown (no number in its inverted_gap_macro_f1_lo tag): robustness cannot be checked"]


def test_gating_the_champion_after_a_corpus_change_changes_nothing(store: Store) -> None:
    """The already-champion check comes before the refusals: the champion is never turned into a challenger."""
    name = store.model()
    champion = store.answers(name, 20, data="d0")
    gate(store, name, [champion], data="d0")
    again = gate(store, name, [champion], data="d1")  # `longdoc models gate` after the corpus changed
    assert again == Decision(champion.version, False, ["already champion"], champion.version)
    tags = store.tags(name, champion.version)
    assert (tags["status"], tags["gate"]) == (ALIAS, "passed: no champion yet")
    assert [e["action"] for e in audit_trail(store.client, name, applied_only=False)] == ["gate"]


@FAST
@given(who=st.text(min_size=0, max_size=6000), why=st.text(min_size=0, max_size=12000))
def test_a_version_note_always_fits_its_tag_and_keeps_the_start_of_each_text(who: str, why: str) -> None:
    """Clipping ends whatever the texts (escapes included) and keeps their beginnings."""
    record = {"action": "gate", "who": who, "when": "2026-12-05T00:00:00+00:00", "why": why}
    note = json.loads(text := audit.version_note(record, "run-1"))
    assert len(text) <= 5000 and (note["action"], note["record"]) == ("gate", "run-1")
    for key, value in (("who", who), ("why", why)):
        kept = note[key].removesuffix(" ... (clipped)")
        assert value.startswith(kept) and (note[key] == value or note[key].endswith(" ... (clipped)") or not kept)
    if len(json.dumps({"who": who, "why": why}, ensure_ascii=False)) < 4800:
        assert (note["who"], note["why"]) == (who, why)
    if len(json.dumps(who, ensure_ascii=False)) <= 500:
        assert note["who"] == who  # only the reason gives way while the name is reasonable
    assert len(note["why"].removesuffix(" ... (clipped)")) >= min(len(why), 4000 // 6)  # the reason keeps room


def test_a_promotion_by_a_user_with_a_very_long_name_finishes(store: Store) -> None:
    """LONGDOC_USER of ~4,900 characters once looped forever under the lease while clipping the version note."""
    import subprocess
    import sys

    name = store.model()
    version = store.answers(name, 10)
    code = ("import sys, mlflow; from longdoc.registry.promotion import promote; "
            "from longdoc.config.params import GateParams; "
            "c = mlflow.MlflowClient(sys.argv[1], sys.argv[1]); "
            "promote(c, sys.argv[2], sys.argv[3], 'champion', 'hotfix', True, 'd1', GateParams())")
    done = subprocess.run([sys.executable, "-c", code, store.uri, name, version.version], capture_output=True,
                          text=True, timeout=120, env={**os.environ, "LONGDOC_USER": "u" * 4950})
    assert done.returncode == 0, done.stderr[-2000:]
    change = json.loads(store.tags(name, version.version)["champion.change"])
    assert change["who"].startswith("u" * 400) and change["why"] == "hotfix"
    assert store.champion(name) == version.version


def test_a_changed_private_mlflow_api_falls_back_to_the_public_client(store: Store) -> None:
    """MLflow's private registry client with another signature (as a future release may have): the gate,
    the lease and the audit trail use the public client instead of failing half-way with a TypeError."""
    import mlflow
    from mlflow.tracking._model_registry.client import ModelRegistryClient

    from longdoc.registry import mlflow_direct

    class ChangedRegistry(ModelRegistryClient):  # a release whose private client takes a tag object ...
        def set_model_version_tag(self, name, version, tag):
            super().set_model_version_tag(name, version, tag.key, tag.value)

    class ChangedClient(mlflow.MlflowClient):  # ... and whose public client was changed with it
        def _get_registry_client(self):
            return ChangedRegistry(self._registry_uri, self.tracking_uri)

        def set_model_version_tag(self, name, version=None, key=None, value=None, stage=None):
            self._get_registry_client().set_model_version_tag(name, version, ModelVersionTag(key, str(value)))

    client = ChangedClient(store.uri, store.uri)
    name = store.model()
    first, second = store.answers(name, 5), store.answers(name, 25)
    for version in (first, second):
        decide(client, name, [version.version], ALIAS, "d1", GateParams())
    assert store.champion(name) == second.version
    assert store.tags(name, second.version)["champion.previous"] == first.version
    assert store.tags(name, first.version)["status"] == f"replaced as {ALIAS} by v{second.version}"
    assert mlflow_direct.registry(client) is client  # probed: the public client
    assert mlflow_direct.registry(store.client) is not store.client  # the pinned MLflow: the direct client


def test_a_change_that_died_after_the_alias_moved_gets_its_tags_from_the_next_one(store: Store) -> None:
    """A writer killed between moving the alias and tagging the versions left two versions saying "champion"
    and none saying what it replaced; the next change repairs the tags from the audit record."""
    name = store.model()
    first, second, third = (store.answers(name, r) for r in (10, 20, 5))
    gate(store, name, [first])
    record = audit.entry("promote", second.version, ALIAS, first.version, "hotfix, then the pod was killed")
    audit.open_record(store.client, name, record)
    store.client.set_registered_model_alias(name, ALIAS, second.version)  # ... and nothing after that
    assert store.tags(name, first.version)["status"] == ALIAS and "status" not in store.tags(name, second.version)
    gate(store, name, [third])  # the next change: refused, but it repairs what the dead one left
    first_tags, second_tags = store.tags(name, first.version), store.tags(name, second.version)
    assert (second_tags["status"], second_tags["champion.previous"]) == (ALIAS, first.version)
    assert first_tags["status"] == f"replaced as {ALIAS} by v{second.version}"
    change = json.loads(second_tags["champion.change"])
    assert (change["action"], change["why"], change["who"]) == ("promote", record["why"], record["who"])
    statuses = [v.tags.get("status") for v in store.client.search_model_versions(f"name='{name}'")]
    assert statuses.count(ALIAS) == 1
    rollback(store.client, name, ALIAS, "undo the hotfix")  # the repaired previous is what rollback restores
    assert store.champion(name) == first.version


def test_a_champion_that_cannot_be_rescored_is_a_refusal_that_says_why(store: Store) -> None:
    """Re-scoring needs the candidate's documents in the corpus and a champion whose model loads; each
    failure is a refusal naming it, never a crash and never a promotion."""
    name = store.model()
    old = store.answers(name, 10, data="d0")
    gate(store, name, [old], data="d0")
    fresh = store.answers(name, 30, data="d1")
    ids = [f"doc-{i:03d}" for i in range(30)]
    prefix = f"champion v{old.version} (data d0) could not be re-scored on the candidate's test documents (data d1): "

    def refusal(corpus: pd.DataFrame | None) -> str:
        decision = decide(store.client, name, [fresh.version], ALIAS, "d1", GateParams(), corpus)
        assert not decision.promoted and store.champion(name) == old.version
        assert decision.reason.startswith(prefix), decision.reason
        return decision.reason.removeprefix(prefix)

    assert refusal(None) == (f"v{fresh.version} and v{old.version} were evaluated on different data and no corpus "
                             "was given to re-score on")
    partial = pd.DataFrame({"id": ids[:20], "text": ["some text"] * 20, "label": "sports"})
    assert refusal(partial) == "the corpus lacks 10 of the 30 test documents (e.g. 'doc-020')"
    whole = pd.DataFrame({"id": ids, "text": ["some text"] * 30, "label": "sports"})
    failure = refusal(whole)  # the documents are there, but this cheap version has no model to load
    assert failure.startswith(("MlflowException: ", "OSError: ")) and f"models:/{name}/{old.version}" not in failure
    assert "None" not in failure
