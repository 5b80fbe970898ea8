"""Who is champion, and why: the promotion gate, manual promotion, rollback and their audit trail.

The gate runs once per pipeline run, after every candidate (the variants and the TF-IDF baseline)
is registered, and its rules are stated on intervals, because a test split of 150 documents cannot
resolve differences of one document:

1. each candidate on its own: refused when the lower bound of its inverted macro-F1 gap is above
   ``max_inverted_gap`` (it surely loses that much when the telling part comes last) or unknown, or
   when it was trained on other data than the current corpus;
2. among this run's survivors: a transformer is chosen only if it beats the baseline, i.e. the lower
   bound of the paired-bootstrap macro-F1 difference (transformer - baseline, same test documents)
   is above ``min_gain``; otherwise the baseline is chosen: as good within noise and far cheaper;
3. against the task's champion: the chosen candidate must beat it the same way, on the candidate's
   test documents. The champion is re-scored on them when it was evaluated on other documents or on
   other data (a changed corpus is no free pass: a content hash does not say which data is newer,
   and a sampled or older corpus differs too); a champion that cannot be re-scored is a refusal.

MLflow aliases keep no history, so every change of champion (and every refusal) is one audit
record (audit.py: action, version, previous champion, who, when, why), written before the alias
moves, and the same facts go onto the version. The previous champion is what ``rollback`` restores.

The guarantee, for every writer that goes through this module (the pipeline's gate step, one per
run, and ``longdoc models gate|promote|rollback``), against a SQLite file or an MLflow server alike:
changes of one alias are serialised by its lease (lease.py), so each one reads the champion left by
the one before, its record's ``previous`` is that champion, and the applied records form one chain
that ends at the alias holder. Exactly one version holds the alias and says so in its status. A
change that fails half-way (the server went away) leaves an unfinished record and the alias either
where it was or at the new version; the next change, under the same lease, closes that record as
applied or failed from where the alias actually is. Changes made outside longdoc (the MLflow UI)
are not serialised and not recorded.
"""

from __future__ import annotations

import contextlib
import math
import tempfile
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from longdoc.config.params import GateParams
from longdoc.errors import LongdocError
from longdoc.registry import audit
from longdoc.registry.lease import alias_lease, check
from longdoc.registry.mlflow_direct import registry
from longdoc.registry.tracking import redact

PROMOTION_METRIC = "normal_macro_f1"
GAP_METRIC = "inverted_gap_macro_f1"
BASELINE_KIND = "baseline"


@dataclass
class Decision:
    version: str | None
    promoted: bool
    reasons: list[str] = field(default_factory=list)
    previous: str | None = None

    @property
    def reason(self) -> str:
        return "; ".join(self.reasons)


@dataclass
class Difference:
    """macro-F1(a) - macro-F1(b) on the same test documents, with its 95% paired-bootstrap interval."""

    point: float
    low: float
    high: float
    documents: int
    rescored: bool = False
    out_of_fold: bool = False  # the candidate's answers are cross-fitted: every document of its corpus, out of fold

    def __str__(self) -> str:
        kind = "out-of-fold" if self.out_of_fold else "test"
        note = f", champion re-scored on the candidate's {'documents' if self.out_of_fold else 'test split'}"
        note = note if self.rescored else ""
        return f"{self.point:+.4f} [{self.low:+.4f}, {self.high:+.4f}] on {self.documents} {kind} documents{note}"


def current_champion(client, name: str, alias: str):
    """The version holding ``alias``, or None when the alias (or the model) does not exist.

    Only that absence means "no champion yet": any other failure (a server error, a permission, an
    alias pointing at a version the store cannot read) stops the caller, because taking it for "no
    champion" would promote without comparison and lose the champion it replaced.
    """
    from mlflow.exceptions import MlflowException

    try:
        return client.get_model_version_by_alias(name, alias)
    except MlflowException as err:
        failure = err
    try:  # how a missing alias reads differs by store: ask the model which aliases it has
        if failure.error_code in _ABSENT and not _alias_exists(client, name, alias):
            return None
    except MlflowException as err:
        failure = err
    raise LongdocError(f"cannot read {name}@{alias} from the registry ({failure.error_code}: "
                       f"{redact(failure.message)}); the gate decides nothing until it can") from None


