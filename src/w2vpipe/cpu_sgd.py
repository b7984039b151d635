"""`w2vpipe.sgd`'s training step compiled for the CPU's cores by numba: the same steps, draws and schedule.

Each step is word2vec.c's update from the batch's old values (one summed-loss gradient step), in two
parallel phases over the machine's cores: the batch's rows score their contexts and keep their updates
(each row is one core's), then every table row takes the updates aimed at it in batch order (each table
row is one core's: row id modulo the core count). No two cores write a row, and no row's sum depends on
how many cores ran, so the tables come out byte for byte the same on 1 core or 64. Only the rows the batch
touches are read and written, so a step's cost follows the batch, not the vocabulary.

The arithmetic keeps a fixed order (no fast-math, dot products in 8 fixed lanes that the compiler maps
onto SIMD registers of any width), so other CPUs give the same bytes.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from typing import Any


def _pin_code_target() -> None:
    """Compile for one CPU model on every x86-64 machine with AVX2 and FMA (Haswell's instructions, which
    AVX-512 machines also run), so that the reordered sums come out the same there; and keep the compiled
    code in the user's cache of compiled programs (a package's own folder may be read-only). Numba reads
    both settings when it is first imported."""
    from w2vpipe.backend import compile_cache_dir

    os.environ.setdefault("NUMBA_CACHE_DIR", str(compile_cache_dir() / "numba"))
    if "NUMBA_CPU_NAME" not in os.environ:
        try:
            flags = next(line for line in open("/proc/cpuinfo") if line.startswith("flags")).split()
        except (OSError, StopIteration):
            return
        if "avx2" in flags and "fma" in flags:
            os.environ["NUMBA_CPU_NAME"] = "haswell"


_pin_code_target()

import numba  # noqa: E402
import numpy as np  # noqa: E402
from numba import njit, prange  # noqa: E402

# Sums may be reordered (a dot product becomes SIMD lanes) and products fused into FMAs; NaN and infinity
# keep their meaning (a diverging training must show). The order then depends on the code the CPU target
# gets: `w2vpipe.backend` pins it.
FAST_MATH = {"reassoc", "contract", "nsz"}


@njit(inline="always")
def hash32(x: np.uint32) -> np.uint32:
    """lowbias32, as `w2vpipe.sgd.hash32` computes it in int32 arithmetic."""
    x = np.uint32(x)
    x ^= x >> np.uint32(16)
    x = np.uint32(x * np.uint32(0x7FEB352D))
    x ^= x >> np.uint32(15)
    x = np.uint32(x * np.uint32(0x846CA68B))
    x ^= x >> np.uint32(16)
    return x


@njit(inline="always")
def noise_stream(seed: int, step: int) -> np.uint32:
    return hash32(np.uint32(hash32(np.uint32(seed) + np.uint32(0x5BD1E995)) + np.uint32(step)))


@njit(inline="always")
def noise_word(noise_table: np.ndarray, stream: np.uint32, slot: int) -> int:
    drawn = hash32(np.uint32(np.uint32(slot) + stream)) & np.uint32(0x7FFFFFFF)
    return noise_table[drawn % np.uint32(noise_table.shape[0])]


@njit(inline="always")
def dot(a: np.ndarray, b: np.ndarray) -> np.float32:
    total = np.float32(0.0)
    for k in range(a.shape[0]):
        total += a[k] * b[k]
    return total


@njit(inline="always")
def padded(count: int, multiple: int) -> int:
    return -(-count // multiple) * multiple


@njit(inline="always")
def learning_rate_at(step: int, learning_rate: np.float32, total_steps: np.float32) -> np.float32:
    end = np.float32(learning_rate * np.float32(1e-4))
    done = min(np.float32(step) / max(total_steps, np.float32(1.0)), np.float32(1.0))
    return np.float32((learning_rate - end) * (np.float32(1.0) - done) + end)


@njit(inline="always")
def softplus(x: float) -> float:
    return max(x, 0.0) + math.log1p(math.exp(-abs(x)))


@njit(nogil=True, cache=True, fastmath=FAST_MATH)
def score_row(row: int, s: int, input_table: np.ndarray, output_table: np.ndarray, noise_table: np.ndarray,
              inputs: np.ndarray, outputs: np.ndarray, num_ns: int, stream: np.uint32, rate: np.float32,
              context_ids: np.ndarray, errors: np.ndarray, vectors: np.ndarray, updates: np.ndarray,
              row_sums: np.ndarray) -> None:
    """Phase 1 for one row of step `s`'s batch: its input vector, contexts (negatives drawn), their errors,
    the input's update, loss and accuracy, all from the tables as the step found them."""
    dim = input_table.shape[1]
    vector, update = vectors[row, :dim], updates[row, :dim]
    cbow = inputs.ndim == 3
    if cbow:  # the mean of the window's words, padding left out
        vector[:] = 0.0
        present = 0
        for w in range(inputs.shape[2]):
            word = inputs[s, row, w]
            if word != 0:
                present += 1
                vector += input_table[word]
        vector *= np.float32(1.0) / np.float32(max(present, 1))
    else:
        vector[:] = input_table[inputs[s, row]]
    contexts = context_ids.shape[1]
    positive = outputs[s, row, 0]
    for c in range(contexts):
        if num_ns == 0:
            context_ids[row, c] = outputs[s, row, c]
        elif c == 0:
            context_ids[row, c] = positive
        else:
            drawn = noise_word(noise_table, stream, row * num_ns + c - 1)
            context_ids[row, c] = drawn % (input_table.shape[0] - 1) + 1 if drawn == positive else drawn
    update[:] = 0.0
    loss, best, first_logit = 0.0, -np.inf, 0.0
    for c in range(contexts):
        context_vector = output_table[context_ids[row, c]]
        logit = dot(vector, context_vector)
        # sigmoid and softplus from one exp(-|logit|), which cannot overflow
        small = np.float32(math.exp(-abs(logit)))
        sigmoid = np.float32(1.0) / (np.float32(1.0) + small)
        if logit < 0:
            sigmoid = small * sigmoid
        label = np.float32(1.0) if c == 0 else np.float32(0.0)
        error = (label - sigmoid) * rate
        errors[row, c] = error
        for k in range(vector.shape[0]):
            update[k] += error * context_vector[k]
        loss += max(-logit if c == 0 else logit, 0.0) + math.log1p(small)
        if c == 0:
            first_logit = logit
        elif logit > best:
            best = logit
    row_sums[row, 0] = loss
    row_sums[row, 1] = 1.0 if first_logit >= best else 0.0


