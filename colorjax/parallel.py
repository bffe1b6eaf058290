"""Device mesh, shardings, multi-host start-up and global batch assembly (one code path for all)."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from colorjax.errors import ConfigError, ShardingError

logger = logging.getLogger(__name__)

DATA_AXIS = "data"

# Environment variables read when the flags are not given (JAX's own cluster
# auto-detection, e.g. SLURM or TPU pods, still works when none are set).
ENV_COORDINATOR = "COLORJAX_COORDINATOR"
ENV_NUM_PROCESSES = "COLORJAX_NUM_PROCESSES"
ENV_PROCESS_ID = "COLORJAX_PROCESS_ID"


def make_mesh(device_count: int | None = None) -> Mesh:
    """A 1-D mesh with axis 'data' over all devices, or over the first `device_count`."""
    devices = jax.devices()
    if device_count is not None:
        if not 1 <= device_count <= len(devices):
            raise ShardingError(
                f"asked for a mesh of {device_count} devices but {len(devices)} are available; "
                f"pass a device count between 1 and {len(devices)}"
            )
        if jax.process_count() > 1 and device_count != len(devices):
            raise ShardingError(
                "a mesh over a subset of devices is not supported with several processes; "
                "leave device_count unset"
            )
        devices = devices[:device_count]
    return Mesh(np.asarray(devices), (DATA_AXIS,))


def data_sharding(mesh: Mesh) -> NamedSharding:
    """Sharding that splits the leading (batch) axis over the mesh's data axis."""
    return NamedSharding(mesh, PartitionSpec(DATA_AXIS))


def replicated(mesh: Mesh) -> NamedSharding:
    """Sharding that keeps a full copy on every device (parameters, optimizer state)."""
    return NamedSharding(mesh, PartitionSpec())


def use_cpu_devices(count: int | str) -> int:
    """Split JAX's CPU backend into `count` devices ('auto': one per CPU this process may use).

    Must run before any JAX backend starts; returns the count. With a mesh over these devices
    the batch is split over the cores (data parallelism within one process), and each
    device's convolutions run on one thread (`--xla_cpu_multi_thread_eigen=false`, added to
    XLA_FLAGS: the devices already fill the cores, and threaded convs on top oversubscribe
    them). Why: XLA:CPU's own intra-op threading keeps ~1.5 of 2 cores busy on these nets (its
    conv library runs the large-image convolutions on one thread); one device per core keeps
    both busy. Measured in docs/TUNING.md.
    """
    if count == "auto":
        count = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    if not isinstance(count, int) or count < 1:
        raise ConfigError(f"CPU device count must be a positive integer or 'auto', got {count!r}")
    if "xla_force_host_platform_device_count" in os.environ.get("XLA_FLAGS", ""):
        raise ConfigError(
            "XLA_FLAGS already sets --xla_force_host_platform_device_count; drop it or drop "
            "--cpu-devices (they would disagree)"
        )
    try:
        jax.config.update("jax_num_cpu_devices", int(count))
    except RuntimeError as err:
        raise ConfigError(
            f"cannot split the CPU into {count} devices: a JAX backend is already running "
            f"({err}); set it before anything touches JAX (e.g. first thing in the script)"
        ) from err
    if count > 1:
        # Read when the backend starts (after this), like the device count.
        flags = os.environ.get("XLA_FLAGS", "")
        os.environ["XLA_FLAGS"] = f"{flags} --xla_cpu_multi_thread_eigen=false".strip()
    return int(count)