_ABSENT = ("INVALID_PARAMETER_VALUE", "RESOURCE_DOES_NOT_EXIST")  # how a missing alias or model reads


def _alias_exists(client, name: str, alias: str) -> bool:
    """Whether the registered model lists ``alias`` (False when there is no such model)."""
    from mlflow.exceptions import MlflowException

    try:
        return alias in client.get_registered_model(name).aliases
    except MlflowException as err:
        if err.error_code == "RESOURCE_DOES_NOT_EXIST":
            return False
        raise


def _tag(version, key: str) -> float:
    try:
        return float(version.tags.get(key, "nan"))
    except ValueError:
        return float("nan")


def refusals(candidate, current_data: str, rules: GateParams) -> list[str]:
    """Reasons a candidate may not be champion whatever the others score.

    An inverted gap that is missing or not a number is a refusal: without it the robustness rule
    cannot be checked, and a rule that is skipped is a rule that does not hold.
    """
    reasons = []
    gap, low, high = (_tag(candidate, k) for k in (GAP_METRIC, f"{GAP_METRIC}_lo", f"{GAP_METRIC}_hi"))
    if math.isnan(low):
        reasons.append(f"inverted gap unknown (no number in its {GAP_METRIC}_lo tag): robustness cannot be checked")
    elif low > rules.max_inverted_gap:
        reasons.append(f"inverted gap {gap:+.4f} [{low:+.4f}, {high:+.4f}]: lower bound above max_inverted_gap "
                       f"{rules.max_inverted_gap}")
    if candidate.tags.get("undertrained") == "true":
        reasons.append(f"undertrained: {candidate.tags.get('undertrained_reason', 'learned nothing')}")
    if rules.require_current_data and candidate.tags.get("data_version") != current_data:
        reasons.append(f"trained on data {candidate.tags.get('data_version')}, current data is {current_data}")
    return reasons


def _predictions(client, version) -> pd.DataFrame:
    """The version's normal-view test predictions, as logged with its evaluation."""
    with tempfile.TemporaryDirectory() as tmp:
        path = client.download_artifacts(version.run_id, "evaluation/predictions.parquet", tmp)
        frame = pd.read_parquet(path)
    return frame[frame["view"] == "normal"].set_index("id")


def _rescore(name: str, version, corpus: pd.DataFrame, ids: pd.Index) -> pd.Series:
    """Predict with a registered version on the given test documents (through its MLflow model)."""
    import mlflow

    texts = corpus.drop_duplicates("id").set_index("id")["text"]
    missing = ids.difference(texts.index)
    if len(missing):
        raise LongdocError(f"the corpus lacks {len(missing)} of the {len(ids)} test documents (e.g. {missing[0]!r})")
    model = mlflow.pyfunc.load_model(f"models:/{name}/{version.version}")
    return pd.Series(model.predict(pd.DataFrame({"text": texts.loc[ids].tolist()}))["label"].tolist(), index=ids)


def difference(client, name: str, a, b, corpus: pd.DataFrame | None = None, rescore: bool = False) -> Difference:
    """macro-F1 of version ``a`` minus that of ``b`` on ``a``'s test documents (paired bootstrap).

    ``b`` is re-scored on ``a``'s documents (from ``corpus``) when it was scored on others, or when
    ``rescore`` says its logged answers are not comparable (it was evaluated on other data: the same
    ids may hold other texts or labels).
    """
    from longdoc.evaluation.metrics import paired_difference

    pa = _predictions(client, a)
    pb = None if rescore else _predictions(client, b)
    rescored = pb is None or set(pa.index) != set(pb.index)
    if rescored:
        if corpus is None:
            why = "were evaluated on different data" if pb is None else "were scored on different test documents"
            raise LongdocError(f"v{a.version} and v{b.version} {why} and no corpus was given to re-score on")
        predicted_b = _rescore(name, b, corpus, pa.index)
    else:
        predicted_b = pb.loc[pa.index, "predicted"]
    labels = sorted(set(pa["label"]) | set(pa["predicted"]) | set(predicted_b))
    index = {label: i for i, label in enumerate(labels)}
    y, ya, yb = (np.array([index[v] for v in col]) for col in (pa["label"], pa["predicted"], predicted_b))
    point, low, high = paired_difference("macro_f1", y, ya, yb, len(labels))
    return Difference(point, low, high, len(y), rescored, "fold" in pa.columns)