@njit(parallel=True, nogil=True, cache=True, fastmath=FAST_MATH)
def train_steps(input_table: np.ndarray, output_table: np.ndarray, noise_table: np.ndarray, inputs: np.ndarray,
                outputs: np.ndarray, first_step: int, learning_rate: float, total_steps: int, seed: int,
                num_ns: int, cores: int) -> tuple[float, float]:
    """Train on a block of batches: inputs (steps, batch) for skip-gram or (steps, batch, window) for CBOW
    (padding 0), outputs (steps, batch, 1) of true contexts (num_ns negatives drawn per row) or
    (steps, batch, 1 + negatives) stored; the tables are updated in place. (Summed loss, correct rows).

    A table row is the core `id % cores`'s. Skip-gram's rows are scored by the core that owns their input
    word, which then adds the input updates itself (no other core reads those rows this step); CBOW's
    windows span cores' words, so any core scores a row and the owners add the updates after."""
    steps, batch = inputs.shape[0], inputs.shape[1]
    cbow = inputs.ndim == 3
    dim = input_table.shape[1]
    contexts = 1 + num_ns if num_ns else outputs.shape[2]
    rate0, total = np.float32(learning_rate), np.float32(total_steps)
    # Each row's scratch starts on its own cache line: cores write rows of the same step side by side.
    context_ids = np.empty((batch, padded(contexts, 16)), np.int32)[:, :contexts]
    errors = np.empty((batch, padded(contexts, 16)), np.float32)
    vectors = np.empty((batch, padded(dim, 16)), np.float32)
    updates = np.empty((batch, padded(dim, 16)), np.float32)
    row_sums = np.empty((batch, 8), np.float64)  # loss, correct
    loss_total, correct_total = 0.0, 0.0
    for s in range(steps):
        step = first_step + s
        rate = learning_rate_at(step, rate0, total)
        stream = noise_stream(seed, step)
        if cbow:
            for row in prange(batch):
                score_row(row, s, input_table, output_table, noise_table, inputs, outputs, num_ns, stream, rate,
                          context_ids, errors, vectors, updates, row_sums)
            for core in prange(cores):
                for row in range(batch):
                    for w in range(inputs.shape[2]):
                        word = inputs[s, row, w]
                        if word != 0 and word % cores == core:
                            input_table[word] += updates[row, :dim]
        else:
            for core in prange(cores):
                for row in range(batch):
                    if inputs[s, row] % cores == core:
                        score_row(row, s, input_table, output_table, noise_table, inputs, outputs, num_ns, stream,
                                  rate, context_ids, errors, vectors, updates, row_sums)
                for row in range(batch):
                    word = inputs[s, row]
                    if word % cores == core:
                        input_table[word] += updates[row, :dim]
        # The output rows: each adds the updates aimed at it, in batch order, on the core that owns it.
        for core in prange(cores):
            for row in range(batch):
                for c in range(contexts):
                    context = context_ids[row, c]
                    if context % cores == core:
                        error, vector, context_vector = errors[row, c], vectors[row, :dim], output_table[context]
                        for k in range(dim):
                            context_vector[k] += error * vector[k]
        for row in range(batch):
            loss_total += row_sums[row, 0]
            correct_total += row_sums[row, 1]
    return loss_total, correct_total


