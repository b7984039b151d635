"""Training examples: skip-gram pairs or CBOW windows, frequent-word subsampling, negative samples.

The tutorial's semantics, vectorized with numpy: Keras 2's `skipgrams` and
`make_sampling_table`, and TensorFlow's log-uniform candidate sampler with `unique=True`.
Unlike the tutorial's sampler, a negative never equals the row's true word.
Loops run over window offsets and negative columns (a handful), never over pairs, except in the
skip-gram pairs' one compiled loop (`_pairs_by_offset`).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from w2vpipe.errors import PipelineError
from w2vpipe.files import check_ids, load_shard, mapped_arrays, save_shard

PAD_ID = 0
UNKNOWN_ID = 1  # TextVectorization's [UNK], right after padding


@dataclass(frozen=True)
class Examples:
    """One row per positive example: the words the model reads (`inputs`, whose vectors are the
    embeddings users keep) and the words it scores against them (`outputs`).

    Skip-gram: `inputs` is the target word (n,), `outputs[:, 0]` one word of its window.
    CBOW: `inputs` is the window around a word (n, 2 * window, padding id 0 where the sentence
    ends), `outputs[:, 0]` that word. The other output columns are negatives (their labels, 1 then
    zeros, are implied by the column and made at training time); with negatives drawn per batch,
    `outputs` holds the true word alone.
    """

    inputs: np.ndarray  # (n,) or (n, 2 * window) int32
    outputs: np.ndarray  # (n, 1 + num_ns) int32, or (n, 1) when negatives are drawn per batch

    def __len__(self) -> int:
        return len(self.inputs)


def make_sampling_table(size: int, sampling_factor: float = 1e-5) -> np.ndarray:
    """Keras 2's `make_sampling_table`: keep-probability of the word of each frequency rank.

    Assumes Zipf-distributed word frequencies; word2vec's subsampling formula
    `min(1, sqrt(sampling_factor / frequency))`, with frequencies estimated from rank.
    """
    gamma = 0.577
    rank = np.arange(size, dtype=np.float64)
    rank[0] = 1
    inverse_frequency = rank * (np.log(rank) + gamma) + 0.5 - 1.0 / (12.0 * rank)
    scaled = sampling_factor * inverse_frequency
    return np.minimum(1.0, scaled / np.sqrt(scaled))


def word2vec_keep_probabilities(counts: np.ndarray, sample: float) -> np.ndarray:
    """word2vec.c's (and gensim's) subsampling: keep a word of corpus frequency f with probability
    (sqrt(f / t) + 1) * t / f, t = sample * total words, computed from real counts rather than from
    the rank (Keras 2's table assumes a Zipf law)."""
    counts = np.asarray(counts, dtype=np.float64)
    threshold = sample * counts.sum()
    with np.errstate(divide="ignore", invalid="ignore"):
        keep = (np.sqrt(counts / threshold) + 1) * threshold / counts
    return np.where(counts > 0, np.minimum(keep, 1.0), 1.0)


def kept_positions(tokens: np.ndarray, sampling_table: np.ndarray | None = None,
                   rng: np.random.Generator | None = None) -> np.ndarray:
    """Positions of the words that may be targets: not padding, and kept by the sampling table
    (a word of id t with probability `sampling_table[t]`)."""
    keep_target = tokens != PAD_ID
    if sampling_table is not None:
        if rng is None:
            raise ValueError("a sampling table needs a random generator")
        keep_target &= subsample_draws(tokens, sampling_table, rng)
    return np.flatnonzero(keep_target)


def subsample_draws(tokens: np.ndarray, keep_probabilities: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Which tokens subsampling keeps: a word of id t with probability `keep_probabilities[t]`."""
    # float32 halves the memory these per-token arrays touch; the draws keep 24 bits.
    return rng.random(tokens.shape, dtype=np.float32) < keep_probabilities.astype(np.float32)[tokens]


def window_offsets(window_size: int) -> tuple[int, ...]:
    return (*range(-window_size, 0), *range(1, window_size + 1))


def neighbours_at(tokens: np.ndarray, positions: np.ndarray, columns: np.ndarray,
                  sentence_lengths: np.ndarray | int, offset: int) -> np.ndarray:
    """The token `offset` places from each position (at `columns` of sentences `sentence_lengths`
    long), or padding (0) where that leaves the sentence."""
    # Clipped indices only ever land outside the sentence, where `inside` is false.
    neighbours = tokens[np.clip(positions + offset, 0, len(tokens) - 1)]
    inside = (columns + offset >= 0) & (columns + offset < sentence_lengths)
    return np.where(inside, neighbours, PAD_ID)


def windows_of_kept_words(
    tokens: np.ndarray,
    lengths: np.ndarray,
    window_size: int,
    sampling_table: np.ndarray | None = None,
    rng: np.random.Generator | None = None,
    dynamic_window: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """(positions, windows): the positions of the words kept as targets, and the `2 * window_size`
    words around each (offsets -window_size..-1, 1..window_size), padding (0) where that leaves
    the sentence or, with `dynamic_window`, passes the target's reach (drawn in 1..window_size:
    word2vec.c's way of weighting near words more)."""
    # Work on the kept targets only: subsampling drops most of a corpus's frequent words.
    positions = kept_positions(tokens, sampling_table, rng)
    columns, sentence_lengths = _columns_in_sentences(positions, np.asarray(lengths))
    reach = window_reach(len(positions), window_size, dynamic_window, rng)
    windows = np.stack([np.where(abs(offset) <= reach,
                                 neighbours_at(tokens, positions, columns, sentence_lengths, offset), PAD_ID)
                        for offset in window_offsets(window_size)], axis=1)
    return positions, windows.astype(np.int32)


def skipgram_pairs(
    tokens: np.ndarray,
    lengths: np.ndarray,
    window_size: int,
    sampling_table: np.ndarray | None = None,
    rng: np.random.Generator | None = None,
    dynamic_window: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """All (target, context) pairs within `window_size` of each other in the same sentence.

    `tokens` holds the sentences end to end and `lengths` their lengths, so padded and unpadded
    sentences are handled alike. As in Keras 2's `skipgrams`, padding (id 0) is never a target or
    a context, and with a sampling table a target position is kept with probability
    `sampling_table[token]`, all its pairs with it. With `dynamic_window`, each target's window
    shrinks at random (see `windows_of_kept_words`). Pairs come grouped by offset (-window_size..-1,
    1..window_size), each group in the targets' order, not shuffled.
    """
    positions = kept_positions(tokens, sampling_table, rng)
    reach = window_reach(len(positions), window_size, dynamic_window, rng)
    reach = np.full(len(positions), reach, np.int32) if np.isscalar(reach) else reach
    return _compiled(_pairs_by_offset)(np.ascontiguousarray(tokens, np.int32), np.asarray(lengths, np.int64),
                                       positions, reach, window_size)


@functools.cache
def _compiled(function: Callable) -> Callable:
    """`function` compiled by numba (its code cached on disk), on first use: the stages that never draw pairs
    do not load numba. The compiled loop releases the GIL, so a thread drawing the next shard's pairs runs
    beside the training; it makes no arrays of window size x words (numpy's windows took ~5x the time and
    ~10 int32s a word of memory)."""
    import w2vpipe.numba_cache  # noqa: F401  (numba's settings, before numba loads)
    from numba import njit

    return njit(nogil=True, cache=True)(function)


def _pairs_by_offset(tokens: np.ndarray, lengths: np.ndarray, positions: np.ndarray, reach: np.ndarray,
                     window_size: int) -> tuple[np.ndarray, np.ndarray]:
    """`skipgram_pairs`' pairs of the targets at `positions` (ascending), each reaching `reach` words, offset by
    offset."""
    ends = np.cumsum(lengths)  # each sentence's end; a target's sentence is found by walking forward
    first, last = np.empty(len(positions), np.int64), np.empty(len(positions), np.int64)
    sentence = 0
    for k in range(len(positions)):
        while ends[sentence] <= positions[k]:
            sentence += 1
        first[k], last[k] = ends[sentence] - lengths[sentence], ends[sentence]
    targets = contexts = np.empty(0, np.int32)
    for fill in (False, True):  # count the pairs, then write them
        pair = 0
        for offset in range(-window_size, window_size + 1):
            for k in range(len(positions)):
                at = positions[k] + offset
                if offset != 0 and abs(offset) <= reach[k] and first[k] <= at < last[k] and tokens[at] != PAD_ID:
                    if fill:
                        targets[pair], contexts[pair] = tokens[positions[k]], tokens[at]
                    pair += 1
        if not fill:
            targets, contexts = np.empty(pair, np.int32), np.empty(pair, np.int32)
    return targets, contexts


def cbow_windows(
    tokens: np.ndarray,
    lengths: np.ndarray,
    window_size: int,
    sampling_table: np.ndarray | None = None,
    rng: np.random.Generator | None = None,
    dynamic_window: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """CBOW's examples: for each kept word, the `2 * window_size` words around it in its sentence
    (padding where the sentence ends, or past a dynamic window's reach) and the word itself. Words
    with no neighbour are left out."""
    positions, windows = windows_of_kept_words(tokens, lengths, window_size, sampling_table, rng, dynamic_window)
    has_context = (windows != PAD_ID).any(axis=1)
    return windows[has_context], tokens[positions][has_context].astype(np.int32)


def window_reach(targets: int, window_size: int, dynamic: bool,
                 rng: np.random.Generator | None) -> np.ndarray | int:
    """How far each target's window reaches: `window_size`, or with `dynamic` a draw in 1..window_size."""
    if not dynamic:
        return window_size
    if rng is None:
        raise ValueError("a dynamic window needs a random generator")
    return rng.integers(1, window_size + 1, size=targets, dtype=np.int32)


def word_counts(counts: np.ndarray, drop_before_windowing: bool) -> np.ndarray:
    """The counts that subsampling and the noise distribution use: with words dropped before
    windowing, [UNK] is never a word of the training sentences, so it is never a negative either
    (gensim knows no out-of-vocabulary word)."""
    if not drop_before_windowing:
        return counts
    counts = np.array(counts, copy=True)
    counts[UNKNOWN_ID] = 0
    return counts


def drop_words(tokens: np.ndarray, lengths: np.ndarray, keep_probabilities: np.ndarray | None,
               rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """The sentences without padding, [UNK] and the words subsampling drops (a word of id t kept
    with probability `keep_probabilities[t]`), closed up: word2vec.c and gensim window over what
    remains, so a window reaches past a dropped word rather than pairing with it."""
    keep = tokens > UNKNOWN_ID
    if keep_probabilities is not None:
        keep &= subsample_draws(tokens, keep_probabilities, rng)
    sentence = np.repeat(np.arange(len(lengths), dtype=np.int32), lengths)
    return tokens[keep], np.bincount(sentence[keep], minlength=len(lengths)).astype(np.int32)


def _columns_in_sentences(positions: np.ndarray, lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray | int]:
    """For token positions in sentences laid end to end: each one's index within its sentence, and
    that sentence's length."""
    if len(lengths) and (lengths == lengths[0]).all():  # fixed-length (padded) lines: plain arithmetic
        return positions % lengths[0], int(lengths[0])
    starts = np.cumsum(lengths) - lengths
    sentences = np.repeat(np.arange(len(lengths), dtype=np.int32), lengths)[positions]
    return positions - starts[sentences], lengths[sentences]


def log_uniform_probabilities(range_max: int) -> np.ndarray:
    """TensorFlow's log-uniform (Zipfian) distribution over ids [0, range_max)."""
    ids = np.arange(range_max, dtype=np.float64)
    return np.log((ids + 2) / (ids + 1)) / np.log(range_max + 1.0)


def unigram_probabilities(counts: np.ndarray, power: float = 0.75) -> np.ndarray:
    """word2vec.c's noise distribution: corpus counts raised to 3/4, normalized."""
    weights = np.asarray(counts, dtype=np.float64) ** power
    return weights / weights.sum()


def noise_probabilities(noise: str, counts: np.ndarray) -> np.ndarray:
    """The negative-sampling distribution over the vocabulary, by name (see params.NOISE_DISTRIBUTIONS)."""
    if noise == "log_uniform":
        return log_uniform_probabilities(len(counts))
    if noise == "unigram":
        return unigram_probabilities(counts)
    raise ValueError(f"unknown noise distribution {noise!r}")


def sample_log_uniform(rng: np.random.Generator, size: int | tuple[int, ...], range_max: int) -> np.ndarray:
    """Draws from TensorFlow's log-uniform (Zipfian) sampler over [0, range_max).

    P(k) = log((k + 2) / (k + 1)) / log(range_max + 1), drawn by inverting the CDF exactly as
    TensorFlow's `LogUniformSampler` does (in float64, as it does: float32's 2^-24 steps would
    distort the rare ids' shares of large vocabularies).
    """
    values = np.exp(rng.random(size) * np.log(range_max + 1.0)).astype(np.int32)
    values -= 1
    return np.minimum(values, range_max - 1, out=values)


Sampler = Callable[[np.random.Generator, "int | tuple[int, ...]"], np.ndarray]


def make_sampler(noise: str, counts: np.ndarray) -> Sampler:
    """A function drawing ids from the named noise distribution."""
    if noise == "log_uniform":
        range_max = len(counts)
        return lambda rng, size: sample_log_uniform(rng, size, range_max)
    cdf = np.cumsum(noise_probabilities(noise, counts))
    cdf /= cdf[-1]
    return lambda rng, size: np.minimum(np.searchsorted(cdf, rng.random(size), side="right"),
                                        len(cdf) - 1).astype(np.int32)


def sample_negatives(rng: np.random.Generator, positives: np.ndarray, num_ns: int, sampler: Sampler,
                     vocab_size: int) -> np.ndarray:
    """`num_ns` negatives per row from `sampler`, unique within the row and never the row's positive.

    Like TensorFlow's sampler with `unique=True`, a draw equal to the positive or to an earlier
    negative of its row is rejected and drawn again. Columns are drawn one after the other, all
    rows at once, and only the clashing rows are redrawn.
    """
    if not 1 <= num_ns < vocab_size:
        raise ValueError(f"num_ns={num_ns} needs 1 <= num_ns < vocab_size={vocab_size}")
    taken = [positives]  # per column, contiguous: comparisons between 1-D arrays are the fast kind
    for _ in range(num_ns):
        column = sampler(rng, len(positives))
        clash = column == positives
        for earlier in taken[1:]:
            clash |= column == earlier
        rows = np.flatnonzero(clash)
        while len(rows):
            drawn = column[rows] = sampler(rng, len(rows))
            clash = drawn == positives[rows]
            for earlier in taken[1:]:
                clash |= drawn == earlier[rows]
            rows = rows[clash]
        taken.append(column)
    return np.stack(taken[1:], axis=1)


def make_examples(
    tokens: np.ndarray,
    lengths: np.ndarray,
    window_size: int,
    num_ns: int,
    counts: np.ndarray,
    rng: np.random.Generator,
    subsample: bool = True,
    noise: str = "log_uniform",
    store_negatives: bool = True,
    sample: float | None = None,
    architecture: str = "skipgram",
    drop_before_windowing: bool = False,
    dynamic_window: bool = False,
) -> Examples:
    """The tutorial's `generate_training_data` for a block of sentences (`tokens` laid end to end,
    `lengths` long), or CBOW's windows.

    Each example gets its negatives, drawn here, or, with `store_negatives=False`, later on the
    device at each batch (`outputs` then holds the true word alone). Subsampling uses Keras 2's
    rank table, or with `sample`, word2vec.c's formula on the corpus counts; it drops targets
    only (the tutorial's way), or with `drop_before_windowing`, drops words, [UNK] too, from the
    sentences before they are windowed (word2vec.c's and gensim's way).
    """
    vocab_size = len(counts)
    counts = word_counts(counts, drop_before_windowing)
    sampling_table = None
    if subsample:
        sampling_table = make_sampling_table(vocab_size) if sample is None else word2vec_keep_probabilities(
            counts, sample)
    # Unshuffled, unlike Keras 2's `skipgrams`: training permutes every shard at every epoch.
    make_rows = cbow_windows if architecture == "cbow" else skipgram_pairs
    if drop_before_windowing:
        tokens, lengths = drop_words(tokens, lengths, sampling_table, rng)
        sampling_table = None
    inputs, positives = make_rows(tokens, lengths, window_size, sampling_table, rng, dynamic_window)
    if not store_negatives:
        return Examples(inputs=inputs, outputs=positives[:, None])
    negatives = sample_negatives(rng, positives, num_ns, make_sampler(noise, counts), vocab_size)
    return Examples(inputs=inputs, outputs=np.concatenate([positives[:, None], negatives], axis=1))


def save_examples(examples: Examples, directory: Path) -> None:
    save_shard(directory, {"inputs": examples.inputs, "outputs": examples.outputs})


def check_examples_shard(directory: Path, vocab_size: int, fix: str) -> int:
    """The rows of a shard, once it is found sound: both files readable, rows alike, every id inside the
    vocabulary. Memory-mapped: milliseconds a shard, so a damaged file stops a stage before it trains."""
    arrays = mapped_arrays(directory, ("inputs", "outputs"), fix)
    for name, array in arrays.items():
        check_ids(directory / f"{name}.npy", array, vocab_size, fix)
    if len(arrays["inputs"]) != len(arrays["outputs"]):
        raise PipelineError(f"{directory} has {len(arrays['inputs']):,} input rows but {len(arrays['outputs']):,} "
                            f"output rows: {fix}")
    return len(arrays["inputs"])


def load_examples_shard(directory: Path) -> Examples:
    inputs, outputs = load_shard(directory, ("inputs", "outputs"))
    return Examples(inputs=inputs, outputs=outputs)