def _refuse(client, name: str, version, alias: str, previous: str | None, reasons: list[str]) -> None:
    registry(client).set_model_version_tag(name, str(version.version), "status", "challenger")
    registry(client).set_model_version_tag(name, str(version.version), "gate", "refused: " + "; ".join(reasons))
    audit.write(client, name, audit.entry("refused", str(version.version), alias, previous, "; ".join(reasons)))


def _describe(version) -> str:
    return f"v{version.version} ({version.tags.get('variant', '?')})"


def choose(client, name: str, survivors: list, rules: GateParams) -> tuple[object, dict[str, str]]:
    """The run's pick among candidates that passed their own checks, and why each other one lost.

    A transformer must beat the baseline by ``min_gain`` at the lower bound; the best transformer is
    the one with the highest macro-F1 point estimate.
    """
    baselines = [v for v in survivors if v.tags.get("kind") == BASELINE_KIND]
    models = sorted((v for v in survivors if v.tags.get("kind") != BASELINE_KIND),
                    key=lambda v: (-_tag(v, PROMOTION_METRIC), int(v.version)))
    lost: dict[str, str] = {}
    chosen = models[0] if models else baselines[0]
    if models and baselines:
        diff = difference(client, name, models[0], baselines[0])
        if diff.low > rules.min_gain:
            lost[str(baselines[0].version)] = f"{_describe(models[0])} beats the baseline: {diff}"
        else:
            chosen = baselines[0]
            lost[str(models[0].version)] = (f"does not beat the baseline {_describe(baselines[0])} by min_gain "
                                            f"{rules.min_gain}: difference {diff}")
    for version in models[1:]:
        score, best = _tag(version, PROMOTION_METRIC), _tag(models[0], PROMOTION_METRIC)
        lost[str(version.version)] = (f"{_describe(chosen)} is this run's choice; the best transformer is "
                                      f"{_describe(models[0])} (macro-F1 {best:.4f} vs {score:.4f})")
    return chosen, lost


def decide(client, name: str, versions: list[str], alias: str, current_data: str, rules: GateParams,
           corpus: pd.DataFrame | None = None) -> Decision:
    """The gate for one run's candidates: at most one is promoted; every one is tagged with why."""
    with _lease(client, name, alias) as token:
        candidates = [client.get_model_version(name, str(v)) for v in versions]
        champion = current_champion(client, name, alias)
        previous = str(champion.version) if champion is not None else None
        survivors, refused = [], []
        for candidate in candidates:
            # the champion gated again is left as it is (it is compared with nothing, so it cannot lose)
            reasons = [] if str(candidate.version) == previous else refusals(candidate, current_data, rules)
            if reasons:
                _refuse(client, name, candidate, alias, previous, reasons)
                refused.append(f"{_describe(candidate)}: {'; '.join(reasons)}")
            else:
                survivors.append(candidate)
        if not survivors:
            return Decision(None, False, [f"every candidate was refused ({' | '.join(refused)})"], previous)
        chosen, lost = choose(client, name, survivors, rules)
        for candidate in survivors:
            if str(candidate.version) in lost:
                _refuse(client, name, candidate, alias, previous, [lost[str(candidate.version)]])
        why = _versus_champion(client, name, chosen, champion, rules, corpus)
        if why is None:  # the champion was gated again: nothing changes, and it stays marked as champion
            return Decision(str(chosen.version), False, ["already champion"], previous)
        if why.startswith("refused"):
            reason = why.removeprefix("refused: ")
            _refuse(client, name, chosen, alias, previous, [reason])
            return Decision(str(chosen.version), False, [reason], previous)
        _set_champion(client, name, str(chosen.version), alias, previous, "gate", why, token)
        return Decision(str(chosen.version), True, [why], previous)


