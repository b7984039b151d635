"""Data-parallel training over several devices and processes, on one host or many: JAX's multi-process
runtime, and one process's several GPUs.

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

    devices = 1

    def replicated(self, array: np.ndarray) -> Any:
        from keras import ops

        return ops.convert_to_tensor(array)

    batches = replicated  # (..., batch, ...) blocks: whole, here

    def to_host(self, tensor: Any) -> np.ndarray:
        from keras import ops

        return ops.convert_to_numpy(tensor)

    def compile(self, function: Callable[..., Any], donate_first: bool) -> Callable[..., Any]:
        from w2vpipe.sgd import compile_for_backend

        return compile_for_backend(function, donate_first)


class DataParallel(Placement):
    """All the devices JAX sees, a group's or one process's: blocks split along their batch axis,
    everything else replicated."""

    def __init__(self) -> None:
        import jax
        from jax.sharding import AxisType, NamedSharding
        from jax.sharding import PartitionSpec as P

        self.jax = jax
        self.devices = jax.device_count()
        # Auto axes: XLA places the collectives (jax 0.10's make_mesh defaults to Explicit ones).
        mesh = jax.make_mesh((self.devices,), ("batch",), axis_types=(AxisType.Auto,))
        self.replicated_sharding = NamedSharding(mesh, P())
        self.batch_sharding = NamedSharding(mesh, P(None, None, "batch"))  # (blocks, steps, batch[, columns])

    def _global(self, array: np.ndarray, sharding: Any) -> Any:
        # Every process holds the whole array on the host: each device takes its part.
        return self.jax.make_array_from_callback(array.shape, sharding, lambda index: array[index])

    def replicated(self, array: np.ndarray) -> Any:
        return self._global(np.asarray(array), self.replicated_sharding)

    def batches(self, array: np.ndarray) -> Any:
        """Blocks shaped (blocks, steps, batch[, columns])."""
        return self._global(array, self.batch_sharding)

    def to_host(self, tensor: Any) -> np.ndarray:
        return np.asarray(tensor.addressable_data(0))  # replicated: this process's copy

    def compile(self, function: Callable[..., Any], donate_first: bool) -> Callable[..., Any]:
        return self.jax.jit(function, donate_argnums=(0,) if donate_first else (),
                            out_shardings=self.replicated_sharding)


def placement(group: ProcessGroup | None, backend: str) -> Placement:
    """Where training puts its tensors: over all the devices JAX sees, a group's once it has joined
    (`join`), or one process's several GPUs; otherwise on the one device."""
    if group is not None:
        return DataParallel()
    if backend == "jax":
        import jax

        if jax.device_count() > 1:
            return DataParallel()
    return Placement()
