"""The compiled word2vec step (`w2vpipe.sgd`): its written-out gradients against TensorFlow's autodiff, its
draws, and the same results from the same code under TensorFlow and JAX."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from w2vpipe import sgd
from w2vpipe.tables import StepConfig

VOCAB, DIM, BATCH = 50, 8, 16


def random_tables(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return tuple(rng.normal(0, 0.5, (VOCAB, DIM)).astype(np.float32) for _ in range(2))


def autodiff_step(tables: tuple[np.ndarray, np.ndarray], loss_of) -> tuple[np.ndarray, np.ndarray]:
    """tables - rate * d(loss)/d(tables), by TensorFlow's autodiff (dense), rate folded into the loss."""
    import tensorflow as tf

    variables = [tf.Variable(table) for table in tables]
    with tf.GradientTape() as tape:
        loss = loss_of(*variables)
    gradients = tape.gradient(loss, variables)
    return tuple((variable - tf.convert_to_tensor(gradient)).numpy()
                 for variable, gradient in zip(variables, gradients, strict=True))


def summed_sigmoid_loss(logits):
    import tensorflow as tf

    labels = tf.one_hot(tf.zeros(tf.shape(logits)[0], tf.int32), logits.shape[1])
    return tf.reduce_sum(tf.nn.sigmoid_cross_entropy_with_logits(labels=labels, logits=logits))


@pytest.mark.parametrize("architecture", ["skipgram", "cbow"])
def test_the_step_is_the_summed_loss_gradient(architecture: str) -> None:
    import tensorflow as tf

    rng = np.random.default_rng(1)
    rate = 0.05
    inputs = (rng.integers(1, VOCAB, BATCH) if architecture == "skipgram"
              else np.where(rng.random((BATCH, 4)) < 0.2, 0, rng.integers(1, VOCAB, (BATCH, 4)))).astype(np.int32)
    contexts = rng.integers(1, VOCAB, (BATCH, 5)).astype(np.int32)  # repeats across rows: updates must add up
    tables = random_tables()

    def loss_of(input_table, output_table):
        vectors = tf.gather(input_table, inputs)
        if architecture == "cbow":  # word2vec.c: the mean forward, the whole error to each window word
            present = tf.cast(inputs[..., None] != 0, tf.float32)
            total = tf.reduce_sum(vectors * present, axis=1)
            mean = total / tf.maximum(tf.reduce_sum(present, axis=1), 1.0)
            vectors = tf.stop_gradient(mean) + total - tf.stop_gradient(total)
        logits = tf.einsum("bd,bcd->bc", vectors, tf.gather(output_table, contexts))
        return rate * summed_sigmoid_loss(logits)

    expected = autodiff_step(tables, loss_of)
    (input_table, output_table), loss, correct = sgd.sgd_step(tuple(map(tf.constant, tables)), tf.constant(inputs),
                                                               tf.constant(contexts), rate)
    np.testing.assert_allclose(input_table.numpy(), expected[0], atol=2e-6)
    np.testing.assert_allclose(output_table.numpy(), expected[1], atol=2e-6)
    assert float(loss) == pytest.approx(float(loss_of(*map(tf.constant, tables))) / rate, rel=1e-5)
    assert 0 <= float(correct) <= BATCH


def test_the_shared_negatives_step_is_its_weighted_loss_gradient() -> None:
    import tensorflow as tf

    rng = np.random.default_rng(2)
    rate, num_ns = 0.05, 4
    inputs = rng.integers(1, VOCAB, BATCH).astype(np.int32)
    positives = rng.integers(1, VOCAB, BATCH).astype(np.int32)
    negatives = rng.integers(1, VOCAB, 12).astype(np.int32)
    negatives[0] = positives[0]  # left out of row 0's loss
    tables = random_tables(3)
    weight = num_ns / len(negatives)

    def loss_of(input_table, output_table):
        vectors = tf.gather(input_table, inputs)
        positive = tf.reduce_sum(vectors * tf.gather(output_table, positives), axis=1)
        negative = vectors @ tf.transpose(tf.gather(output_table, negatives))
        counted = tf.cast(positives[:, None] != negatives[None, :], tf.float32) * weight
        return rate * (tf.reduce_sum(tf.nn.softplus(-positive)) + tf.reduce_sum(tf.nn.softplus(negative) * counted))

    expected = autodiff_step(tables, loss_of)
    (input_table, output_table), loss, _ = sgd.shared_negatives_step(
        tuple(map(tf.constant, tables)), tf.constant(inputs), tf.constant(positives), tf.constant(negatives), rate,
        num_ns)
    np.testing.assert_allclose(input_table.numpy(), expected[0], atol=2e-6)
    np.testing.assert_allclose(output_table.numpy(), expected[1], atol=2e-6)
    assert float(loss) == pytest.approx(float(loss_of(*map(tf.constant, tables))) / rate, rel=1e-5)


