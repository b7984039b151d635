"""Skip-gram training examples: positive pairs, frequent-word subsampling, negative samples.

The tutorial's semantics, vectorized with numpy: Keras 2's `skipgrams` and
`make_sampling_table`, and TensorFlow's log-uniform candidate sampler with `unique=True`.
Unlike the tutorial's sampler, a negative never equals the row's true context word.
Loops run over window offsets and negative columns (a handful), never over pairs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from w2vpipe.files import atomic_file

PAD_ID = 0


@dataclass(frozen=True)
class Examples:
    """One row per positive pair: `contexts[:, 0]` is the true context, the rest negatives."""

    targets: np.ndarray  # (n,) int32
    contexts: np.ndarray  # (n, 1 + num_ns) int32
    labels: np.ndarray  # (n, 1 + num_ns) int8: 1 then num_ns zeros

    def __len__(self) -> int:
        return len(self.targets)


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


def skipgram_pairs(
    tokens: np.ndarray,
    sentence_ids: np.ndarray,
    window_size: int,
    sampling_table: np.ndarray | None = None,
    rng: np.random.Generator | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """All (target, context) pairs within `window_size` of each other in the same sentence.

    `tokens` is the corpus flattened to one dimension and `sentence_ids` says which sentence
    each token belongs to, so padded and unpadded sentences are handled alike. As in Keras 2's
    `skipgrams`, padding (id 0) is never a target or a context, and with a sampling table a
    target position is kept with probability `sampling_table[token]`, all its pairs with it.
    """
    keep_target = tokens != PAD_ID
    if sampling_table is not None:
        if rng is None:
            raise ValueError("a sampling table needs a random generator")
        keep_target &= rng.random(tokens.shape) < sampling_table[tokens]
    targets, contexts = [], []
    for offset in range(1, window_size + 1):
        same_sentence = sentence_ids[:-offset] == sentence_ids[offset:]
        left, right = tokens[:-offset], tokens[offset:]
        # The word at i with the one `offset` to its right, and the right one with the left one.
        forward = same_sentence & keep_target[:-offset] & (right != PAD_ID)
        backward = same_sentence & keep_target[offset:] & (left != PAD_ID)
        targets += [left[forward], right[backward]]
        contexts += [right[forward], left[backward]]
    return np.concatenate(targets).astype(np.int32), np.concatenate(contexts).astype(np.int32)


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
    TensorFlow's `LogUniformSampler` does.
    """
    values = np.exp(rng.random(size) * np.log(range_max + 1.0)).astype(np.int64) - 1
    return np.minimum(values, range_max - 1).astype(np.int32)


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


def _clashing(negatives: np.ndarray, positives: np.ndarray) -> np.ndarray:
    """Mask of negatives equal to the row's positive or to an earlier negative in the row."""
    clash = negatives == positives[:, None]
    for column in range(1, negatives.shape[1]):
        clash[:, column] |= (negatives[:, :column] == negatives[:, column : column + 1]).any(axis=1)
    return clash


def sample_negatives(rng: np.random.Generator, positives: np.ndarray, num_ns: int, sampler: Sampler,
                     vocab_size: int) -> np.ndarray:
    """`num_ns` negatives per row from `sampler`, unique within the row and never the row's positive.

    Like TensorFlow's sampler with `unique=True`, clashing draws are rejected and drawn again;
    only the clashing entries are redrawn, all rows at once.
    """
    if not 1 <= num_ns < vocab_size:
        raise ValueError(f"num_ns={num_ns} needs 1 <= num_ns < vocab_size={vocab_size}")
    negatives = sampler(rng, (len(positives), num_ns))
    rows = np.arange(len(positives))
    while len(rows):
        clash = _clashing(negatives[rows], positives[rows])
        if not clash.any():
            break
        clashing_rows = clash.any(axis=1)
        rows = rows[clashing_rows]
        redraw = negatives[rows]
        redraw[clash[clashing_rows]] = sampler(rng, int(clash.sum()))
        negatives[rows] = redraw
    return negatives


def make_examples(
    tokens: np.ndarray,
    sentence_ids: np.ndarray,
    window_size: int,
    num_ns: int,
    counts: np.ndarray,
    rng: np.random.Generator,
    subsample: bool = True,
    noise: str = "log_uniform",
    store_negatives: bool = True,
    sample: float | None = None,
) -> Examples:
    """The tutorial's `generate_training_data` for a block of sentences (flattened tokens).

    Pairs are shuffled (Keras 2's `skipgrams` shuffles too), then each gets its negatives, drawn
    here, or, with `store_negatives=False`, later on the device at each batch (`contexts` then
    holds the positive alone and `labels` is empty). Subsampling uses Keras 2's rank table, or
    with `sample`, word2vec.c's formula on the corpus counts.
    """
    vocab_size = len(counts)
    sampling_table = None
    if subsample:
        sampling_table = make_sampling_table(vocab_size) if sample is None else word2vec_keep_probabilities(
            counts, sample)
    targets, positives = skipgram_pairs(tokens, sentence_ids, window_size, sampling_table, rng)
    order = rng.permutation(len(targets))
    targets, positives = targets[order], positives[order]
    if not store_negatives:
        return Examples(targets=targets, contexts=positives[:, None], labels=np.zeros((len(targets), 0), np.int8))
    negatives = sample_negatives(rng, positives, num_ns, make_sampler(noise, counts), vocab_size)
    contexts = np.concatenate([positives[:, None], negatives], axis=1)
    labels = np.zeros(contexts.shape, dtype=np.int8)
    labels[:, 0] = 1
    return Examples(targets=targets, contexts=contexts, labels=labels)


def save_examples(examples: Examples, path: Path) -> None:
    with atomic_file(path) as tmp, tmp.open("wb") as out:
        np.savez(out, targets=examples.targets, contexts=examples.contexts, labels=examples.labels)


def load_examples_shard(path: Path) -> Examples:
    with np.load(path) as shard:
        return Examples(targets=shard["targets"], contexts=shard["contexts"], labels=shard["labels"])