def _versus_champion(client, name: str, chosen, champion, rules: GateParams, corpus) -> str | None:
    """Why ``chosen`` replaces the champion, or "refused: why not"; None when it is the champion.

    Always by the paired rule on the candidate's test documents: new data is no free pass (which data
    is newer cannot be told from a content hash, and a sample or an older revision would pass too). A
    champion evaluated on other data is re-scored on the candidate's documents; one that cannot be
    is a refusal, since nothing shows the candidate is better.
    """
    if champion is None:
        return "no champion yet"
    if str(champion.version) == str(chosen.version):
        return None
    old, new = champion.tags.get("data_version"), chosen.tags.get("data_version")
    try:
        diff = difference(client, name, chosen, champion, corpus, rescore=old != new)
    except Exception as err:  # a model that does not load or predict is as much a refusal as a missing corpus
        why = err if isinstance(err, LongdocError) else f"{type(err).__name__}: {redact(str(err))[:500]}"
        return (f"refused: champion v{champion.version} (data {old}) could not be re-scored on the candidate's "
                f"test documents (data {new}): {why}")
    data = f"; data changed: {old} -> {new}" if old != new else ""
    if diff.low > rules.min_gain:
        return f"beats champion v{champion.version} by {diff}{data}"
    return (f"refused: does not beat champion v{champion.version} by min_gain {rules.min_gain}: difference "
            f"{diff}{data}")


@contextlib.contextmanager
def _lease(client, name: str, alias: str):
    """Hold ``alias`` of ``name`` for a read-compare-set, first closing what a dead writer left open; yields
    the lease's token, which every move of the alias checks first (lease.check)."""
    with alias_lease(client, name, alias, audit.who()) as token:
        _close_unfinished(client, name, alias)
        yield token


def _close_unfinished(client, name: str, alias: str) -> None:
    """A record left RUNNING by a writer that died: applied if the alias (or a refusal) says it happened.

    An applied change also gets the version tags its writer may not have reached (status, previous,
    change note), so exactly one version says it is champion and rollback finds what it replaced.
    """
    left_open = [(run_id, record) for run_id, record in audit.unfinished(client, name) if record["alias"] == alias]
    holder = current_champion(client, name, alias) if left_open else None
    for run_id, record in sorted(left_open, key=lambda item: item[1]["seq"]):
        applied = record["action"] == "refused" or (holder is not None and str(holder.version) == record["version"])
        if applied and record["action"] != "refused":
            _tag_change(client, name, record, run_id)
        where = f"v{holder.version}" if holder is not None else "unset"
        audit.close_record(client, run_id, applied, f"closed by the next change: the alias was at {where}")


def _move_alias(client, name: str, record: dict, token: str) -> None:
    """Record the change, give the alias to the record's version, read it back, tag the versions, and only
    then call the record applied.

    A failed record write leaves the alias where it was; a failed move or a read-back that finds another
    version (a writer that ignored or outlived the lease) ends the record as failed and raises. A writer
    that dies after the move leaves the record unfinished, and the next change tags the versions from it.
    """
    version, alias = record["version"], record["alias"]
    run_id = audit.open_record(client, name, record)
    try:
        check(client, name, alias, token)  # a writer that stalled past its lease must not move the alias
        registry(client).set_registered_model_alias(name, alias, version)
        held = current_champion(client, name, alias)
        if held is None or str(held.version) != version:
            found = f"v{held.version}" if held is not None else "no version"
            raise LongdocError(f"{name}@{alias} reads {found} right after it was set to v{version}: another writer "
                               "changed it meanwhile; check `longdoc models audit` and the alias")
    except Exception as err:
        with contextlib.suppress(Exception):
            audit.close_record(client, run_id, applied=False, note=str(err))
        raise
    _tag_change(client, name, record, run_id)
    audit.close_record(client, run_id, applied=True)


