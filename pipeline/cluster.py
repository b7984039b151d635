"""The Dask cluster the vectorize and examples stages run their shards on.

By default a stage starts a local cluster of `cluster.workers` processes (one thread each: the work
is Python and numpy, so processes, not threads, run it in parallel) when it has more than one shard
to do at once, and stops it at the end; one shard runs in the stage's process. With a
scheduler address in W2V_DASK_SCHEDULER (the operator's, or the one the Prefect flow sets for the
stages of its run), the stage connects to that cluster instead; its workers import this project
and read and write the stage's files at the same absolute paths (a shared filesystem). No param names
a scheduler: a Dask client unpickles its scheduler's replies, so only whoever sets the environment
chooses it, never whoever may start a run.

Every shard is a pure function of its inputs and is written by the task that makes it, and every
total is a sum of integers: the outputs are the same bit for bit on any cluster.
"""

from __future__ import annotations

import itertools
import logging
import os
import time
from collections.abc import Callable, Collection, Iterable, Iterator
from contextlib import ExitStack, contextmanager
from typing import Any, TypeVar

import numpy as np
from distributed import Client, Future, LocalCluster, as_completed

from w2vpipe.errors import PipelineError
from w2vpipe.params import ClusterParams

SCHEDULER_ENV = "W2V_DASK_SCHEDULER"
CONNECT_TIMEOUT_S = 5  # Dask retries a refused connection until then
Result = TypeVar("Result")


def scheduler_address() -> str | None:
    """The scheduler to connect to, if any: W2V_DASK_SCHEDULER's (the operator's, or a flow run's cluster)."""
    return os.environ.get(SCHEDULER_ENV) or None


def local_cluster_options(params: ClusterParams) -> dict[str, Any]:
    """`LocalCluster`'s arguments: `cluster.workers` processes of one thread; the scheduler's HTTP server
    on a free port (its default, 8787, is where two clusters would collide: a flow's and a test's); Dask's
    own log lines silenced, since a task's error and a lost worker come back to the client as exceptions."""
    return {"n_workers": params.workers or os.cpu_count() or 1, "threads_per_worker": 1, "processes": True,
            "dashboard_address": ":0", "silence_logs": logging.CRITICAL}


class Shards:
    """Runs a stage's shard tasks: on the named scheduler's cluster, or on a local cluster started at the
    first batch of more than one task (a single task, Shakespeare's case, runs in this process: a local
    cluster's start and stop, ~1.5 s, would cost more than the task)."""

    def __init__(self, params: ClusterParams, stack: ExitStack) -> None:
        self.params, self.stack = params, stack
        self.client: Client | None = None
        self.shared: dict[int, Future] = {}
        self.startup_seconds = 0.0  # starting the local cluster, if one was: not the stage's work
        address = scheduler_address()
        if address:
            try:
                self.client = stack.enter_context(Client(address, timeout=CONNECT_TIMEOUT_S))
            except (OSError, TimeoutError):
                raise PipelineError(f"no Dask scheduler answers at {address} within {CONNECT_TIMEOUT_S} s: start it, "
                                    f"or fix {SCHEDULER_ENV} (or unset it to use a local cluster)") from None

    def _cluster(self) -> Client:
        if self.client is None:
            started = time.perf_counter()
            cluster = self.stack.enter_context(LocalCluster(**local_cluster_options(self.params)))
            self.client = self.stack.enter_context(Client(cluster))
            self.startup_seconds = time.perf_counter() - started
        return self.client

    def describe(self) -> str:
        """'2 workers', '4 workers at tcp://...' or 'in this process': for the stage's summary line."""
        if self.client is None:
            return "in this process (one shard)"
        workers = len(self.client.nthreads())
        where = "" if isinstance(self.client.cluster, LocalCluster) else f" at {self.client.scheduler.address}"
        return f"{workers} worker{'s' if workers != 1 else ''}{where}"

    def run(self, function: Callable[..., Result], items: Collection[Any],
            on_done: Callable[[int, Result], None] = lambda index, result: None, *, large_items: bool = False,
            keep_results: bool = True, **arguments: Any) -> list[Result]:
        """`function(item, **arguments)` for every item; `on_done(i, result)` as each finishes (any order), the
        results in the items' order (none without `keep_results`: large results that `on_done` folds).
        Large arguments that every task takes (a dict, an array) are sent once to each worker; `large_items`
        (a shard's text) are sent straight to a worker. A task's exception is raised here (a PipelineError
        keeps its one line)."""
        if self.client is None and len(items) <= 1:
            results = []
            for index, item in enumerate(items):
                result = function(item, **arguments)
                on_done(index, result)
                results += [result] if keep_results else []
            return results
        client = self._cluster()
        return run_tasks(client, function, items, on_done, large_items=large_items, keep_results=keep_results, **{
            name: self._share(client, value) if isinstance(value, dict | np.ndarray) else value
            for name, value in arguments.items()})

    def _share(self, client: Client, value: Any) -> Future:
        # A dict is sent whole: scattering one directly would send each of its items apart.
        if id(value) not in self.shared:
            self.shared[id(value)] = client.scatter([value], broadcast=True)[0]
        return self.shared[id(value)]


@contextmanager
def shard_runner(params: ClusterParams) -> Iterator[Shards]:
    """A `Shards` for the stage, its cluster (if one was started) stopped at the end."""
    with ExitStack() as stack:
        yield Shards(params, stack)


def run_tasks(client: Client, function: Callable[..., Result], items: Iterable[Any], on_done: Callable[[int, Result],
              None] = lambda index, result: None, *, large_items: bool = False, keep_results: bool = True,
              **shared: Any) -> list[Result]:
    """`function(item, **shared)` for every item on the cluster; `on_done(i, result)` as each finishes
    (any order), the results in the items' order (none without `keep_results`). Items are taken from
    `items` as tasks finish, two per worker thread at a time: a stream of large items (scattered to a
    worker, not sent through the scheduler's task graph) is held in memory a few at a time. A task's
    exception is raised here (a PipelineError keeps its one line). `pure=False`: runs of a shared
    cluster never reuse each other's results."""
    pending: dict[str, tuple[int, list[Future]]] = {}  # future key: (item's index, futures to release with it)
    results: dict[int, Any] = {}
    running = as_completed(with_results=True)
    numbered = enumerate(items)

    def submit_next() -> None:
        for index, item in itertools.islice(numbered, 1):
            held = client.scatter([item], hash=False) if large_items else []
            future = client.submit(function, held[0] if held else item, pure=False, **shared)
            pending[future.key] = (index, [future, *held])
            running.add(future)

    for _ in range(2 * max(sum(client.nthreads().values()), 1)):
        submit_next()
    try:
        for future, result in running:
            index, _ = pending.pop(future.key)
            on_done(index, result)
            if keep_results:
                results[index] = result
            submit_next()
    finally:
        # After a failure, no task keeps writing into a folder about to be removed.
        client.cancel([future for _, futures in pending.values() for future in futures])
    return [results[index] for index in range(len(results))]
