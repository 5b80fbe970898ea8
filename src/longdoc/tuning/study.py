"""``longdoc tune``: an Optuna study over params.yaml, every trial a nested MLflow run under one parent.

TPE sampler, median pruner on the validation macro-F1 each trial reports at its validations
(:mod:`longdoc.tuning.trial`). The study lives in an Optuna RDB storage, so running the command again
with the same study name adds trials to it (resume); the MLflow parent run is found again through the
study's user attributes, so every session's trials sit under the same parent.

Optuna's storage is never MLflow's own database: both keep their schema revision in a table named
``alembic_version`` and each refuses the other's revision (checked with Optuna 4.6 and MLflow 3.17 on
one SQLite file: Optuna first, then MLflow fails with "Can't locate revision identified by 'v3.2.0.a'";
MLflow first, then Optuna claims its own version is "no longer compatible", after having created its
tables among MLflow's). The default is a database beside MLflow's: ``mlruns.optuna.db`` next to
``mlruns.db``, or ``<database>_optuna`` on the same PostgreSQL/MySQL server.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from longdoc.config.params import parse_params
from longdoc.errors import LongdocError
from longdoc.redaction import redact
from longdoc.tuning.space import SearchSpace, apply
from longdoc.tuning.trial import Pruned, TrialResult, Workspace, run_trial

PARENT_RUN_ATTR = "mlflow_parent_run_id"
SERVER_SCHEMES = ("postgresql", "mysql", "mssql")


def _database(url: str) -> tuple[str, str, str, str]:
    """(backend, host, port, database) of a SQLAlchemy URL; a SQLite file as its resolved path."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        parsed = make_url(url)
    except ArgumentError:
        raise LongdocError(f"{url!r} is not a database URL (e.g. sqlite:///optuna.db)") from None
    backend = parsed.get_backend_name()
    database = parsed.database or ""
    if backend == "sqlite" and database and database != ":memory:":
        database = str(Path(database).resolve())
    return backend, parsed.host or "", str(parsed.port or ""), database


def _scheme(uri: str) -> str:
    """The database backend of a URI: ``postgresql`` for ``postgresql+psycopg://...``."""
    return uri.split(":", 1)[0].split("+")[0]


def default_storage(tracking_uri: str) -> str:
    """A database beside MLflow's: a sibling SQLite file, or a sibling database on the same server."""
    from sqlalchemy.engine import make_url

    scheme = _scheme(tracking_uri)
    if scheme == "sqlite":
        path = Path(tracking_uri.removeprefix("sqlite:///"))
        return "sqlite:///" + str(path.with_name(f"{path.stem}.optuna{path.suffix or '.db'}"))
    if scheme in SERVER_SCHEMES:
        parsed = make_url(tracking_uri)
        return parsed.set(database=f"{parsed.database}_optuna").render_as_string(hide_password=False)
    raise LongdocError(f"MLflow's tracking URI {redact(tracking_uri)} is not a database this command can put a "
                       "study beside: pass --storage (e.g. sqlite:///outputs/tune/optuna.db on this machine, or "
                       "postgresql://user@host/optuna for a team)")


def resolve_storage(storage: str | None, tracking_uri: str) -> str:
    """``--storage``, or the default beside MLflow's database; never MLflow's database itself."""
    url = storage or default_storage(tracking_uri)
    if _scheme(tracking_uri) in ("sqlite", *SERVER_SCHEMES) and _database(url) == _database(tracking_uri):
        raise LongdocError(f"--storage is MLflow's own database ({_database(url)[3]}): Optuna and MLflow each keep "
                           "their schema revision in a table named alembic_version and refuse the other's, so one "
                           f"would break the other; use another database, e.g. {default_storage(tracking_uri)}")
    if url.startswith("sqlite:///"):
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    return url


