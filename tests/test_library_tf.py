"""Vectorization, training and export with real TensorFlow, on small corpora."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from w2vpipe.export import write_text_files
from w2vpipe.params import TrainParams
from w2vpipe.skipgrams import Examples, make_examples, noise_probabilities
from w2vpipe.training import TrainResult, one_epoch, prefetched, train_word2vec
from w2vpipe.vocabulary import (
    Sentences,
    adapt_vectorizer,
    custom_standardization,
    iter_line_blocks,
    load_vocabulary,
    save_vocabulary,
    split_block,
    validation_mask,
    vectorize_block,
)


@pytest.fixture(scope="module")
def small_shakespeare(tmp_path_factory: pytest.TempPathFactory, shakespeare: Path) -> Path:
    corpus = tmp_path_factory.mktemp("corpus") / "small.txt"
    with shakespeare.open(encoding="utf-8") as source:
        corpus.write_text("".join(line for _, line in zip(range(3000), source, strict=False)), encoding="utf-8")
    return corpus


@pytest.fixture(scope="module")
def vectorized(small_shakespeare: Path) -> tuple[list[str], Sentences]:
    layer = adapt_vectorizer(small_shakespeare, vocab_size=500, sequence_length=10)
    (block,) = iter_line_blocks(small_shakespeare, 100_000)
    return layer.get_vocabulary(), vectorize_block(layer, block)


def test_vectorizer_standardizes_like_the_tutorial(vectorized: tuple[list[str], Sentences]) -> None:
    vocabulary, sentences = vectorized
    assert vocabulary[:2] == ["", "[UNK]"]
    assert len(vocabulary) == 500
    assert all(token == token.lower() and not any(c in token for c in ",.:;!?'") for token in vocabulary[2:])
    assert set(sentences.lengths.tolist()) == {10} and sentences.tokens.dtype == np.int32
    index = {token: i for i, token in enumerate(vocabulary)}
    # Line 1 of Shakespeare, "First Citizen:", padded to 10.
    assert sentences.tokens[:10].tolist() == [index["first"], index["citizen"]] + [0] * 8


def test_streamed_blocks_equal_the_tutorials_tf_data_pipeline(shakespeare: Path) -> None:
    import tensorflow as tf
    from keras import layers

    layer = adapt_vectorizer(shakespeare, vocab_size=4096, sequence_length=10, block_lines=5000)
    blocks = [vectorize_block(layer, block) for block in iter_line_blocks(shakespeare, 5000)]
    assert [len(block) for block in blocks] == [5000] * 6 + [2777]  # 32,777 lines, the tutorial's count
    text_ds = tf.data.TextLineDataset(str(shakespeare)).filter(lambda x: tf.cast(tf.strings.length(x), bool))
    reference = layers.TextVectorization(standardize=custom_standardization, max_tokens=4096, output_mode="int",
                                         output_sequence_length=10)
    reference.adapt(text_ds.batch(1024))
    assert layer.get_vocabulary() == reference.get_vocabulary()
    expected = np.concatenate(list(text_ds.batch(1024).map(reference).as_numpy_iterator()))
    np.testing.assert_array_equal(np.concatenate([block.tokens for block in blocks]), expected.reshape(-1))


def test_full_sentence_mode_keeps_whole_lines(small_shakespeare: Path) -> None:
    layer = adapt_vectorizer(small_shakespeare, vocab_size=500, sequence_length=None)
    lines = ["Before we proceed any further, hear me speak.", "All:"]
    sentences = vectorize_block(layer, lines)
    assert sentences.lengths.tolist() == [8, 1]
    assert 0 not in sentences.tokens and len(sentences.tokens) == 9  # no padding


def test_the_next_epochs_first_shard_is_drawn_while_this_epoch_trains_its_last() -> None:
    next_epoch_started = threading.Event()

    def shards() -> Iterator[list[int]]:  # two epochs of two shards of 3 blocks
        for epoch in range(2):
            for shard in range(2):
                if (epoch, shard) == (1, 0):
                    next_epoch_started.set()
                yield [epoch] * 3

    ahead = prefetched(shards())
    epoch = one_epoch(ahead, blocks=6)
    assert next(epoch) == [0] * 3
    assert next(epoch) == [0] * 3  # the epoch's last shard: training on it, nothing more asked for yet
    assert next_epoch_started.wait(timeout=10)
    assert list(epoch) == []
    assert list(one_epoch(ahead, blocks=6)) == [[1] * 3] * 2


def test_held_out_lines_are_spread_evenly_whatever_the_block_size() -> None:
    whole = validation_mask(0, 1000, 0.05)
    assert whole.sum() == 50 and np.diff(np.flatnonzero(whole)).tolist() == [20] * 49
    in_blocks = np.concatenate([validation_mask(start, 300, 0.05) for start in range(0, 1200, 300)])[:1000]
    np.testing.assert_array_equal(in_blocks, whole)
    assert not validation_mask(0, 1000, 0.0).any()
    training, held_out = split_block([f"line {i}" for i in range(40)], 0, 0.05)
    assert held_out == ["line 19", "line 39"] and len(training) == 38


def test_held_out_lines_take_no_part_in_the_vocabulary(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("".join(f"unseen{i}\n" if i % 2 else "common words here\n" for i in range(40)))
    layer = adapt_vectorizer(corpus, vocab_size=100, sequence_length=None, validation_fraction=0.5)
    assert layer.get_vocabulary() == ["", "[UNK]", "words", "here", "common"]  # odd lines are held out


def test_vocabulary_file_round_trips(vectorized: tuple[list[str], Sentences], tmp_path: Path) -> None:
    vocabulary, _ = vectorized
    save_vocabulary(vocabulary, tmp_path / "vocab.txt")
    assert load_vocabulary(tmp_path / "vocab.txt") == vocabulary
    assert (tmp_path / "vocab.txt").read_text().splitlines()[:3] == ["", "[UNK]", "the"]


def examples_for(vectorized: tuple[list[str], Sentences], store_negatives: bool,
                 subsample: bool = True) -> tuple[Examples, np.ndarray]:
    vocabulary, sentences = vectorized
    counts = np.bincount(sentences.tokens, minlength=len(vocabulary))
    counts[0] = 0
    examples = make_examples(sentences.tokens, sentences.lengths, 2, 4, counts, np.random.default_rng(0),
                             subsample=subsample, store_negatives=store_negatives)
    return examples, counts


def test_training_is_reproducible_and_learns(vectorized: tuple[list[str], Sentences], tmp_path: Path) -> None:
    examples, counts = examples_for(vectorized, store_negatives=True)
    halves = [Examples(examples.inputs[:5000], examples.outputs[:5000]),
              Examples(examples.inputs[5000:], examples.outputs[5000:])]
    params = TrainParams(embedding_dim=16, batch_size=256, epochs=3, optimizer="adam", learning_rate=0.01)
    seen: list[tuple[int, dict[str, float]]] = []
    first = train_word2vec(halves, len(examples), len(counts), params, num_ns=4, tensorboard_dir=tmp_path / "tb",
                           on_epoch_end=lambda epoch, logs: seen.append((epoch, logs)), verbose=0)
    second = train_word2vec(halves, len(examples), len(counts), params, num_ns=4, verbose=0)
    assert [epoch for epoch, _ in seen] == [0, 1, 2]
    assert first.history["loss"][-1] < first.history["loss"][0]
    assert first.history["accuracy"][-1] > 0.2  # chance is 1 in 5
    weights = first.tables[0]
    np.testing.assert_array_equal(weights, second.tables[0])
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    curves = EventAccumulator(str(tmp_path / "tb" / "train")).Reload()
    assert [event.step for event in curves.Scalars("epoch_loss")] == [0, 1, 2]
    assert [event.value for event in curves.Scalars("epoch_loss")] == pytest.approx(first.history["loss"])

    # The Keras model again from the two tables, as the README shows: its scores are the tables' dot products.
    from w2vpipe.model import build_word2vec

    model = build_word2vec(*weights.shape, num_contexts=5, tables=first.tables)
    words, contexts = examples.inputs[:8], examples.outputs[:8]
    expected = np.einsum("bd,bcd->bc", first.tables[0][words], first.tables[1][contexts])
    np.testing.assert_allclose(np.asarray(model((words, contexts))), expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("noise", ["log_uniform", "unigram"])
def test_negatives_drawn_per_batch_with_sparse_sgd_learn(vectorized: tuple[list[str], Sentences],
                                                         noise: str) -> None:
    examples, counts = examples_for(vectorized, store_negatives=False, subsample=False)
    assert examples.outputs.shape[1] == 1
    params = TrainParams(embedding_dim=16, batch_size=256, epochs=3, optimizer="sgd")
    result = train_word2vec([examples], len(examples), len(counts), params, num_ns=4,
                            noise=noise_probabilities(noise, counts), verbose=0)
    assert result.history["loss"][-1] < result.history["loss"][0]
    assert result.history["accuracy"][-1] > 0.35  # the positive outscores 4 drawn negatives (chance: 0.2)


class SimulatedKillError(Exception):
    pass


@pytest.mark.parametrize("latest_cut_short", [False, True])
def test_a_training_killed_mid_way_resumes_to_the_same_weights(vectorized: tuple[list[str], Sentences],
                                                                tmp_path: Path, latest_cut_short: bool) -> None:
    """The default recipe (per-batch negatives, decaying SGD): epochs 0-1 finish, the process "dies" in
    epoch 1's hook; the rerun trains epochs 2-3 only, to the weights of an unbroken training. With the
    last checkpoint damaged, the one before it is used: epochs 1-3 are trained again."""
    examples, counts = examples_for(vectorized, store_negatives=False)
    halves = [Examples(examples.inputs[:3000], examples.outputs[:3000]),
              Examples(examples.inputs[3000:], examples.outputs[3000:])]
    params = TrainParams(embedding_dim=16, batch_size=256, epochs=4, optimizer="sgd")
    noise = noise_probabilities("unigram", counts)

    def train(**options: object) -> TrainResult:
        return train_word2vec(halves, len(examples), len(counts), params, num_ns=4, noise=noise, verbose=0,
                              **options)  # type: ignore[arg-type]

    def die_after_epoch_1(epoch: int, logs: dict[str, float]) -> None:
        if epoch == 1:
            raise SimulatedKillError

    unbroken = train()
    with pytest.raises(SimulatedKillError):
        train(checkpoint_dir=tmp_path, on_epoch_end=die_after_epoch_1)
    assert sorted(path.name for path in tmp_path.glob("tables-*")) == ["tables-000001", "tables-000002"]
    if latest_cut_short:
        latest = tmp_path / "tables-000002" / "target.npy"
        latest.write_bytes(latest.read_bytes()[:1000])
    seen: list[int] = []
    resumed = train(checkpoint_dir=tmp_path, on_epoch_end=lambda epoch, logs: seen.append(epoch))
    first = 1 if latest_cut_short else 2
    assert resumed.first_epoch == first and seen == list(range(first, 4))
    np.testing.assert_array_equal(resumed.tables[0], unbroken.tables[0])
    assert resumed.history == unbroken.history  # all four epochs, the first two from the checkpoint
    assert not list(tmp_path.glob("tables-*"))  # removed once the training ends


def test_a_damaged_checkpoint_is_dropped_with_a_warning(vectorized: tuple[list[str], Sentences], tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    examples, counts = examples_for(vectorized, store_negatives=True)
    params = TrainParams(embedding_dim=16, batch_size=256, epochs=1, optimizer="adam", learning_rate=0.01)
    backup = tmp_path / "backup"
    backup.mkdir()
    (backup / "training_metadata.json").write_text('{"epoch": 1, "batch": 0}')
    (backup / "latest.weights.h5").write_bytes(b"cut short by a kill")
    result = train_word2vec([examples], len(examples), len(counts), params, num_ns=4, verbose=0,
                            checkpoint_dir=tmp_path)
    assert result.first_epoch == 0 and len(result.history["loss"]) == 1
    assert "is damaged" in capsys.readouterr().out


def test_drawn_negatives_follow_the_noise_distribution() -> None:
    from w2vpipe.model import Word2Vec

    model = Word2Vec(vocab_size=6, embedding_dim=2, num_ns=3, seed=1)
    probabilities = np.array([0.0, 0.5, 0.25, 0.125, 0.125, 0.0])
    model.set_noise(probabilities)
    draws = np.asarray(model.draw_negatives(np.zeros((20_000, 1), dtype="int32"))).reshape(-1)
    observed = np.bincount(draws, minlength=6) / len(draws)
    np.testing.assert_allclose(observed, probabilities, atol=0.01)


def test_the_noise_table_made_in_chunks_lays_each_word_out_in_proportion() -> None:
    from w2vpipe.tables import NOISE_TABLE_CHUNK, noise_table

    counts = np.random.default_rng(0).integers(1, 1000, size=600_000).astype(np.float64)
    probabilities = counts / counts.sum()
    table = noise_table(probabilities)
    assert len(table) > 2 * NOISE_TABLE_CHUNK  # more than one chunk, and a part-chunk at the end
    # Each word's slots are its share of the table, to within one slot (the quantile rule), in word order.
    slots = np.bincount(table, minlength=len(counts))
    assert np.abs(slots - probabilities * len(table)).max() <= 1 and (np.diff(table) >= 0).all()


def test_a_negative_equal_to_the_true_word_is_replaced_by_a_word_never_padding() -> None:
    from w2vpipe.model import Word2Vec

    model = Word2Vec(vocab_size=6, embedding_dim=2, num_ns=3, seed=1)
    model.set_noise(np.array([0.0, 0.0, 0.0, 0.0, 0.0, 1.0]))  # every draw is the last word...
    negatives = np.asarray(model.negatives_for(np.full((1000, 1), 5, dtype="int32")))
    assert (negatives == 1).all()  # ...the true word of every row: replaced, and never by padding (0)
    negatives = np.asarray(model.negatives_for(np.full((1000, 1), 2, dtype="int32")))
    assert (negatives == 5).all()  # a draw unequal to the true word stays


def test_projector_files_load_in_tensorboards_projector(tmp_path: Path) -> None:
    from google.protobuf import text_format
    from tensorboard.plugins.projector import projector_config_pb2, projector_plugin

    vocabulary = ["", "[UNK]", "the", "and"]
    weights = np.random.default_rng(0).normal(size=(4, 3)).astype(np.float32)
    write_text_files(tmp_path, vocabulary, weights, tensor_name="w2v_embedding")
    config = text_format.Parse((tmp_path / "projector_config.pbtxt").read_text(),
                               projector_config_pb2.ProjectorConfig())
    (embedding,) = config.embeddings
    assert embedding.tensor_name == "w2v_embedding"
    tensor = projector_plugin._read_tensor_tsv_file(str(tmp_path / embedding.tensor_path))
    np.testing.assert_allclose(tensor, weights[1:], rtol=1e-6)
    assert (tmp_path / embedding.metadata_path).read_text().splitlines() == ["[UNK]", "the", "and"]
    # The tutorial's own format: str() of each float32, tab-separated.
    assert (tmp_path / "vectors.tsv").read_text().splitlines()[0] == "\t".join(str(x) for x in weights[1])


def test_projector_files_hold_the_most_frequent_words_when_bounded(tmp_path: Path) -> None:
    vocabulary = ["", "[UNK]", "the", "and", "of"]
    weights = np.random.default_rng(0).normal(size=(5, 3)).astype(np.float32)
    write_text_files(tmp_path, vocabulary, weights, tensor_name="w2v_embedding", words=2)
    assert (tmp_path / "metadata.tsv").read_text().splitlines() == ["[UNK]", "the"]
    rows = (tmp_path / "vectors.tsv").read_text().splitlines()
    assert rows == ["\t".join(str(x) for x in row) for row in weights[1:3]]
