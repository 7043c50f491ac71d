"""How expbot's Jobs are shaped on one cluster: namespace, GPU pools, storage, queue, identity."""
from __future__ import annotations

from datetime import timedelta

from pydantic import BaseModel, ConfigDict, Field

GPU_RESOURCE = "nvidia.com/gpu"


class GpuPool(BaseModel):
    """Where one GPU type runs: the nodes to select and the taints to tolerate."""

    model_config = ConfigDict(frozen=True)
    node_selector: dict[str, str] = Field(default_factory=dict)
    tolerations: tuple[dict[str, str], ...] = ()


class K8sConfig(BaseModel):
    """Everything the Kubernetes backend needs beyond the experiment spec."""

    model_config = ConfigDict(frozen=True)
    namespace: str = "default"
    gpu_pools: dict[str, GpuPool] = Field(default_factory=dict)  # by GPU type name
    # Every GPU pod tolerates these (GPU node pools are usually tainted nvidia.com/gpu).
    gpu_tolerations: tuple[dict[str, str], ...] = (
        {"key": GPU_RESOURCE, "operator": "Exists", "effect": "NoSchedule"},
    )
    max_gpus_per_node: int | None = None  # a bigger request can never be placed
    checkpoint_mount: str = "/checkpoints"
    pvc_size: str = "50Gi"
    storage_class: str | None = None
    pvc_access_modes: tuple[str, ...] = ("ReadWriteOnce",)
    keep_checkpoints: bool = False  # keep the PVC when the experiment ends (else delete it)
    queue_name: str | None = None  # Kueue LocalQueue: Jobs start suspended and Kueue admits them
    # Multi-node experiments (--nodes N): every pod of the gang mounts the one checkpoint volume, so it
    # must be ReadWriteMany; their claims use this class (None: refused unless pvc_access_modes is RWX).
    shared_storage_class: str | None = None
    rendezvous_port: int = Field(default=29500, gt=0, lt=65536)  # rank 0 listens here (torchrun's default)
    # Without Kueue, a gang some of whose pods stay unschedulable this long is torn down (its Job
    # suspended: no pod of it holds a GPU) and tried again gang_retry later; the experiment waits QUEUED.
    gang_timeout: timedelta = timedelta(minutes=5)
    gang_retry: timedelta = timedelta(minutes=5)
    image_pull_secrets: tuple[str, ...] = ()
    service_account: str | None = None
    ttl_after_finished: timedelta = timedelta(days=1)
    stop_grace: timedelta = timedelta(seconds=30)
    image_pull_grace: timedelta = timedelta(seconds=60)  # before a bad image counts as a user error
    report_url: str | None = None  # expbot's /report endpoint as the pods reach it
    report_secret: str | None = None  # keys the per-attempt report tokens
    pod_labels: dict[str, str] = Field(default_factory=dict)
    pod_annotations: dict[str, str] = Field(default_factory=dict)
    # Watch Nodes (needs a ClusterRole: get/list/watch nodes): a failure on a node that lost GPUs
    # while the attempt ran is then infrastructure.
    watch_nodes: bool = False
    # Cordon a node reported sick (hardware or network faults of several experiments); audited. Needs
    # the ClusterRole in deploy/kubernetes/node-health (patch nodes).
    cordon_bad_nodes: bool = False

    def shared_storage(self) -> tuple[str | None, tuple[str, ...]] | None:
        """(storage class, access modes) of a multi-node experiment's claim; None when none is shared."""
        if self.shared_storage_class:
            return self.shared_storage_class, ("ReadWriteMany",)
        if "ReadWriteMany" in self.pvc_access_modes:
            return self.storage_class, self.pvc_access_modes
        return None

    def pool(self, gpu_type: str | None) -> GpuPool:
        """The pool of one GPU type (an empty one when it is not configured)."""
        return self.gpu_pools.get(gpu_type or "", GpuPool())