def open_study(storage_url: str, name: str, space: SearchSpace):
    """Create or load the study; a resumed study's sampler seed moves on by its number of trials, so the
    random startup trials of a second session do not repeat the first session's."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        storage = optuna.storages.RDBStorage(storage_url)
        try:
            existing = len(storage.get_all_trials(storage.get_study_id_from_name(name), deepcopy=False))
        except KeyError:
            existing = 0
    except Exception as err:  # SQLAlchemy's errors name the driver's problem; keep one line of it
        if isinstance(err, LongdocError):
            raise
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise LongdocError(f"Optuna storage {redact(storage_url)} cannot be opened: {first}") from None
    seed = None if space.sampler.seed is None else space.sampler.seed + existing
    sampler = optuna.samplers.TPESampler(seed=seed, n_startup_trials=space.sampler.n_startup_trials)
    pruner = optuna.pruners.MedianPruner(n_startup_trials=space.pruner.n_startup_trials,
                                         n_warmup_steps=space.pruner.n_warmup_steps,
                                         interval_steps=space.pruner.interval_steps)
    study = optuna.create_study(storage=storage, study_name=name, sampler=sampler, pruner=pruner,
                                direction="maximize", load_if_exists=True)
    if existing == 0:
        for values in space.enqueue:
            study.enqueue_trial(values)
    return study, existing


class Tracker:
    """The study's MLflow runs: one parent, and a nested run per trial (``mlflow.parentRunId``)."""

    def __init__(self, tracking_uri: str, experiment: str) -> None:
        from longdoc.registry.register import _experiment_id
        from longdoc.registry.tracking import use_tracking

        mlflow = use_tracking(tracking_uri)
        self.client = mlflow.MlflowClient()
        self.experiment_id = _experiment_id(mlflow, experiment, tracking_uri)

    def parent(self, study_name: str, space: SearchSpace, storage_label: str, run_id: str | None = None) -> str:
        """The study's parent run: ``run_id`` reopened when it exists in this store, created otherwise."""
        from mlflow.exceptions import MlflowException

        if run_id:
            try:
                self.client.update_run(run_id, status="RUNNING")
                return run_id
            except MlflowException:
                pass  # another tracking store than the study's first session: a new parent
        run = self.client.create_run(self.experiment_id, run_name=f"tune-{study_name}",
                                     tags={"longdoc.kind": "tune", "optuna.study": study_name,
                                           "optuna.storage": storage_label})
        self.client.log_text(run.info.run_id, yaml.safe_dump(space.model_dump(mode="json"), sort_keys=False),
                             "search_space.yaml")
        return run.info.run_id

    def trial(self, parent_id: str, study_name: str, number: int, values: dict[str, Any]) -> str:
        from mlflow.entities import Param

        run = self.client.create_run(self.experiment_id, run_name=f"trial-{number}",
                                     tags={"mlflow.parentRunId": parent_id, "optuna.study": study_name,
                                           "optuna.trial": str(number), "longdoc.kind": "tune-trial"})
        self.client.log_batch(run.info.run_id, params=[Param(k, str(v)) for k, v in values.items()])
        return run.info.run_id

    def end_trial(self, run_id: str, state: str, result: TrialResult | None = None, error: str = "") -> None:
        """Close a trial run: FINISHED when complete, KILLED when pruned (stopped early on purpose), FAILED."""
        import mlflow.entities as entities

        now = int(time.time() * 1000)
        metrics = []
        if result is not None:
            metrics = [entities.Metric(k, float(v), now, 0) for k, v in
                       {"cache_hits": result.cache_hits, "cache_misses": result.cache_misses,
                        "trial_seconds": result.seconds, "hit_cache": int(result.hit_cache)}.items()]
            if state == "COMPLETE":
                metrics.append(entities.Metric("best_val_macro_f1", result.value, now, 0))
        tags = [entities.RunTag("optuna.state", state)]
        if result is not None:
            tags.append(entities.RunTag("stage1", result.stage1))
        if error:
            tags.append(entities.RunTag("error", redact(error)[:4000]))  # a library's error may quote a URL
        self.client.log_batch(run_id, metrics=metrics, tags=tags)
        status = {"COMPLETE": "FINISHED", "PRUNED": "KILLED"}.get(state, "FAILED")
        self.client.set_terminated(run_id, status)


@dataclass
class TuneReport:
    study: str
    storage: str
    parent_run_id: str
    trials: list[dict] = field(default_factory=list)
    best: dict | None = None
    best_file: str | None = None

    @property
    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for t in self.trials:
            out[t["state"]] = out.get(t["state"], 0) + 1
        return out

    @property
    def cache_hit_trials(self) -> int:
        return sum(1 for t in self.trials if t.get("hit_cache"))

    def as_dict(self) -> dict:
        return {"study": self.study, "storage": self.storage, "parent_run_id": self.parent_run_id,
                "counts": self.counts, "cache_hit_trials": self.cache_hit_trials, "best": self.best,
                "best_file": self.best_file, "trials": self.trials}


def write_best(raw: dict, best, study_name: str, searched: list[str], path: Path) -> Path:
    """The params file of the best trial: the user's params (with --set and profile applied) and its values.

    A plain params file: ``longdoc run --params`` reads it like params.yaml.
    """
    merged = apply(raw, best.params)
    parse_params(merged)  # the file must load; the trial already ran with it
    header = (f"# Best trial {best.number} of study {study_name!r}: validation macro-F1 {best.value:.4f}.\n"
              f"# Written by `longdoc tune` on {datetime.now(UTC):%Y-%m-%d %H:%M} UTC; searched: "
              f"{', '.join(searched)}.\n# Use it with `longdoc run --params {path.name}`.\n")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(header + yaml.safe_dump(merged, sort_keys=False))
    return path