def sum_over_samples(
    per_sample: Callable[..., jax.Array], *batched: jax.Array, mesh: Mesh | None = None
) -> jax.Array:
    """The sum over the leading (batch) axis of per_sample(*one_sample), one sample at a time.

    A `lax.scan` over the samples. With a `mesh` whose 'data' axis has more than one device
    (the mesh the training step shards the batch over), each device scans its own shard of
    the batch in a `shard_map` and the partial sums are added with one psum; with None or a
    one-device data axis, one scan. Why: XLA's SPMD partitioner cannot split a scan over the
    batch; it all-gathers the activations to every device and runs the whole loop on each
    (the CPU kernel-gradient forms are such loops).
    """

    def scan_sum(*arrays: jax.Array) -> jax.Array:
        out = jax.eval_shape(per_sample, *(a[0] for a in arrays))

        def body(acc: jax.Array, sample: tuple[jax.Array, ...]) -> tuple[jax.Array, None]:
            return acc + per_sample(*sample), None

        return jax.lax.scan(body, jnp.zeros(out.shape, out.dtype), arrays)[0]

    if mesh is None or dict(mesh.shape).get(DATA_AXIS, 1) == 1:
        return scan_sum(*batched)
    spec = PartitionSpec(DATA_AXIS)
    # check_vma=False: the scan's carry starts replicated and becomes a per-device value.
    per_device = jax.shard_map(
        lambda *shards: jax.lax.psum(scan_sum(*shards), DATA_AXIS),
        mesh=mesh,
        in_specs=(spec,) * len(batched),
        out_specs=PartitionSpec(),
        check_vma=False,
    )
    return per_device(*batched)


def local_device_count(mesh: Mesh) -> int:
    """Number of the mesh's devices that belong to this process."""
    return sum(1 for d in mesh.devices.flat if d.process_index == jax.process_index())


