"""The recurring monitor: one task that judges the served champion's last hours of records against its reference
and, on drift, submits the training pipeline. Scheduled on a cluster as a recurring run
(`longdoc pipeline schedule-monitor`); the logic is longdoc.stages.monitoring's.

On a cluster the records are read from the PVC (``<mount_path>/monitoring`` unless monitor.log_path says
otherwise): the serving deployment mounts the same claim and writes there (LONGDOC_MONITOR_LOG_PATH).
"""

from kfp import dsl

from components.factory import build_components
from longdoc.config.params import ClusterParams
from pipelines.longdoc_pipeline import mount_volume, use_mlflow_secret


def make_monitor_pipeline(image: str, name: str = "longdoc", cluster: ClusterParams | None = None):
    c = build_components(image)

    @dsl.pipeline(name=f"{name}-monitor", description="Drift of the served champion's traffic against its reference "
                                                      "profile; on drift, a training run (the gate decides).")
    def longdoc_monitor(params: str, hours: float = 24.0, retrain_host: str = "") -> bool:
        watched = c.monitor(params=params, hours=hours, retrain_host=retrain_host)
        use_mlflow_secret(mount_volume(watched, cluster), cluster)
        watched.set_display_name("monitor: served traffic against the reference").set_caching_options(False)
        return watched.outputs["Output"]

    return longdoc_monitor