def tune(raw: dict, space: SearchSpace, n_trials: int, out_dir: Path, study_name: str | None = None,
         storage: str | None = None, best_path: Path | None = None, echo=print) -> TuneReport:
    """Run ``n_trials`` more trials of the study; returns what happened (also written to out_dir/summary.json)."""
    from optuna.trial import TrialState
    from tqdm.auto import tqdm

    from longdoc.registry.tracking import resolve_tracking_uri

    if n_trials < 1:
        raise LongdocError(f"--trials must be at least 1, got {n_trials}")
    base = parse_params(raw)
    tracking_uri = resolve_tracking_uri(base.registry.tracking_uri)
    storage_url = resolve_storage(storage, tracking_uri)
    name = study_name or space.study
    tracker = Tracker(tracking_uri, base.registry.experiment)  # checks MLflow before any compute
    study, existing = open_study(storage_url, name, space)
    parent_id = tracker.parent(name, space, redact(storage_url), study.user_attrs.get(PARENT_RUN_ATTR))
    study.set_user_attr(PARENT_RUN_ATTR, parent_id)
    report = TuneReport(name, redact(storage_url), parent_id)
    echo(f"study {name!r} in {redact(storage_url)} ({existing} earlier trials); MLflow parent run {parent_id}")
    workspace = Workspace(out_dir / "workspace")
    distributions = space.distributions()
    progress = tqdm(total=n_trials, desc=f"tune {name}", unit="trial")
    trial = None
    try:
        for _ in range(n_trials):
            trial = study.ask(distributions)
            record = execute_trial(raw, dict(trial.params), trial.number, workspace, out_dir / "trials", tracker,
                                   parent_id, name, _pruning(trial))
            if record["state"] == "FAIL":
                trial.set_user_attr("error", record["error"][:4000])
            study.tell(trial, record.get("value") if record["state"] == "COMPLETE" else None,
                       state=getattr(TrialState, record["state"]))
            trial = None
            report.trials.append(record)
            progress.update(1)
            progress.write(_line(record))
    except BaseException:  # Ctrl-C: the trial in flight is failed, not left RUNNING in the storage
        if trial is not None:
            study.tell(trial, state=TrialState.FAIL)
        tracker.client.set_terminated(parent_id, "KILLED")
        raise
    finally:
        progress.close()
    try:
        best = study.best_trial
    except ValueError:
        best = None
    client = tracker.client
    if best is not None:
        report.best = {"number": best.number, "value": best.value, "params": best.params}
        client.log_metric(parent_id, "best_val_macro_f1", best.value)
        client.set_tag(parent_id, "best_trial", str(best.number))
        target = best_path or out_dir / "params.best.yaml"
        report.best_file = str(write_best(raw, best, name, list(space.space), target))
        client.log_artifact(parent_id, report.best_file)
    client.log_metric(parent_id, "cache_hit_trials", report.cache_hit_trials, step=existing)
    client.set_terminated(parent_id, "FINISHED")
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "summary.json").write_text(json.dumps(report.as_dict(), indent=2, default=str))
    if best is None:
        raise LongdocError(f"no trial of study {name!r} completed ({report.counts}): nothing to write; see the "
                           f"errors above and the FAILED runs under MLflow run {parent_id}")
    return report


def _pruning(trial):
    """Optuna's side of a trial's reports: record the value, ask the median pruner."""

    def should_prune(step: int, value: float) -> bool:
        trial.report(value, step)
        return trial.should_prune()

    return should_prune


def execute_trial(raw: dict, values: dict[str, Any], number: int, workspace: Workspace, trials_dir: Path,
                  tracker: Tracker, parent_id: str, study_name: str, should_prune=None,
                  corpus_dir: Path | None = None) -> dict:
    """Run one trial in its nested MLflow run and close that run; a crash is recorded, never raised, so the
    study goes on. ``should_prune(step, value)``: None never prunes (the cluster sweep's parallel trials)."""
    record: dict[str, Any] = {"number": number, "params": values}
    run_id = tracker.trial(parent_id, study_name, number, values)
    record["run_id"] = run_id

    def report(step: int, value: float) -> bool:
        tracker.client.log_metric(run_id, "val_macro_f1", value, step=step)
        return bool(should_prune and should_prune(step, value))

    try:
        params = parse_params(apply(raw, values))
        result = run_trial(params, workspace, trials_dir / str(number), report, corpus_dir)
    except Pruned as pruned:
        record.update(state="PRUNED", value=pruned.value, step=pruned.step, **_counts(pruned.result))
        tracker.end_trial(run_id, "PRUNED", pruned.result)
    except (KeyboardInterrupt, SystemExit):
        tracker.end_trial(run_id, "FAIL", error="interrupted")
        raise
    except Exception as err:
        message = str(err).strip() or type(err).__name__
        record.update(state="FAIL", error=f"{type(err).__name__}: {message}")
        tracker.end_trial(run_id, "FAIL", error=record["error"])
    else:
        record.update(state="COMPLETE", value=result.value, **_counts(result))
        tracker.end_trial(run_id, "COMPLETE", result)
    return record


def _counts(result: TrialResult) -> dict:
    rec = result.record()
    return {k: rec[k] for k in ("stage1", "cache_hits", "cache_misses", "hit_cache", "seconds", "variants")}


def _line(record: dict) -> str:
    state = record["state"]
    if state == "FAIL":
        return f"trial {record['number']}: FAIL: {record['error'].splitlines()[0]}"
    cache = "cache hit" if record.get("hit_cache") else f"stage 1 {record.get('stage1')}"
    return (f"trial {record['number']}: {state} val macro-F1 {record['value']:.4f} ({cache}, "
            f"{record.get('cache_hits', 0)} vectors read, {record.get('cache_misses', 0)} encoded, "
            f"{record.get('seconds', 0):.1f} s) {record['params']}")