def test_negatives_follow_the_table_and_never_equal_the_true_word() -> None:
    config = StepConfig(batch_size=4096, steps_per_call=1, num_ns=4, shared_negatives=0, learning_rate=0.025,
                        total_steps=1, vocab_size=VOCAB, seed=7)
    noise_table = np.repeat(np.arange(VOCAB, dtype=np.int32), np.arange(VOCAB))  # word w in w slots
    positives = np.full((config.batch_size, 1), 10, dtype=np.int32)
    draws = np.asarray(sgd.draw_negatives(positives, noise_table, 3, config.seed, config))
    assert draws.shape == (4096, 4) and not (draws == 10).any() and not (draws == 0).any()
    shares = np.bincount(draws.ravel(), minlength=VOCAB) / draws.size
    expected = np.arange(VOCAB) / np.arange(VOCAB).sum()
    expected[11] += expected[10]  # a draw of the true word becomes the next id
    expected[10] = 0
    assert np.abs(shares - expected).max() < 0.006
    again = np.asarray(sgd.draw_negatives(positives, noise_table, 3, config.seed, config))
    other_step = np.asarray(sgd.draw_negatives(positives, noise_table, 4, config.seed, config))
    assert (draws == again).all() and (draws != other_step).mean() > 0.9


def test_the_same_code_gives_the_same_tables_under_tensorflow_and_jax(tmp_path: Path) -> None:
    """One compiled call of 8 steps, drawing its negatives, from the same tables: each backend in its own process."""
    script = textwrap.dedent(f"""
        import sys
        import numpy as np
        from w2vpipe import sgd
        from w2vpipe.tables import StepConfig
        rng = np.random.default_rng(0)
        tables = tuple(rng.normal(0, 0.5, ({VOCAB}, {DIM})).astype(np.float32) for _ in range(2))
        inputs = rng.integers(1, {VOCAB}, (8, {BATCH})).astype(np.int32)
        outputs = rng.integers(1, {VOCAB}, (8, {BATCH}, 1)).astype(np.int32)
        noise = np.repeat(np.arange({VOCAB}, dtype=np.int32), 4)
        config = StepConfig(batch_size={BATCH}, steps_per_call=8, num_ns=4, shared_negatives=0,
                            learning_rate=0.05, total_steps=100, vocab_size={VOCAB}, seed=42)
        from keras import ops
        run = sgd.train_call(config)
        tables, loss, correct = run(tuple(ops.convert_to_tensor(t) for t in tables), ops.convert_to_tensor(noise),
                                    ops.convert_to_tensor(inputs), ops.convert_to_tensor(outputs),
                                    ops.convert_to_tensor(40, "int32"))
        np.savez(sys.argv[1], *[ops.convert_to_numpy(t) for t in tables], loss=float(loss), correct=float(correct))
    """)
    results = {}
    for backend in ("tensorflow", "jax"):
        out = tmp_path / f"{backend}.npz"
        env = {**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "3"}
        subprocess.run([sys.executable, "-c", script, str(out)], env=env, check=True, capture_output=True)
        results[backend] = np.load(out)
    tensorflow, jax = results["tensorflow"], results["jax"]
    start = random_tables()
    assert not np.allclose(tensorflow["arr_1"], start[1])  # it trained
    for name in ("arr_0", "arr_1"):
        np.testing.assert_allclose(tensorflow[name], jax[name], atol=1e-5)
    assert float(tensorflow["loss"]) == pytest.approx(float(jax["loss"]), rel=1e-5)
    assert float(tensorflow["correct"]) == float(jax["correct"])
