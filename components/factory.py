"""Turn the component bodies into kfp components for one container image."""

from types import SimpleNamespace

from kfp import dsl

from components import functions

COMPONENTS = ("validate", "chunk", "crossfit_plan", "crossfit_fold", "crossfit_collect", "train_encoder", "train",
              "evaluate", "register", "baseline", "gate", "compare", "package")
TUNE_COMPONENTS = ("tune_open", "tune_prepare", "tune_trial", "tune_select")  # the sweep (pipelines/tune_pipeline.py)
MONITOR_COMPONENTS = ("monitor",)  # the recurring monitor (pipelines/monitor_pipeline.py)


def build_components(image: str) -> SimpleNamespace:
    """One component per stage, all on ``image``; kfp itself comes from the image, not pip."""
    make = lambda func: dsl.component(func=func, base_image=image, install_kfp_package=False)  # noqa: E731
    return SimpleNamespace(**{name: make(getattr(functions, name))
                              for name in (*COMPONENTS, *TUNE_COMPONENTS, *MONITOR_COMPONENTS)})
