"""`w2vpipe.sgd`'s training step compiled for the CPU's cores by numba: the same steps, draws and schedule.

`train.updates: batch` (`train_steps`): each step is word2vec.c's update from the batch's old values (one
summed-loss gradient step), in two parallel phases over the machine's cores: the batch's rows score their
contexts and keep their updates, then the table rows take the updates aimed at them, a group of rows (row
id modulo PARTS) at a time on one core, each row's in batch order. No two cores write a row at once, and no
sum depends on which core or how many cores ran, so the tables come out byte for byte the same on 1 core or
64. Only the rows the batch touches are read and written, so a step's cost follows the batch, not the
vocabulary.

`train.updates: hogwild` (`train_steps_hogwild`): word2vec.c's and gensim's own loop. Each core takes rows
in turn and moves their vectors at once (each context's output vector as it is scored, the input vector
after its contexts), the tables shared without locks (Hogwild; Recht et al. 2011). Each output row is
visited once per pair instead of twice and no core waits for another between steps, so it runs faster, but
on more than one core the order of the updates, and so the tables, depend on the cores' timing. The same
draws, schedule, loss and accuracy as the batch step.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import w2vpipe.numba_cache  # noqa: F401  (numba's settings, before numba loads)

import numba
import numpy as np
from llvmlite import ir
from numba import njit, prange, types
from numba.core import cgutils
from numba.extending import intrinsic

# Sums may be reordered (a dot product becomes SIMD lanes) and products fused into FMAs; NaN and infinity
# keep their meaning (a diverging training must show). The order then depends on the code the CPU target
# gets: `w2vpipe.numba_cache.pin_code_target` pins it.
FAST_MATH = {"reassoc", "contract", "nsz"}
# Groups of table rows (row id modulo PARTS) that cores take one at a time when they add a step's updates:
# a fixed count, so that no sum depends on the cores, and many more groups than cores, so that a stalled
# core holds up little.
PARTS = 64
ROWS_PER_CHUNK = 16  # batch rows a core takes at a time when it scores them
# How many entries ahead a core asks for the table row it will visit: a table of a million words lives in
# memory, not cache, and a row read waits ~100 ns without it (a random-row sum ran 1.7x faster with it).
PREFETCH_AHEAD = 4
ROWS_PER_TASK = 128  # rows a core takes at a time under hogwild updates: a few tens of microseconds of work


@intrinsic
def prefetch_line(typing_context: Any, table: Any, row: Any, column: Any) -> Any:
    """LLVM's prefetch of the cache line holding table[row, column] (read, keep in all cache levels): a hint
    that changes no result."""

    def codegen(context: Any, builder: Any, signature: Any, arguments: Any) -> Any:
        table_type = signature.args[0]
        array = context.make_array(table_type)(context, builder, arguments[0])
        indices = [context.cast(builder, value, kind, types.intp)
                   for value, kind in zip(arguments[1:], signature.args[1:], strict=True)]
        address = cgutils.get_item_pointer(context, builder, table_type, array, indices, wraparound=False)
        byte_pointer, int32 = ir.IntType(8).as_pointer(), ir.IntType(32)
        prefetch = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(ir.VoidType(), [byte_pointer, int32, int32, int32]), "llvm.prefetch.p0")
        builder.call(prefetch, [builder.bitcast(address, byte_pointer), int32(0), int32(3), int32(1)])
        return context.get_dummy_value()

    return types.void(table, row, column), codegen


@njit(inline="always")
def prefetch_row(table: np.ndarray, row: int) -> None:
    for column in range(0, table.shape[1], 16):  # 16 float32: one 64-byte cache line
        prefetch_line(table, row, column)


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
def prefetch_batch_row(input_table: np.ndarray, output_table: np.ndarray, noise_table: np.ndarray,
                       inputs: np.ndarray, outputs: np.ndarray, s: int, row: int, num_ns: int,
                       stream: np.uint32) -> None:
    """Asks for the table rows that row `row` of step `s` will read: skip-gram's input word, the true
    context and the negatives, drawn by the same hashes as `score_row` draws them."""
    if inputs.ndim == 2:
        prefetch_row(input_table, inputs[s, row])
    prefetch_row(output_table, outputs[s, row, 0])
    for c in range(num_ns):
        prefetch_row(output_table, noise_word(noise_table, stream, row * num_ns + c))


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


@njit(nogil=True, cache=True, fastmath=FAST_MATH)
def score_row(row: int, at: int, s: int, input_table: np.ndarray, output_table: np.ndarray,
              noise_table: np.ndarray, inputs: np.ndarray, outputs: np.ndarray, num_ns: int, stream: np.uint32,
              rate: np.float32, context_ids: np.ndarray, errors: np.ndarray, vectors: np.ndarray,
              updates: np.ndarray, row_sums: np.ndarray, immediate: bool) -> None:
    """Phase 1 for one row of step `s`'s batch, kept in the scratch's row `at`: its input vector, contexts
    (negatives drawn), their errors, the input's update, loss and accuracy, from the tables as the step found
    them; with `immediate`, each context's output vector also takes its update as soon as it is scored."""
    dim = input_table.shape[1]
    vector, update = vectors[at, :dim], updates[at, :dim]
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
            context_ids[at, c] = outputs[s, row, c]
        elif c == 0:
            context_ids[at, c] = positive
        else:
            drawn = noise_word(noise_table, stream, row * num_ns + c - 1)
            context_ids[at, c] = drawn % (input_table.shape[0] - 1) + 1 if drawn == positive else drawn
    update[:] = 0.0
    # The loss, -log of each context's probability of its label, as one log of their product; a logit
    # too large for that product (|logit| > 30) adds its own term.
    loss, right_labels, best, first_logit = 0.0, 1.0, -np.inf, 0.0
    for c in range(contexts):
        context_vector = output_table[context_ids[at, c]]
        logit = dot(vector, context_vector)
        # sigmoid(logit) and sigmoid(-logit) from one exp(-|logit|), which cannot overflow
        small = np.float32(math.exp(-abs(logit)))
        larger = np.float32(1.0) / (np.float32(1.0) + small)  # sigmoid(|logit|)
        sigmoid = larger if logit >= 0 else small * larger
        label = np.float32(1.0) if c == 0 else np.float32(0.0)
        error = (label - sigmoid) * rate
        errors[at, c] = error
        for k in range(vector.shape[0]):
            update[k] += error * context_vector[k]
        if immediate:  # word2vec.c's order: the context's vector moves before the next context is scored
            for k in range(vector.shape[0]):
                context_vector[k] += error * vector[k]
        if abs(logit) > 30.0:
            loss += max(-logit if c == 0 else logit, 0.0) + math.log1p(small)
        else:
            right_labels *= float(sigmoid if c == 0 else (small * larger if logit >= 0 else larger))
        if c == 0:
            first_logit = logit
        elif logit > best:
            best = logit
    row_sums[at, 0] = loss - math.log(right_labels)
    row_sums[at, 1] = 1.0 if first_logit >= best else 0.0


