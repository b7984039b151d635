"""Where training runs: one process's CPU cores (`HostCores`, the tables in memory, `w2vpipe.cpu_sgd`);
or data-parallel over several devices and processes, on one host or many: JAX's multi-process runtime,
and one process's several GPUs.

Every process of a group runs the same training on the same examples; each compiled step splits the
global batch over the group's devices (each process's devices take their columns of every batch),
the embedding tables are replicated, and XLA sums the row updates across the group, so every process
ends with the same tables: those of one process training on the same global batches. A group is
named by three environment variables, set for each process (`python -m pipeline train` on every host):

    W2V_COORDINATOR=host0:4321  W2V_PROCESS_COUNT=2  W2V_PROCESS_ID=0 (host0), 1 (host1)

Process 0 writes the outputs, checkpoints and MLflow records; the others only train.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from w2vpipe.errors import PipelineError

COORDINATOR_VARIABLE = "W2V_COORDINATOR"
COUNT_VARIABLE = "W2V_PROCESS_COUNT"
ID_VARIABLE = "W2V_PROCESS_ID"


@dataclass(frozen=True)
class ProcessGroup:
    coordinator: str
    count: int
    index: int


def process_group_from_env() -> ProcessGroup | None:
    """The group this process belongs to, from the environment; None when it trains alone."""
    coordinator = os.environ.get(COORDINATOR_VARIABLE)
    if not coordinator:
        return None
    try:
        count, index = int(os.environ.get(COUNT_VARIABLE, "")), int(os.environ.get(ID_VARIABLE, ""))
    except ValueError:
        raise PipelineError(f"{COORDINATOR_VARIABLE} is set, so {COUNT_VARIABLE} (processes in all) and "
                            f"{ID_VARIABLE} (this one's, from 0) must be whole numbers: set both") from None
    if not 0 <= index < count:
        raise PipelineError(f"{ID_VARIABLE}={index} is not below {COUNT_VARIABLE}={count}: number the processes "
                            f"0 to {count - 1}")
    return ProcessGroup(coordinator, count, index)


def join(group: ProcessGroup, backend: str) -> None:
    """Join the group (JAX's coordinator service), before anything touches a device; waits for all."""
    if backend != "jax":
        raise PipelineError(f"training over {group.count} processes runs on JAX's multi-process runtime: set "
                            f"train.backend: jax (and train.optimizer: sgd)")
    import jax

    jax.distributed.initialize(coordinator_address=group.coordinator, num_processes=group.count,
                               process_id=group.index)


class Placement:
    """Where one process's tensors live: all on its own device."""

    devices = 1  # the devices each batch is split over
    cores = 1  # the CPU cores a step runs on (HostCores)

    def replicated(self, array: np.ndarray) -> Any:
        from keras import ops

        return ops.convert_to_tensor(array)

    batches = replicated  # a block of one call's batches, (steps, batch[, columns]): whole, here

    def to_host(self, tensor: Any) -> np.ndarray:
        from keras import ops

        return ops.convert_to_numpy(tensor)

    def compile(self, function: Callable[..., Any], donate_first: bool) -> Callable[..., Any]:
        from w2vpipe.sgd import compile_for_backend

        return compile_for_backend(function, donate_first)

    def train_call(self, config: Any) -> Callable[..., Any]:
        """`w2vpipe.sgd.train_call` compiled here: (tables, noise table, inputs, outputs, first step) ->
        (tables, summed loss, correct rows), the tables donated."""
        from w2vpipe import sgd

        return sgd.train_call(config, lambda function: self.compile(function, True))

    def evaluate_call(self, batches: int) -> Callable[..., Any]:
        from w2vpipe import sgd

        return sgd.evaluate_call(batches, self.compile)


class Meshed(Placement):
    """Tensors over a 1-D mesh of JAX devices: replicated unless a subclass splits them."""

    def __init__(self, devices: list[Any], axis: str) -> None:
        import jax
        from jax.sharding import AxisType, NamedSharding
        from jax.sharding import PartitionSpec as P

        self.jax = jax
        # Auto axes: XLA places the collectives (jax 0.10's make_mesh defaults to Explicit ones).
        self.mesh = jax.make_mesh((len(devices),), (axis,), axis_types=(AxisType.Auto,), devices=devices)
        self.replicated_sharding = NamedSharding(self.mesh, P())

    def _global(self, array: np.ndarray, sharding: Any) -> Any:
        # Every process holds the whole array on the host: each device takes its part.
        return self.jax.make_array_from_callback(array.shape, sharding, lambda index: array[index])

    def replicated(self, array: np.ndarray) -> Any:
        return self._global(np.asarray(array), self.replicated_sharding)

    def to_host(self, tensor: Any) -> np.ndarray:
        return np.asarray(tensor.addressable_data(0))  # replicated: this process's copy

    def compile(self, function: Callable[..., Any], donate_first: bool) -> Callable[..., Any]:
        return self.jax.jit(function, donate_argnums=(0,) if donate_first else (),
                            out_shardings=self.replicated_sharding)


class DataParallel(Meshed):
    """All the devices JAX sees, a group's or one process's: blocks split along their batch axis,
    everything else replicated. The same training as on one device, up to the order of sums."""

    def __init__(self) -> None:
        import jax
        from jax.sharding import NamedSharding
        from jax.sharding import PartitionSpec as P

        super().__init__(jax.devices(), "batch")
        self.devices = jax.device_count()
        self.batch_sharding = NamedSharding(self.mesh, P(None, "batch"))  # (steps, batch[, columns])

    def batches(self, array: np.ndarray) -> Any:
        """A block shaped (steps, batch[, columns]), each batch split over the devices."""
        return self._global(array, self.batch_sharding)


class HostCores(Placement):
    """The tables in this process's memory, trained in place on `cores` CPU cores by `w2vpipe.cpu_sgd`
    (word2vec.c's step, compiled by numba; the tables come out the same whatever the count)."""

    def __init__(self, cores: int) -> None:
        self.cores = cores

    def replicated(self, array: np.ndarray) -> Any:
        # The tables are trained in place: the caller hands them over (a copy only if they are not writable).
        return np.require(array, requirements=("C_CONTIGUOUS", "WRITEABLE"))

    def batches(self, array: np.ndarray) -> Any:
        return np.ascontiguousarray(array)

    def to_host(self, tensor: Any) -> np.ndarray:
        return np.asarray(tensor)

    def train_call(self, config: Any) -> Callable[..., Any]:
        from w2vpipe import cpu_sgd

        return cpu_sgd.train_call(config, self.cores)

    def evaluate_call(self, batches: int) -> Callable[..., Any]:
        from w2vpipe import cpu_sgd

        return cpu_sgd.evaluate_call(batches)


def placement(group: ProcessGroup | None, backend: str, cores: int = 0, shared_negatives: bool = False) -> Placement:
    """Where training puts its tensors: over all the devices JAX sees, a group's once it has joined
    (`join`), or one process's several GPUs; in this process's memory on `cores` CPU cores (0: all it may
    use) where JAX has no accelerator, unless negatives are shared per batch (a matrix product that only
    the keras.ops loop has); otherwise on one device."""
    if group is not None:
        return DataParallel()
    if backend != "jax":
        return Placement()
    if shared_negatives or not jax_has_only_one_cpu():
        import jax

        if jax.device_count() > 1:
            return DataParallel()
        if shared_negatives or jax.default_backend() != "cpu":
            return Placement()
    return HostCores(min(cores, available_cores()) if cores else available_cores())


def available_cores() -> int:
    """The cores this process may run on (its affinity mask: a container's or taskset's limit)."""
    return len(os.sched_getaffinity(0))


def jax_has_only_one_cpu() -> bool:
    """Whether JAX can see nothing but one CPU device, told without importing JAX (a second of a train stage):
    JAX finds accelerators only through plugins (the `jax_plugins` namespace package and entry points, libtpu),
    and more than one CPU device only where XLA_FLAGS forces them."""
    import importlib.metadata
    import importlib.util

    if "xla_force_host_platform_device_count" in os.environ.get("XLA_FLAGS", ""):
        return False
    if os.environ.get("JAX_PLATFORMS", "").strip().lower() == "cpu":
        return True
    return (importlib.util.find_spec("jax_plugins") is None and importlib.util.find_spec("libtpu") is None
            and not importlib.metadata.entry_points(group="jax_plugins"))
