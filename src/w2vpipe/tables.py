"""What both SGD loops (numba's on the CPU cores, keras.ops's on accelerators) start from, without Keras:
the two tables' starting values, the negatives' noise table and a step's settings. The CPU loop imports
neither Keras nor its backend: a train stage on the CPU spends no seconds loading them."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class StepConfig:
    batch_size: int
    steps_per_call: int
    num_ns: int  # negatives drawn per example at each step; 0: the examples hold them (stored)
    shared_negatives: int  # > 0: that many negatives drawn per batch, shared by all its examples
    learning_rate: float  # at step 0; it falls linearly to 1e-4 of that at `total_steps` (word2vec.c)
    total_steps: int
    vocab_size: int
    seed: int
    hogwild: bool = False  # each row's update applied at once, cores unlocked (`w2vpipe.cpu_sgd` only)


def initial_tables(vocab_size: int, embedding_dim: int, initializer: str,
                   seed: int | None) -> tuple[np.ndarray, np.ndarray]:
    """The input and output tables' starting values, seeded here, not by a global seed (the same on every
    backend and in every process of a group), drawn in place by numpy: a table of a million words costs
    no transient copy (Keras's initializers on JAX held four).

    "word2vec" (word2vec.c's and gensim's): input vectors uniform in [-0.5, 0.5) / dim, output vectors
    zero; "keras" (the tutorial's, Keras's default): both uniform in [-0.05, 0.05).
    """
    shape = (vocab_size, embedding_dim)

    def uniform(stream: int, half_width: float) -> np.ndarray:
        table = aligned_table(shape)
        np.random.default_rng([seed or 0, stream]).random(out=table, dtype=np.float32)
        table -= np.float32(0.5)
        table *= np.float32(2 * half_width)
        return table

    if initializer == "word2vec":
        context = aligned_table(shape)
        context.fill(0.0)
        return uniform(0, 0.5 / embedding_dim), context
    return uniform(0, 0.05), uniform(1, 0.05)


def aligned_table(shape: tuple[int, int]) -> np.ndarray:
    """An uninitialized float32 table whose data starts on a 64-byte boundary, XLA's CPU alignment: JAX then
    takes it over through DLPack without a copy (numpy's large arrays start 16 bytes into their pages, and
    JAX copied those: +1.3 GB at a million words, dimension 300)."""
    count = shape[0] * shape[1]
    raw = np.empty(count + 16, np.float32)
    start = (-raw.ctypes.data % 64) // raw.itemsize
    return raw[start:start + count].reshape(shape)


def noise_table_size(vocab_size: int) -> int:
    """Entries in the noise table: at least 2^16 and 16 per word, so every word with a probability
    above ~1/(16 * vocab_size) gets its share. Small enough to stay in cache: a 2^20-entry table
    made the per-batch step 2.2x slower on 2 CPU cores (1.4M vs 3.1M pairs/s)."""
    return max(1 << 16, 16 * vocab_size)


NOISE_TABLE_CHUNK = 1 << 22


def noise_table(probabilities: np.ndarray) -> np.ndarray:
    """word2vec.c's unigram table: word ids laid out in proportion to their noise probability, so a
    draw is one uniform index and one lookup (a binary search per draw is ~10x slower under XLA)."""
    size = noise_table_size(len(probabilities))
    cdf = np.cumsum(probabilities, dtype=np.float64)
    table = np.empty(size, np.int32)
    for start in range(0, size, NOISE_TABLE_CHUNK):  # float64 quantiles a chunk at a time, not 16 per word at once
        quantiles = (np.arange(start, min(start + NOISE_TABLE_CHUNK, size), dtype=np.float64) + 0.5) / size * cdf[-1]
        table[start:start + len(quantiles)] = np.minimum(np.searchsorted(cdf, quantiles, side="right"), len(cdf) - 1)
    return table