@njit(nogil=True, cache=True)
def row_scratch(batch: int, contexts: int, dim: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray,
                                                               np.ndarray]:
    """`score_row`'s scratch for a batch: context ids, errors, input vectors, input updates, (loss, correct).
    Each row's floats start on their own cache line: cores write rows of the same step side by side (the
    few bytes of a row's context ids are written in chunks of ROWS_PER_CHUNK rows)."""
    return (np.empty((batch, contexts), np.int32), np.empty((batch, padded(contexts, 16)), np.float32),
            np.empty((batch, padded(dim, 16)), np.float32), np.empty((batch, padded(dim, 16)), np.float32),
            np.empty((batch, 8), np.float64))


@njit(nogil=True, cache=True)
def bucket_by_row(ids: np.ndarray, skip_padding: bool, starts: np.ndarray, entries: np.ndarray,
                  filled: np.ndarray) -> None:
    """Entries (flat positions in `ids`; with `skip_padding`, those whose id is not padding) grouped by table
    row modulo PARTS, each group in its entries' order: a counting sort. Group p is
    entries[starts[p]:starts[p + 1]]; `filled` is scratch of PARTS entries."""
    starts[:] = 0
    for k in range(ids.shape[0]):
        if not skip_padding or ids[k] != 0:
            starts[ids[k] % PARTS + 1] += 1
    for part in range(PARTS):
        starts[part + 1] += starts[part]
    filled[:] = starts[:PARTS]
    for k in range(ids.shape[0]):
        if not skip_padding or ids[k] != 0:
            part = ids[k] % PARTS
            entries[filled[part]] = k
            filled[part] += 1


@njit(nogil=True, cache=True, fastmath=FAST_MATH, inline="always")
def add_to_row(table: np.ndarray, word: int, updates: np.ndarray, at: int) -> None:
    """table[word] += updates[at, :dim], element by element. numba's `+=` on a row makes a temporary array: a malloc
    and a free for every row, which in the train stage's process (most likely more threads than malloc has
    arenas) waited on the allocator's lock ~2,000 times a call and left the cores idle: hogwild's loop at 166k
    words x 300 took 56-58 s where it now takes 32 s (bench/results/stage_loop_alloc-20261207-2025.md)."""
    for k in range(table.shape[1]):
        table[word, k] += updates[at, k]