def check_batch_divisible(global_batch: int, mesh: Mesh, field: str = "train.batch_size") -> int:
    """Return the per-process batch; ShardingError (before any compile) if it does not divide.

    `field` is the config key the batch size came from, named in the message as the fix.
    """
    n_devices = mesh.devices.size
    n_procs = jax.process_count()
    if global_batch % n_devices:
        lower = max(n_devices, global_batch // n_devices * n_devices)
        raise ShardingError(
            f"global batch size {global_batch} ({field}) is not divisible by the {n_devices} "
            f"devices of the mesh; set {field} to a multiple of {n_devices} (e.g. --set "
            f"{field}={lower}) or use fewer devices"
        )
    if global_batch % n_procs:
        raise ShardingError(
            f"global batch size {global_batch} ({field}) is not divisible by the {n_procs} "
            f"processes; set {field} to a multiple of {n_procs}"
        )
    per_process = global_batch // n_procs
    n_local = local_device_count(mesh)
    if n_local == 0 or per_process % n_local:
        raise ShardingError(
            f"per-process batch size {per_process} (global {global_batch} / {n_procs} processes) "
            f"is not divisible by this process's {n_local} devices; set {field} to a "
            f"multiple of {n_devices}"
        )
    return per_process


def global_batch_from_local(local_batch: Any, mesh: Mesh) -> Any:
    """Assemble the global, data-sharded jax.Array(s) from this process's slice of the batch."""
    sharding = data_sharding(mesh)
    n_procs = jax.process_count()

    def one(x: Any) -> jax.Array:
        x = np.asarray(x)
        global_shape = (x.shape[0] * n_procs, *x.shape[1:])
        return jax.make_array_from_process_local_data(sharding, x, global_shape)

    return jax.tree_util.tree_map(one, local_batch)


def is_main_process() -> bool:
    """True on process 0, the only one that logs progress and writes metrics."""
    return jax.process_index() == 0


# Variables that give the size of a launch under the usual launchers; one saying > 1 process
# where JAX can form no cluster means a job that would train N times alone: refused.
LAUNCH_SIZE_VARS = ("SLURM_NTASKS", "OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "WORLD_SIZE")


def detected_cluster() -> tuple[str, int | None] | None:
    """(name, process count) of the cluster JAX's own detection finds here, or None.

    The environments are JAX's (`jax._src.clusters`: SLURM, Open MPI, Cloud TPU pods on GCE
    and GKE, Kubernetes); `jax.distributed.initialize()` without arguments joins them. The
    module is private, so a JAX without it means no detection, never a crash.
    """
    try:
        from jax._src import clusters
    except ImportError:  # pragma: no cover - a future JAX moved it
        return None
    for env in getattr(clusters.ClusterEnv, "_cluster_types", []):
        if getattr(env, "opt_in_only_method", False) or not env.is_env_present():
            continue
        try:
            count = int(env.get_process_count())
        except Exception:  # noqa: BLE001 - TPU metadata and the like may not answer
            count = None
        return str(env.name), count
    return None


def _join_detected_cluster() -> bool:
    """Join the cluster this process was launched in (no flags given); True when multi-process.

    Without a cluster: single process, unless a launcher variable says there are several
    (then ConfigError: N copies training alone would overwrite each other's work).
    """
    found = detected_cluster()
    if os.environ.get("JAX_COORDINATOR_ADDRESS") and found is None:
        found = ("JAX_COORDINATOR_ADDRESS", None)
    if found is None:
        sizes = {v: os.environ[v] for v in LAUNCH_SIZE_VARS if os.environ.get(v, "1") != "1"}
        if sizes:
            var, value = next(iter(sizes.items()))
            raise ConfigError(
                f"{var}={value} says this is one of {value} processes, but JAX cannot form a "
                "cluster from this environment (for SLURM it needs SLURM_JOB_ID, "
                "SLURM_STEP_NODELIST, SLURM_NTASKS, SLURM_PROCID and SLURM_LOCALID; for Open MPI "
                "OMPI_MCA_orte_hnp_uri). Launch with srun or mpirun, or pass --coordinator "
                "HOST:PORT --num-processes N --process-id I"
            )
        return False
    name, count = found
    if count == 1:
        return False  # e.g. an interactive one-task SLURM allocation
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    try:
        jax.distributed.initialize()
    except Exception as err:  # noqa: BLE001 - JAX raises several types; all mean "cannot join"
        raise ConfigError(
            f"this process runs in a {name} cluster"
            + (f" of {count} processes" if count else "")
            + f", but it could not join it ({type(err).__name__}: {err}). Check that every "
            "process was started and the coordinator's port is free (JAX_COORDINATOR_PORT "
            "picks another), or pass --coordinator HOST:PORT --num-processes N --process-id I"
        ) from err
    logger.info(
        "process %d/%d joined the %s cluster; %d local, %d global devices",
        jax.process_index(),
        jax.process_count(),
        name,
        jax.local_device_count(),
        jax.device_count(),
    )
    return jax.process_count() > 1


def maybe_initialize_distributed(
    coordinator: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
    *,
    local_device_ids: list[int] | None = None,
) -> bool:
    """Call jax.distributed.initialize from flags or COLORJAX_* env; True when multi-process.

    Must run before anything touches a JAX backend. With no flag and no COLORJAX_* variable it
    joins the cluster JAX's own detection finds (SLURM, Open MPI, TPU pods, Kubernetes; see
    `detected_cluster`), and is a single process only where there is none.
    """
    coordinator = coordinator or os.environ.get(ENV_COORDINATOR)
    if num_processes is None and os.environ.get(ENV_NUM_PROCESSES):
        num_processes = _env_int(ENV_NUM_PROCESSES)
    if process_id is None and os.environ.get(ENV_PROCESS_ID):
        process_id = _env_int(ENV_PROCESS_ID)
    if coordinator is None and num_processes is None and process_id is None:
        return _join_detected_cluster()
    if coordinator is None or num_processes is None or process_id is None:
        raise ConfigError(
            "multi-process training needs all of --coordinator HOST:PORT, --num-processes N and "
            f"--process-id I (or {ENV_COORDINATOR}, {ENV_NUM_PROCESSES}, {ENV_PROCESS_ID}); got "
            f"coordinator={coordinator!r}, num_processes={num_processes!r}, "
            f"process_id={process_id!r}"
        )
    if not 0 <= process_id < num_processes:
        raise ConfigError(f"process id {process_id} is not in [0, {num_processes})")
    # CPU devices have no cross-process collectives unless one is chosen; the setting only
    # affects the CPU client, so it is harmless on GPU/TPU hosts.
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(
        coordinator_address=coordinator,
        num_processes=num_processes,
        process_id=process_id,
        local_device_ids=local_device_ids,
    )
    logger.info(
        "process %d/%d joined %s; %d local, %d global devices",
        jax.process_index(),
        jax.process_count(),
        coordinator,
        jax.local_device_count(),
        jax.device_count(),
    )
    return num_processes > 1


def _env_int(name: str) -> int:
    try:
        return int(os.environ[name])
    except ValueError:
        raise ConfigError(
            f"environment variable {name}={os.environ[name]!r} is not an integer"
        ) from None