def _tag_change(client, name: str, record: dict, run_id: str) -> None:
    """The version tags of an applied change (idempotent: the next change may write them again)."""
    version, alias, previous = record["version"], record["alias"], record["previous"]
    registry(client).set_model_version_tag(name, version, "status", alias)
    if previous is not None and previous != version:
        status = f"rolled back from {alias}" if record["action"] == "rollback" else f"replaced as {alias} by v{version}"
        registry(client).set_model_version_tag(name, previous, "status", status)
    registry(client).set_model_version_tag(name, version, f"{alias}.change", audit.version_note(record, run_id))
    # ``<alias>.previous`` on a version is the champion it replaced; a rollback keeps the restored version's
    # own value, so rolling back again walks further back instead of toggling.
    if record["action"] != "rollback":
        registry(client).set_model_version_tag(name, version, f"{alias}.previous", previous or "")
    if record["action"] == "gate":
        registry(client).set_model_version_tag(name, version, "gate", "passed: " + record["why"])


def _set_champion(client, name: str, version: str, alias: str, previous: str | None, action: str,
                  why: str, token: str) -> None:
    _move_alias(client, name, audit.entry(action, version, alias, previous, why), token)


def audit_trail(client, name: str, applied_only: bool = True) -> list[dict]:
    """The alias changes and refusals of ``name`` in order (see audit.py)."""
    return audit.records(client, name, applied_only)


def require_model(client, name: str):
    from mlflow.exceptions import MlflowException

    try:
        return client.get_registered_model(name)
    except MlflowException:
        raise LongdocError(f"no registered model named {name!r}") from None


def require_version(client, name: str, version: str):
    """The version, or a clear error: not a number, no such model, or a version of another model."""
    from mlflow.exceptions import MlflowException

    if not str(version).isdigit():
        raise LongdocError(f"version must be a number, got {version!r}")
    require_model(client, name)
    try:
        return client.get_model_version(name, str(version))
    except MlflowException:
        raise LongdocError(f"model {name!r} has no version {version}") from None


def promote(client, name: str, version: str, alias: str, reason: str, force: bool, current_data: str,
            rules: GateParams, corpus: pd.DataFrame | None = None) -> Decision:
    """Manual promotion: through the gate's rules against the champion, or past them with ``force``."""
    candidate = require_version(client, name, version)  # its tags that the gate reads are set at registration
    if force and not reason:
        raise LongdocError("--force needs --reason: the audit trail must say why the gate was bypassed")
    with _lease(client, name, alias) as token:
        champion = current_champion(client, name, alias)
        previous = str(champion.version) if champion is not None else None
        if previous == str(version):
            raise LongdocError(f"{name} v{version} is already {alias}")
        reasons = refusals(candidate, current_data, rules)
        if not reasons:
            verdict = _versus_champion(client, name, candidate, champion, rules, corpus) or ""
            if verdict.startswith("refused: "):
                reasons.append(verdict.removeprefix("refused: "))
        if reasons and not force:
            raise LongdocError(f"{name} v{version} does not pass the gate: {'; '.join(reasons)} "
                               "(use --force --reason '...' to promote anyway)")
        why = reason or "passed the gate"
        if reasons:
            why += f" (forced past: {'; '.join(reasons)})"
        _move_alias(client, name, audit.entry("promote", str(version), alias, previous, why), token)
        return Decision(str(version), True, [why], previous)


def rollback(client, name: str, alias: str, reason: str) -> Decision:
    """Give the alias back to the champion before the current one."""
    with _lease(client, name, alias) as token:
        champion = current_champion(client, name, alias)
        if champion is None:
            raise LongdocError(f"{name} has no {alias} to roll back")
        previous = champion.tags.get(f"{alias}.previous", "")
        if not previous:
            raise LongdocError(f"{name} v{champion.version} has no previous {alias} to roll back to")
        _move_alias(client, name, audit.entry("rollback", previous, alias, str(champion.version), reason or "rollback"),
                    token)
        return Decision(previous, True, [reason or "rollback"], str(champion.version))
