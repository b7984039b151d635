"""Vectorization, training and export with real TensorFlow, on a small corpus."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from w2vpipe.export import write_projector_files
from w2vpipe.params import TrainParams
from w2vpipe.skipgrams import make_examples
from w2vpipe.training import train_word2vec
from w2vpipe.vocabulary import (
    adapt_vectorizer,
    custom_standardization,
    load_vocabulary,
    read_nonempty_lines,
    save_vocabulary,
    vectorize_lines,
)


@pytest.fixture(scope="module")
def vectorized(tmp_path_factory: pytest.TempPathFactory, shakespeare: Path) -> tuple[list[str], np.ndarray]:
    corpus = tmp_path_factory.mktemp("corpus") / "small.txt"
    with shakespeare.open(encoding="utf-8") as source:
        corpus.write_text("".join(line for _, line in zip(range(3000), source, strict=False)), encoding="utf-8")
    lines = read_nonempty_lines(corpus)
    layer = adapt_vectorizer(lines, vocab_size=500, sequence_length=10)
    return layer.get_vocabulary(), vectorize_lines(layer, lines)


def test_vectorizer_standardizes_like_the_tutorial(vectorized: tuple[list[str], np.ndarray]) -> None:
    vocabulary, sequences = vectorized
    assert vocabulary[:2] == ["", "[UNK]"]
    assert len(vocabulary) == 500
    assert all(token == token.lower() and not any(c in token for c in ",.:;!?'") for token in vocabulary[2:])
    assert sequences.shape[1] == 10 and sequences.dtype == np.int32
    index = {token: i for i, token in enumerate(vocabulary)}
    # Line 1 of Shakespeare, "First Citizen:", padded to 10.
    assert sequences[0].tolist() == [index["first"], index["citizen"]] + [0] * 8


def test_in_memory_vectorization_equals_the_tutorials_tf_data_pipeline(shakespeare: Path) -> None:
    import tensorflow as tf
    from keras import layers

    lines = read_nonempty_lines(shakespeare)
    assert len(lines) == 32777  # the tutorial's count
    layer = adapt_vectorizer(lines, vocab_size=4096, sequence_length=10)
    text_ds = tf.data.TextLineDataset(str(shakespeare)).filter(lambda x: tf.cast(tf.strings.length(x), bool))
    reference = layers.TextVectorization(standardize=custom_standardization, max_tokens=4096, output_mode="int",
                                         output_sequence_length=10)
    reference.adapt(text_ds.batch(1024))
    assert layer.get_vocabulary() == reference.get_vocabulary()
    expected = np.concatenate(list(text_ds.batch(1024).map(reference).as_numpy_iterator()))
    np.testing.assert_array_equal(vectorize_lines(layer, lines), expected)


def test_vocabulary_file_round_trips(vectorized: tuple[list[str], np.ndarray], tmp_path: Path) -> None:
    vocabulary, _ = vectorized
    save_vocabulary(vocabulary, tmp_path / "vocab.txt")
    assert load_vocabulary(tmp_path / "vocab.txt") == vocabulary
    assert (tmp_path / "vocab.txt").read_text().splitlines()[:3] == ["", "[UNK]", "the"]


def test_training_is_reproducible_and_learns(vectorized: tuple[list[str], np.ndarray], tmp_path: Path) -> None:
    vocabulary, sequences = vectorized
    examples = make_examples(sequences, 2, 4, len(vocabulary), np.random.default_rng([42, 0]))
    params = TrainParams(embedding_dim=16, batch_size=256, epochs=3, learning_rate=0.01)
    seen: list[tuple[int, dict[str, float]]] = []
    first = train_word2vec(examples, len(vocabulary), params, tensorboard_dir=tmp_path / "tb",
                           on_epoch_end=lambda epoch, logs: seen.append((epoch, logs)), verbose=0)
    second = train_word2vec(examples, len(vocabulary), params, verbose=0)
    assert [epoch for epoch, _ in seen] == [0, 1, 2]
    assert first.history["loss"][-1] < first.history["loss"][0]
    assert first.history["accuracy"][-1] > 0.2  # chance is 1 in 5
    weights = np.asarray(first.model.target_embedding.embeddings)
    np.testing.assert_array_equal(weights, np.asarray(second.model.target_embedding.embeddings))
    assert any((tmp_path / "tb").rglob("events.out.tfevents.*"))

    import keras

    first.model.save(tmp_path / "model.keras")
    reloaded = keras.saving.load_model(tmp_path / "model.keras")
    np.testing.assert_array_equal(np.asarray(reloaded.get_layer("w2v_embedding").embeddings), weights)


def test_projector_files_load_in_tensorboards_projector(tmp_path: Path) -> None:
    from google.protobuf import text_format
    from tensorboard.plugins.projector import projector_config_pb2, projector_plugin

    vocabulary = ["", "[UNK]", "the", "and"]
    weights = np.random.default_rng(0).normal(size=(4, 3)).astype(np.float32)
    write_projector_files(tmp_path, vocabulary, weights, tensor_name="w2v_embedding")
    config = text_format.Parse((tmp_path / "projector_config.pbtxt").read_text(),
                               projector_config_pb2.ProjectorConfig())
    (embedding,) = config.embeddings
    assert embedding.tensor_name == "w2v_embedding"
    tensor = projector_plugin._read_tensor_tsv_file(str(tmp_path / embedding.tensor_path))
    np.testing.assert_allclose(tensor, weights[1:], rtol=1e-6)
    assert (tmp_path / embedding.metadata_path).read_text().splitlines() == ["[UNK]", "the", "and"]
    # The tutorial's own format: str() of each float32, tab-separated.
    assert (tmp_path / "vectors.tsv").read_text().splitlines()[0] == "\t".join(str(x) for x in weights[1])
