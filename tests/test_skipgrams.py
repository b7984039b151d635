"""The skip-gram semantics, pinned against Keras 2 (tf_keras) and the tutorial's printed values."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from w2vpipe.skipgrams import (
    cbow_windows,
    drop_words,
    make_examples,
    make_sampler,
    make_sampling_table,
    sample_log_uniform,
    sample_negatives,
    skipgram_pairs,
    unigram_probabilities,
    word2vec_keep_probabilities,
)

# "The wide road shimmered in the hot sun", vectorized as in the tutorial.
TUTORIAL_SEQUENCE = np.array([1, 2, 3, 4, 5, 1, 6, 7])


def pairs_multiset(targets: np.ndarray, contexts: np.ndarray) -> Counter:
    return Counter(zip(targets.tolist(), contexts.tolist(), strict=True))


def test_tutorial_sentence_gives_keras2_pairs() -> None:
    from tf_keras.preprocessing.sequence import skipgrams

    reference, _ = skipgrams(TUTORIAL_SEQUENCE.tolist(), vocabulary_size=8, window_size=2, negative_samples=0)
    targets, contexts = skipgram_pairs(TUTORIAL_SEQUENCE, [8], window_size=2)
    assert len(targets) == 26
    assert pairs_multiset(targets, contexts) == Counter(map(tuple, reference))


@pytest.mark.parametrize("window_size", [1, 3, 5])
def test_padded_sentences_match_keras2_sentence_by_sentence(window_size: int) -> None:
    from tf_keras.preprocessing.sequence import skipgrams

    rng = np.random.default_rng(0)
    sequences = rng.integers(1, 50, size=(40, 10))
    lengths = rng.integers(0, 11, size=40)
    sequences[np.arange(10)[None, :] >= lengths[:, None]] = 0  # pad like TextVectorization
    expected: Counter = Counter()
    for row in sequences.tolist():
        couples, _ = skipgrams(row, vocabulary_size=50, window_size=window_size, negative_samples=0)
        expected.update(map(tuple, couples))
    targets, contexts = skipgram_pairs(sequences.reshape(-1), np.full(40, 10), window_size)
    assert pairs_multiset(targets, contexts) == expected


@pytest.mark.parametrize("window_size", [1, 2, 4])
def test_whole_lines_of_any_length_match_keras2_line_by_line(window_size: int) -> None:
    from tf_keras.preprocessing.sequence import skipgrams

    rng = np.random.default_rng(window_size)
    lengths = rng.integers(0, 15, size=60)
    lines = [rng.integers(1, 50, size=length) for length in lengths]
    expected: Counter = Counter()
    for line in lines:
        couples, _ = skipgrams(line.tolist(), vocabulary_size=50, window_size=window_size, negative_samples=0)
        expected.update(map(tuple, couples))
    targets, contexts = skipgram_pairs(np.concatenate(lines), lengths, window_size)
    assert pairs_multiset(targets, contexts) == expected


def test_sampling_table_matches_keras2_and_the_tutorial() -> None:
    from tf_keras.preprocessing.sequence import make_sampling_table as keras2_table

    printed = [0.00315225, 0.00315225, 0.00547597, 0.00741556, 0.00912817, 0.01068435,
               0.01212381, 0.01347162, 0.01474487, 0.0159558]
    np.testing.assert_allclose(make_sampling_table(10), printed, rtol=1e-6)
    for size in (10, 4096, 100_000):
        np.testing.assert_allclose(make_sampling_table(size), keras2_table(size), rtol=1e-12)


def test_subsampling_keeps_targets_at_the_table_rate() -> None:
    tokens = np.full(200_000, 5)
    tokens[1::2] = 9  # no pair is ever padding
    table = np.zeros(10)
    table[5], table[9] = 0.25, 1.0
    targets, _ = skipgram_pairs(tokens, [len(tokens)], 1, table, np.random.default_rng(1))
    kept_fives = np.count_nonzero(targets == 5) / 2 / 100_000  # each kept 5 has two neighbours
    assert kept_fives == pytest.approx(0.25, abs=0.01)
    assert np.count_nonzero(targets == 9) == 2 * 100_000 - 1  # never dropped; the last has one neighbour


def test_word2vec_subsampling_matches_gensims_formula() -> None:
    counts = np.array([0, 50_000, 5_000, 500, 5])
    keep = word2vec_keep_probabilities(counts, sample=1e-3)
    threshold = 1e-3 * counts.sum()
    for word in (1, 2):  # gensim's Word2Vec.prepare_vocab: (sqrt(v / t) + 1) * t / v
        assert keep[word] == pytest.approx((np.sqrt(counts[word] / threshold) + 1) * threshold / counts[word])
    assert keep[4] == 1.0  # rare words are always kept
    assert keep[0] == 1.0
    assert keep[1] < keep[2] < keep[3] < 1.0


def test_make_examples_drops_each_word_at_word2vecs_rate() -> None:
    """word2vec.c's subsampling through `make_examples`: words dropped before windowing, each word
    kept at its `word2vec_keep_probabilities` rate (a kept word is the target of two pairs)."""
    rng = np.random.default_rng(3)
    tokens = rng.choice([1, 2, 3], size=300_000, p=[0.6, 0.3, 0.1]) + 1  # ids 2..4: no padding, no [UNK]
    counts = np.bincount(tokens, minlength=5)
    examples = make_examples(tokens, np.array([len(tokens)]), 1, 4, counts, np.random.default_rng(0), sample=1e-3,
                             noise="unigram", store_negatives=False, drop_before_windowing=True)
    keep = word2vec_keep_probabilities(counts, sample=1e-3)
    for word in (2, 3, 4):
        kept = np.count_nonzero(examples.inputs == word) / 2 / counts[word]
        assert kept == pytest.approx(keep[word], rel=0.03), word
    assert keep[2] < keep[3] < keep[4] < 1.0  # the test means something: all three are subsampled, unequally


def test_log_uniform_draws_follow_tensorflows_distribution() -> None:
    range_max = 50
    draws = sample_log_uniform(np.random.default_rng(3), 400_000, range_max)
    assert draws.min() >= 0 and draws.max() < range_max
    k = np.arange(range_max)
    expected = np.log((k + 2) / (k + 1)) / np.log(range_max + 1)
    observed = np.bincount(draws, minlength=range_max) / len(draws)
    np.testing.assert_allclose(observed, expected / expected.sum(), atol=0.003)


@pytest.mark.parametrize("noise", ["log_uniform", "unigram"])
@pytest.mark.parametrize(("num_ns", "range_max"), [(4, 4096), (4, 6), (15, 20)])
def test_negatives_are_unique_in_range_and_never_the_positive(num_ns: int, range_max: int, noise: str) -> None:
    rng = np.random.default_rng(7)
    counts = np.arange(range_max, 0, -1) ** 2
    counts[0] = 0  # padding never occurs in the corpus
    positives = sample_log_uniform(rng, 20_000, range_max)
    negatives = sample_negatives(rng, positives, num_ns, make_sampler(noise, counts), range_max)
    assert negatives.shape == (20_000, num_ns)
    assert negatives.min() >= 0 and negatives.max() < range_max
    rows = np.sort(np.concatenate([positives[:, None], negatives], axis=1), axis=1)
    assert not (rows[:, 1:] == rows[:, :-1]).any()


def test_unigram_noise_follows_counts_to_the_three_quarters() -> None:
    counts = np.array([0, 1000, 100, 10, 1])
    draws = make_sampler("unigram", counts)(np.random.default_rng(5), 500_000)
    observed = np.bincount(draws, minlength=5) / len(draws)
    expected = counts**0.75 / (counts**0.75).sum()
    np.testing.assert_allclose(observed, expected, atol=0.003)
    np.testing.assert_allclose(unigram_probabilities(counts), expected)
    assert observed[0] == 0  # padding is never drawn


def test_examples_depend_only_on_the_seed() -> None:
    tokens = np.random.default_rng(0).integers(0, 100, size=5000)
    lengths = np.full(500, 10)
    counts = np.ones(100, dtype=np.int64)

    def examples(seed: int):
        return make_examples(tokens, lengths, 2, 4, counts, np.random.default_rng([seed, 0]))

    first, again, other = examples(42), examples(42), examples(43)
    np.testing.assert_array_equal(first.outputs, again.outputs)
    np.testing.assert_array_equal(first.inputs, again.inputs)
    assert not np.array_equal(first.outputs[:100], other.outputs[:100])
    assert first.outputs.shape == (len(first), 5)


def test_per_batch_mode_stores_positives_only() -> None:
    tokens = np.random.default_rng(0).integers(1, 100, size=5000)
    lengths = np.full(500, 10)
    counts = np.ones(100, dtype=np.int64)
    stored = make_examples(tokens, lengths, 2, 4, counts, np.random.default_rng(1), subsample=False)
    positives = make_examples(tokens, lengths, 2, 4, counts, np.random.default_rng(1), subsample=False,
                              store_negatives=False)
    np.testing.assert_array_equal(positives.inputs, stored.inputs)
    np.testing.assert_array_equal(positives.outputs[:, 0], stored.outputs[:, 0])
    assert positives.outputs.shape == (len(stored), 1)


def test_cbow_windows_hold_each_words_neighbours_within_its_sentence() -> None:
    # Two sentences, "1 2 3 4" and "5 6", end to end; a padded line "7 0 0" whose word has no neighbour.
    windows, words = cbow_windows(np.array([1, 2, 3, 4, 5, 6, 7, 0, 0]), np.array([4, 2, 3]), window_size=2)
    assert words.tolist() == [1, 2, 3, 4, 5, 6]  # 7 has no neighbour, padding is never a word
    assert windows.tolist() == [[0, 0, 2, 3], [0, 1, 3, 4], [1, 2, 4, 0], [2, 3, 0, 0], [0, 0, 6, 0], [0, 5, 0, 0]]


def test_cbow_examples_pair_every_window_with_the_skipgram_pairs_of_its_word() -> None:
    rng = np.random.default_rng(4)
    lengths = rng.integers(1, 12, size=200)
    tokens = rng.integers(1, 60, size=lengths.sum())
    windows, words = cbow_windows(tokens, lengths, window_size=3)
    targets, contexts = skipgram_pairs(tokens, lengths, window_size=3)
    # Every (word, window word) of CBOW is a skip-gram pair, and every pair is in some window.
    from_windows = Counter((word, other) for word, window in zip(words.tolist(), windows.tolist(), strict=True)
                           for other in window if other)
    assert from_windows == pairs_multiset(targets, contexts)
    counts = np.ones(60, dtype=np.int64)
    examples = make_examples(tokens, lengths, 3, 4, counts, np.random.default_rng(0), subsample=False,
                             architecture="cbow")
    assert examples.inputs.shape == (len(words), 6) and examples.outputs.shape == (len(words), 5)
    np.testing.assert_array_equal(examples.outputs[:, 0], words)
    assert not (examples.outputs[:, 1:] == examples.outputs[:, :1]).any()


def test_dropped_words_close_up_so_windows_reach_past_them() -> None:
    # "5 1 6 7" and "0 8": [UNK] (1) and padding go; 7 is dropped by subsampling (keep probability 0).
    keep = np.ones(10)
    keep[7] = 0.0
    tokens, lengths = drop_words(np.array([5, 1, 6, 7, 0, 8]), np.array([4, 2]), keep, np.random.default_rng(0))
    assert tokens.tolist() == [5, 6, 8] and lengths.tolist() == [2, 1]
    targets, contexts = skipgram_pairs(tokens, lengths, window_size=1)
    assert pairs_multiset(targets, contexts) == Counter({(5, 6): 1, (6, 5): 1})  # 5 and 6 are now neighbours


def test_dynamic_window_shrinks_each_targets_reach_at_random() -> None:
    tokens = np.arange(1, 20_001)
    targets, contexts = skipgram_pairs(tokens, [len(tokens)], 4, rng=np.random.default_rng(2), dynamic_window=True)
    distance = np.abs(targets - contexts)
    assert distance.max() == 4
    # Reach r in 1..4, uniform: a context at distance d is paired with probability (5 - d) / 4.
    shares = np.bincount(distance, minlength=5)[1:] / len(tokens) / 2
    np.testing.assert_allclose(shares, [1.0, 0.75, 0.5, 0.25], atol=0.02)
    windows, _ = cbow_windows(tokens, [len(tokens)], 4, rng=np.random.default_rng(2), dynamic_window=True)
    assert ((windows != 0).sum(axis=1) % 2 == 0).mean() > 0.99  # both sides reach alike, but at the ends
