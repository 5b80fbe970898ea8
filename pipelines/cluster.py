"""A Kubeflow Trainer v2 ``TrainJob`` that trains one variant on several nodes.

The kfp pipeline trains each variant in one pod (several GPUs there: ``train.nproc_per_node``). Past one
node, Kubeflow Trainer's ``torch-distributed`` runtime starts ``numNodes`` pods and sets the ``PET_*``
variables (nodes, processes per node, node rank, rendezvous address) that ``torchrun`` reads as its
defaults. The container therefore runs ``torchrun --module longdoc train ...``: the same training code,
and since torchrun sets ``WORLD_SIZE`` in every process it starts, ``longdoc train`` does not start
torchrun a second time. Built as plain data (no Kubernetes client), so it can be written, reviewed and
applied with ``kubectl apply -f``.
"""

from __future__ import annotations

import re
from pathlib import Path

from longdoc.config.params import Params, ddp_conflict
from longdoc.errors import LongdocError

TRAINJOB_API = "trainer.kubeflow.org/v1alpha1"
TORCH_RUNTIME = "torch-distributed"
# The image's working directory holds params.yaml (see Dockerfile); the sections below replace all of it.
IMAGE_PARAMS = "params.yaml"
DNS_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")


def trainjob_name(variant: str) -> str:
    return f"longdoc-{variant.replace('_', '-')}"


def params_args(params: Params) -> list[str]:
    """``--set SECTION=<json>`` for every section: the pods train on exactly the params the manifest was made
    from (profile and ``--set`` values included), whatever the image's own params.yaml says."""
    import yaml

    args: list[str] = []
    for section, value in params.model_dump(mode="json").items():
        # YAML flow style, not JSON: PyYAML reads JSON's 1e-05 as a string, its own 1.0e-05 as a float
        flow = yaml.safe_dump(value, default_flow_style=True, width=float("inf")).strip()
        args += ["--set", f"{section}={flow}"]
    return args


def trainjob(params: Params, variant: str, nodes: int, nproc_per_node: int | None = None, name: str | None = None,
             chunks: Path = Path("outputs/chunks"), out: Path | None = None,
             encoder_from: Path = Path("outputs/encoder")) -> dict:
    """The TrainJob manifest for ``variant`` on ``nodes`` nodes of ``nproc_per_node`` processes each.

    ``nproc_per_node`` defaults to the variant's ``train.nproc_per_node``. With ``pipeline.gpu.count`` > 0
    the nodes are GPU nodes and each asks for one ``pipeline.gpu.accelerator`` per process (a rank trains on
    GPU ``LOCAL_RANK``); with 0 they are CPU nodes (gloo). The paths are read and written by every
    node, so they must be on a volume all of them mount (the TrainingRuntime's); relative paths are under
    the image's working directory. ``batch_size`` is per process: the global batch is
    ``batch_size x nodes x nproc_per_node``.
    """
    from longdoc.models import variant_class

    variant_class(variant)
    cfg = params.train.for_variant(variant)
    nproc = nproc_per_node or cfg.nproc_per_node
    if nodes < 1 or nproc < 1:
        raise LongdocError(f"a TrainJob needs at least 1 node and 1 process per node (got {nodes} x {nproc})")
    if why := ddp_conflict(variant, nproc, nodes):
        raise LongdocError(why)
    name = name or trainjob_name(variant)
    if not DNS_LABEL.match(name) or len(name) > 63:
        raise LongdocError(f"TrainJob name {name!r} must be a DNS label: lower-case letters, digits and '-', "
                           "starting with a letter, at most 63 characters")
    command = ["torchrun", "--module", "longdoc", "train", "--params", IMAGE_PARAMS, *params_args(params),
               "--variant", variant, "--chunks", str(chunks), "--out", str(out or Path("outputs/train") / variant)]
    if params.train.two_stage and not cfg.end_to_end:
        command += ["--encoder-from", str(encoder_from)]
    trainer: dict = {"image": params.pipeline.image, "command": command, "numNodes": nodes, "numProcPerNode": nproc}
    if params.pipeline.gpu.count:
        trainer["resourcesPerNode"] = {"limits": {params.pipeline.gpu.accelerator: nproc}}
    return {"apiVersion": TRAINJOB_API, "kind": "TrainJob",
            "metadata": {"name": name, "labels": {"app.kubernetes.io/part-of": "longdoc", "longdoc/variant": variant}},
            "spec": {"runtimeRef": {"name": TORCH_RUNTIME}, "trainer": trainer}}


def write_trainjob(manifest: dict, out: Path) -> Path:
    import yaml

    if out.suffix not in (".yaml", ".yml"):
        raise LongdocError(f"--out {out}: the TrainJob manifest must end with .yaml")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(yaml.safe_dump(manifest, sort_keys=False, width=120))
    return out