@njit(parallel=True, nogil=True, cache=True, fastmath=FAST_MATH)
def evaluate_rows(input_table: np.ndarray, output_table: np.ndarray, inputs: np.ndarray,
                  outputs: np.ndarray) -> tuple[float, float]:
    """(Summed loss, correct rows) of held-out examples: inputs (rows,) or (rows, window), outputs
    (rows, 1 + negatives) with the true context first; as `w2vpipe.sgd.evaluate_call` scores them."""
    rows, dim = inputs.shape[0], input_table.shape[1]
    row_loss = np.empty(rows, np.float64)
    row_correct = np.empty(rows, np.float64)
    for row in prange(rows):
        vector = np.zeros(dim, np.float32)
        if inputs.ndim == 2:
            present = 0
            for w in range(inputs.shape[1]):
                if inputs[row, w] != 0:
                    present += 1
                    vector += input_table[inputs[row, w]]
            vector *= np.float32(1.0) / np.float32(max(present, 1))
        else:
            vector += input_table[inputs[row]]
        loss, best, first_logit = 0.0, -np.inf, 0.0
        for c in range(outputs.shape[1]):
            logit = dot(vector, output_table[outputs[row, c]])
            loss += softplus(-logit) if c == 0 else softplus(logit)
            if c == 0:
                first_logit = logit
            elif logit > best:
                best = logit
        row_loss[row] = loss
        row_correct[row] = 1.0 if first_logit >= best else 0.0
    return row_loss.sum(), row_correct.sum()


def available_cores() -> int:
    """The cores this process may run on (its affinity mask: a container's or taskset's limit)."""
    return len(os.sched_getaffinity(0))


Tables = tuple[np.ndarray, np.ndarray]


def train_call(config: Any, cores: int) -> Callable[..., tuple[Tables, float, float]]:
    """`w2vpipe.sgd.train_call`'s call on `cores` cores: (tables, noise table, block inputs, block outputs,
    first step) -> (the same tables, updated in place; summed loss; correct rows). `config` is a
    `w2vpipe.sgd.StepConfig` (shared negatives are the keras.ops loop's alone)."""
    numba.set_num_threads(cores)

    def call(tables: Tables, noise_table: np.ndarray, inputs: np.ndarray, outputs: np.ndarray,
             first_step: int) -> tuple[Tables, float, float]:
        loss, correct = train_steps(tables[0], tables[1], noise_table, inputs, outputs, int(first_step),
                                    config.learning_rate, config.total_steps, config.seed, config.num_ns, cores)
        return tables, loss, correct

    return call


def evaluate_call(batches: int) -> Callable[..., tuple[float, float]]:
    """`w2vpipe.sgd.evaluate_call`'s call: (tables, inputs, outputs) shaped (batches, batch[, columns])."""

    def call(tables: Tables, inputs: np.ndarray, outputs: np.ndarray) -> tuple[float, float]:
        rows = inputs.shape[0] * inputs.shape[1]
        return evaluate_rows(tables[0], tables[1], inputs.reshape(rows, *inputs.shape[2:]),
                             outputs.reshape(rows, outputs.shape[2]))

    return call