@njit(parallel=True, nogil=True, cache=True, fastmath=FAST_MATH)
def train_steps(input_table: np.ndarray, output_table: np.ndarray, noise_table: np.ndarray, inputs: np.ndarray,
                outputs: np.ndarray, first_step: int, learning_rate: float, total_steps: int, seed: int,
                num_ns: int) -> tuple[float, float]:
    """Train on a block of batches: inputs (steps, batch) for skip-gram or (steps, batch, window) for CBOW
    (padding 0), outputs (steps, batch, 1) of true contexts (num_ns negatives drawn per row) or
    (steps, batch, 1 + negatives) stored; the tables are updated in place. (Summed loss, correct rows).

    Phase 1 scores the batch's rows, in chunks that idle cores take. Phase 2 hands out the PARTS groups of
    table rows (row id modulo PARTS) the same way; a group's rows take their updates in batch order. A
    stalled core holds up one chunk or one group, not its fixed half of the step, and no sum depends on
    which core or how many cores ran."""
    steps, batch = inputs.shape[0], inputs.shape[1]
    cbow = inputs.ndim == 3
    width = inputs.shape[2] if cbow else 1
    dim = input_table.shape[1]
    contexts = 1 + num_ns if num_ns else outputs.shape[2]
    rate0, total = np.float32(learning_rate), np.float32(total_steps)
    context_ids, errors, vectors, updates, row_sums = row_scratch(batch, contexts, dim)
    output_starts, input_starts = np.empty(PARTS + 1, np.int64), np.empty(PARTS + 1, np.int64)
    output_entries = np.empty(batch * contexts, np.int64)
    input_entries = np.empty(batch * width, np.int64)
    # Every array a step needs is made here, once per call: arrays made inside the step loop (a mask, two
    # copies) cost each step allocations and frees; without them the kernel ran 1.07-1.23x as fast.
    filled = np.empty(PARTS, np.int64)
    loss_total, correct_total = 0.0, 0.0
    for s in range(steps):
        step = first_step + s
        rate = learning_rate_at(step, rate0, total)
        stream = noise_stream(seed, step)
        for chunk in prange(-(-batch // ROWS_PER_CHUNK)):
            for row in range(chunk * ROWS_PER_CHUNK, min(batch, (chunk + 1) * ROWS_PER_CHUNK)):
                if row + 1 < batch:
                    prefetch_batch_row(input_table, output_table, noise_table, inputs, outputs, s, row + 1, num_ns,
                                       stream)
                score_row(row, row, s, input_table, output_table, noise_table, inputs, outputs, num_ns, stream,
                          rate, context_ids, errors, vectors, updates, row_sums, False)
        flat_inputs = inputs[s].ravel()
        bucket_by_row(context_ids.ravel(), False, output_starts, output_entries, filled)
        # padding (CBOW's short windows) takes no update
        bucket_by_row(flat_inputs, True, input_starts, input_entries, filled)
        for part in prange(PARTS):
            for k in range(output_starts[part], output_starts[part + 1]):
                if k + PREFETCH_AHEAD < output_starts[part + 1]:
                    ahead = output_entries[k + PREFETCH_AHEAD]
                    prefetch_row(output_table, context_ids[ahead // contexts, ahead % contexts])
                entry = output_entries[k]
                row, c = entry // contexts, entry % contexts
                error, vector, context_vector = errors[row, c], vectors[row, :dim], output_table[context_ids[row, c]]
                for d in range(dim):
                    context_vector[d] += error * vector[d]
            for k in range(input_starts[part], input_starts[part + 1]):
                if k + PREFETCH_AHEAD < input_starts[part + 1]:
                    prefetch_row(input_table, flat_inputs[input_entries[k + PREFETCH_AHEAD]])
                entry = input_entries[k]
                add_to_row(input_table, flat_inputs[entry], updates, entry // width)
        for row in range(batch):
            loss_total += row_sums[row, 0]
            correct_total += row_sums[row, 1]
    return loss_total, correct_total


@njit(parallel=True, nogil=True, cache=True, fastmath=FAST_MATH)
def train_steps_hogwild(input_table: np.ndarray, output_table: np.ndarray, noise_table: np.ndarray,
                        inputs: np.ndarray, outputs: np.ndarray, first_step: int, learning_rate: float,
                        total_steps: int, seed: int, num_ns: int) -> tuple[float, float]:
    """`train_steps` with word2vec.c's order of updates: each row scored and applied at once, the rows handed
    out ROWS_PER_TASK at a time, step by step, to whichever core is idle. On one core the rows go in batch
    order (the same tables every run); on more, cores update shared rows unlocked."""
    steps, batch = inputs.shape[0], inputs.shape[1]
    cbow = inputs.ndim == 3
    width = inputs.shape[2] if cbow else 1
    dim = input_table.shape[1]
    contexts = 1 + num_ns if num_ns else outputs.shape[2]
    rate0, total = np.float32(learning_rate), np.float32(total_steps)
    tasks_per_step = -(-batch // ROWS_PER_TASK)
    tasks = steps * tasks_per_step
    sums = np.zeros((tasks, 2), np.float64)
    # A scratch row for each task, made here once per call rather than by each task: no allocation inside the
    # parallel loop (see `add_to_row`). Rows `spacing` apart, so that the context ids of tasks that run side by
    # side sit on cache lines of their own.
    spacing = -(-64 // (4 * contexts))
    context_ids, errors, vectors, updates, row_sums = row_scratch(tasks * spacing, contexts, dim)
    for task in prange(tasks):
        at = task * spacing
        s, part = task // tasks_per_step, task % tasks_per_step
        step = first_step + s
        rate = learning_rate_at(step, rate0, total)
        stream = noise_stream(seed, step)
        end = min(batch, (part + 1) * ROWS_PER_TASK)
        for row in range(part * ROWS_PER_TASK, end):
            if row + 1 < end:
                prefetch_batch_row(input_table, output_table, noise_table, inputs, outputs, s, row + 1, num_ns,
                                   stream)
            score_row(row, at, s, input_table, output_table, noise_table, inputs, outputs, num_ns, stream, rate,
                      context_ids, errors, vectors, updates, row_sums, True)
            if cbow:
                for w in range(width):
                    word = inputs[s, row, w]
                    if word != 0:
                        add_to_row(input_table, word, updates, at)
            else:
                add_to_row(input_table, inputs[s, row], updates, at)
            sums[task, 0] += row_sums[at, 0]
            sums[task, 1] += row_sums[at, 1]
    return sums[:, 0].sum(), sums[:, 1].sum()


@njit(parallel=True, nogil=True, cache=True, fastmath=FAST_MATH)
def evaluate_batches(input_table: np.ndarray, output_table: np.ndarray, inputs: np.ndarray,
                     outputs: np.ndarray) -> tuple[float, float]:
    """(Summed loss, correct rows) of held-out batches, inputs (batches, batch[, window]) and outputs
    (batches, batch, 1 + negatives) with the true context first: each row scored as a training step scores
    it, at rate 0 (nothing moves); as `w2vpipe.sgd.evaluate_call` scores them."""
    batches, batch = inputs.shape[0], inputs.shape[1]
    context_ids, errors, vectors, updates, row_sums = row_scratch(batch, outputs.shape[2], input_table.shape[1])
    no_noise = np.zeros(1, np.int32)  # stored negatives: nothing is drawn
    loss_total, correct_total = 0.0, 0.0
    for b in range(batches):
        for chunk in prange(-(-batch // ROWS_PER_CHUNK)):
            for row in range(chunk * ROWS_PER_CHUNK, min(batch, (chunk + 1) * ROWS_PER_CHUNK)):
                score_row(row, row, b, input_table, output_table, no_noise, inputs, outputs, 0, np.uint32(0),
                          np.float32(0.0), context_ids, errors, vectors, updates, row_sums, False)
        for row in range(batch):
            loss_total += row_sums[row, 0]
            correct_total += row_sums[row, 1]
    return loss_total, correct_total


Tables = tuple[np.ndarray, np.ndarray]


def train_call(config: Any, cores: int) -> Callable[..., tuple[Tables, float, float]]:
    """`w2vpipe.sgd.train_call`'s call on `cores` cores (numba's threads): (tables, noise table, block inputs,
    block outputs, first step) -> (the same tables, updated in place; summed loss; correct rows). `config`
    is a `w2vpipe.sgd.StepConfig`; shared negatives are the keras.ops loop's alone."""
    if config.shared_negatives:
        raise ValueError("negatives shared per batch train on the keras.ops loop (w2vpipe.sgd)")
    numba.set_num_threads(cores)
    train = train_steps_hogwild if config.hogwild else train_steps

    def call(tables: Tables, noise_table: np.ndarray, inputs: np.ndarray, outputs: np.ndarray,
             first_step: int) -> tuple[Tables, float, float]:
        numba.set_parallel_chunksize(1)  # idle cores take the next chunk of rows or group of table rows
        loss, correct = train(tables[0], tables[1], noise_table, inputs, outputs, int(first_step),
                              config.learning_rate, config.total_steps, config.seed, config.num_ns)
        return tables, loss, correct

    return call


def evaluate_call(batches: int) -> Callable[..., tuple[float, float]]:
    """`w2vpipe.sgd.evaluate_call`'s call: (tables, inputs, outputs) shaped (batches, batch[, columns])."""

    def call(tables: Tables, inputs: np.ndarray, outputs: np.ndarray) -> tuple[float, float]:
        return evaluate_batches(tables[0], tables[1], inputs, outputs)

    return call
