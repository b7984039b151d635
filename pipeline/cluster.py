"""The Dask cluster the vectorize and examples stages run their shards on.

By default a stage starts a local cluster of `cluster.workers` processes (one thread each: the work
is Python and numpy, so processes, not threads, run it in parallel) and stops it at the end. With a
scheduler address (`cluster.scheduler`, or W2V_DASK_SCHEDULER, which the Prefect flow sets for the
stages of its run), the stage connects to that cluster instead; its workers import this project
and read and write the stage's files at the same absolute paths (a shared filesystem).

Every shard is a pure function of its inputs and is written by the task that makes it, and every
total is a sum of integers: the outputs are the same bit for bit on any cluster.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar

from distributed import Client, Future, LocalCluster, as_completed

from w2vpipe.errors import PipelineError
from w2vpipe.params import ClusterParams

SCHEDULER_ENV = "W2V_DASK_SCHEDULER"
CONNECT_TIMEOUT_S = 5  # Dask retries a refused connection until then
Result = TypeVar("Result")


def scheduler_address(params: ClusterParams) -> str | None:
    """The scheduler to connect to, if any: the environment's (a flow run's cluster) before params.yaml's."""
    return os.environ.get(SCHEDULER_ENV) or params.scheduler


def local_cluster_options(params: ClusterParams) -> dict[str, Any]:
    """`LocalCluster`'s arguments: `cluster.workers` processes of one thread; the scheduler's HTTP server
    on a free port (its default, 8787, is where two clusters would collide: a flow's and a test's); Dask's
    own log lines silenced, since a task's error and a lost worker come back to the client as exceptions."""
    return {"n_workers": params.workers or os.cpu_count() or 1, "threads_per_worker": 1, "processes": True,
            "dashboard_address": ":0", "silence_logs": logging.CRITICAL}


@contextmanager
def dask_client(params: ClusterParams) -> Iterator[Client]:
    """A client of the scheduler named by `params` (or the environment), or of a local cluster started here."""
    address = scheduler_address(params)
    if address:
        try:
            client = Client(address, timeout=CONNECT_TIMEOUT_S)
        except (OSError, TimeoutError):
            raise PipelineError(f"no Dask scheduler answers at {address} within {CONNECT_TIMEOUT_S} s: start it, or "
                                f"fix cluster.scheduler (or unset {SCHEDULER_ENV}) to use a local cluster") from None
        with client:
            yield client
        return
    with LocalCluster(**local_cluster_options(params)) as cluster, Client(cluster) as client:
        yield client


def describe(client: Client) -> str:
    """'2 workers' or '4 workers at tcp://...': for the stage's summary line."""
    workers = len(client.nthreads())
    where = "" if isinstance(client.cluster, LocalCluster) else f" at {client.scheduler.address}"
    return f"{workers} worker{'s' if workers != 1 else ''}{where}"


def share(client: Client, value: Any) -> Future:
    """`value` sent once to every worker, for tasks to take as an argument (a dict is sent whole: scattering
    one directly would send each of its items apart)."""
    return client.scatter([value], broadcast=True)[0]


def run_tasks(client: Client, function: Callable[..., Result], items: Sequence[Any], on_done: Callable[[int, Result],
              None] = lambda index, result: None, **shared: Any) -> list[Result]:
    """`function(item, **shared)` for every item on the cluster; `on_done(i, result)` as each finishes
    (any order), the results in the items' order. A task's exception is raised here (a PipelineError
    keeps its one line). `pure=False`: runs of a shared cluster never reuse each other's results."""
    futures = [client.submit(function, item, pure=False, **shared) for item in items]
    position = {future.key: index for index, future in enumerate(futures)}
    results: list[Any] = [None] * len(items)
    try:
        for future, result in as_completed(futures, with_results=True):
            index = position[future.key]
            results[index] = result
            on_done(index, result)
    finally:
        client.cancel(futures)  # after a failure, no task keeps writing into a folder about to be removed
    return results
