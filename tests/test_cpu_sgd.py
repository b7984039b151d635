"""The CPU cores' training step (`w2vpipe.cpu_sgd`): the keras.ops step's results (`w2vpipe.sgd`, compiled by
XLA) on skip-gram, CBOW and stored negatives, and the same bytes on one core as on two at a vocabulary of
10^5 words."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numba
import numpy as np
import pytest
from keras import ops

from w2vpipe import cpu_sgd, sgd
from conftest import REPO_ROOT
from w2vpipe.tables import StepConfig, noise_table

STEPS, BATCH, NUM_NS = 6, 64, 5


def zipf_words(rng: np.random.Generator, vocab: int, shape: tuple[int, ...]) -> np.ndarray:
    """Word ids 1..vocab-1, Zipf-distributed as in text: frequent words repeat within a batch."""
    probabilities = 1.0 / np.arange(1, vocab)
    return (rng.choice(vocab - 1, size=shape, p=probabilities / probabilities.sum()) + 1).astype(np.int32)


def setting(vocab: int, dim: int, seed: int = 0) -> tuple[tuple[np.ndarray, np.ndarray], np.ndarray]:
    rng = np.random.default_rng(seed)
    tables = (rng.normal(0, 0.3, (vocab, dim)).astype(np.float32), rng.normal(0, 0.3, (vocab, dim)).astype(np.float32))
    weights = 1.0 / np.arange(1, vocab) ** 0.75
    noise = noise_table(np.concatenate([[0.0], weights / weights.sum()])).astype(np.int32)
    return tables, noise


def keras_ops_steps(tables, noise, inputs, outputs, num_ns: int, vocab: int, first_step: int = 3):
    config = StepConfig(batch_size=inputs.shape[1], steps_per_call=inputs.shape[0], num_ns=num_ns,
                        shared_negatives=0, learning_rate=0.05, total_steps=40, vocab_size=vocab, seed=7)
    (trained_in, trained_out), loss, correct = sgd.train_call(config)(
        tuple(ops.convert_to_tensor(table) for table in tables), ops.convert_to_tensor(noise),
        ops.convert_to_tensor(inputs), ops.convert_to_tensor(outputs), first_step)
    return (ops.convert_to_numpy(trained_in), ops.convert_to_numpy(trained_out)), float(loss), float(correct)


def cpu_steps(tables, noise, inputs, outputs, num_ns: int, cores: int, first_step: int = 3,
              kernel=cpu_sgd.train_steps):
    trained = tuple(table.copy() for table in tables)
    numba.set_num_threads(cores)
    loss, correct = kernel(trained[0], trained[1], noise, inputs, outputs, first_step, 0.05, 40, 7, num_ns)
    return trained, loss, correct


@pytest.mark.parametrize("kind", ["skipgram", "cbow", "stored"])
def test_cpu_steps_equal_the_keras_ops_steps(kind: str) -> None:
    vocab, dim = 300, 24
    tables, noise = setting(vocab, dim)
    rng = np.random.default_rng(1)
    inputs = zipf_words(rng, vocab, (STEPS, BATCH))
    outputs = zipf_words(rng, vocab, (STEPS, BATCH, 1))
    num_ns = NUM_NS
    if kind == "cbow":
        inputs = zipf_words(rng, vocab, (STEPS, BATCH, 4))
        inputs[:, ::3, 2:] = 0  # short windows: padding takes no update
    if kind == "stored":
        outputs = np.concatenate([outputs, zipf_words(rng, vocab, (STEPS, BATCH, 4))], axis=2)
        num_ns = 0
    expected, expected_loss, expected_correct = keras_ops_steps(tables, noise, inputs, outputs, num_ns, vocab)
    trained, loss, correct = cpu_steps(tables, noise, inputs, outputs, num_ns, cores=2)
    for table, want, start in zip(trained, expected, tables, strict=True):
        assert np.abs(want - start).max() > 0.01  # the steps moved the tables: the comparison means something
        np.testing.assert_allclose(table, want, atol=2e-5)
    assert loss == pytest.approx(expected_loss, rel=1e-5)
    assert abs(correct - expected_correct) <= 1  # a tie of two logits may break the other way


def test_one_core_and_two_give_the_same_bytes_at_a_large_vocabulary() -> None:
    vocab, dim = 120_000, 32
    tables, noise = setting(vocab, dim, seed=3)
    rng = np.random.default_rng(4)
    inputs, outputs = zipf_words(rng, vocab, (STEPS, 512)), zipf_words(rng, vocab, (STEPS, 512, 1))
    one, loss_one, correct_one = cpu_steps(tables, noise, inputs, outputs, NUM_NS, cores=1)
    two, loss_two, correct_two = cpu_steps(tables, noise, inputs, outputs, NUM_NS, cores=2)
    moved = np.flatnonzero(np.any(one[1] != tables[1], axis=1))
    assert len(moved) > 1000  # thousands of rows, in every group of rows that cores take
    assert set(moved % cpu_sgd.PARTS) == set(range(cpu_sgd.PARTS))
    for table_one, table_two in zip(one, two, strict=True):
        assert table_one.tobytes() == table_two.tobytes()
    assert (loss_one, correct_one) == (loss_two, correct_two)


def word2vec_c_steps(tables, inputs, outputs, first_step: int = 3):
    """word2vec.c's loop in plain numpy, float32, one row at a time: each context's output vector moves as soon
    as it is scored, the input vectors (skip-gram's word, CBOW's window) after all their contexts. `outputs`
    hold every context, true word first; the rate as `sgd.learning_rate_at` gives it."""
    input_table, output_table = (table.copy() for table in tables)
    loss = 0.0
    for s in range(inputs.shape[0]):
        rate = np.float32(float(sgd.learning_rate_at(first_step + s, 0.05, 40.0)))
        for row in range(inputs.shape[1]):
            words = np.atleast_1d(inputs[s, row])
            words = words[words != 0]
            vector = input_table[words].mean(axis=0)
            update = np.zeros_like(vector)
            for c, context in enumerate(outputs[s, row]):
                logit = float(vector @ output_table[context])
                probability = 1.0 / (1.0 + np.exp(-logit))
                loss -= np.log(probability if c == 0 else 1.0 - probability)
                error = np.float32(((1.0 if c == 0 else 0.0) - probability) * rate)
                update += error * output_table[context]
                output_table[context] += error * vector
            for word in words:
                input_table[word] += update
    return (input_table, output_table), loss


def drawn_negatives(noise, outputs, num_ns: int, vocab: int, first_step: int = 3) -> np.ndarray:
    """Each row's true word and the negatives the steps draw for it (`sgd.draw_negatives`), as stored ones."""
    steps, batch = outputs.shape[:2]
    config = StepConfig(batch_size=batch, steps_per_call=steps, num_ns=num_ns, shared_negatives=0,
                        learning_rate=0.05, total_steps=40, vocab_size=vocab, seed=7)
    return np.stack([np.concatenate([outputs[s], ops.convert_to_numpy(sgd.draw_negatives(
        ops.convert_to_tensor(outputs[s]), ops.convert_to_tensor(noise), first_step + s, 7, config))], axis=1)
        for s in range(steps)])


def hogwild_steps(tables, noise, inputs, outputs, num_ns: int, cores: int):
    return cpu_steps(tables, noise, inputs, outputs, num_ns, cores, kernel=cpu_sgd.train_steps_hogwild)


@pytest.mark.parametrize("kind", ["skipgram", "cbow", "stored"])
def test_hogwild_on_one_core_is_word2vec_c_row_by_row(kind: str) -> None:
    vocab, dim = 300, 24
    tables, noise = setting(vocab, dim)
    rng = np.random.default_rng(1)
    inputs = zipf_words(rng, vocab, (STEPS, BATCH, 4) if kind == "cbow" else (STEPS, BATCH))
    if kind == "cbow":
        inputs[:, ::3, 2:] = 0  # short windows: padding takes no update
    outputs = zipf_words(rng, vocab, (STEPS, BATCH, 1))
    num_ns = NUM_NS
    if kind == "stored":
        outputs, num_ns = np.concatenate([outputs, zipf_words(rng, vocab, (STEPS, BATCH, 4))], axis=2), 0
    every_context = drawn_negatives(noise, outputs, num_ns, vocab) if num_ns else outputs
    expected, expected_loss = word2vec_c_steps(tables, inputs, every_context)
    summed, _, _ = cpu_steps(tables, noise, inputs, outputs, num_ns, cores=1)
    trained, loss, _ = hogwild_steps(tables, noise, inputs, outputs, num_ns, cores=1)
    for table, want, batch_step in zip(trained, expected, summed, strict=True):
        np.testing.assert_allclose(table, want, atol=2e-5)
        assert np.abs(want - batch_step).max() > 0.01  # another order than the batch's summed step
    assert loss == pytest.approx(expected_loss, rel=1e-4)


def test_hogwild_on_two_cores_trains_as_one_core_does() -> None:
    """Two cores update the shared tables unlocked: every row is trained once (a row left out or taken twice
    moves the summed loss by ~1/3000), and the tables differ from one core's (rows in batch order) only where
    the cores' orders of updates to the same frequent rows differ (~4-12% of the movement, measured)."""
    vocab, dim = 120_000, 32
    tables, noise = setting(vocab, dim, seed=3)
    rng = np.random.default_rng(4)
    inputs, outputs = zipf_words(rng, vocab, (STEPS, 512)), zipf_words(rng, vocab, (STEPS, 512, 1))
    one, loss_one, correct_one = hogwild_steps(tables, noise, inputs, outputs, NUM_NS, cores=1)
    two, loss_two, correct_two = hogwild_steps(tables, noise, inputs, outputs, NUM_NS, cores=2)
    for table_one, table_two, start in zip(one, two, tables, strict=True):
        moved = np.abs(table_one - start).sum()
        assert moved > 100
        assert np.abs(table_two - table_one).sum() < 0.25 * moved
    assert loss_two == pytest.approx(loss_one, rel=1e-3)
    assert correct_two == pytest.approx(correct_one, rel=0.05)


def test_held_out_scores_equal_the_keras_ops_ones() -> None:
    vocab, dim = 300, 24
    tables, _ = setting(vocab, dim)
    rng = np.random.default_rng(5)
    inputs, outputs = zipf_words(rng, vocab, (3, BATCH)), zipf_words(rng, vocab, (3, BATCH, 5))
    expected = sgd.evaluate_call(3)(tuple(ops.convert_to_tensor(table) for table in tables),
                                    ops.convert_to_tensor(inputs), ops.convert_to_tensor(outputs))
    loss, correct = cpu_sgd.evaluate_call(3)(tables, inputs, outputs)
    assert loss == pytest.approx(float(expected[0]), rel=1e-5)
    assert abs(correct - float(expected[1])) <= 1


def test_negatives_shared_per_batch_keep_the_keras_ops_loop() -> None:
    from w2vpipe import distributed

    assert isinstance(distributed.placement(None, "jax", 1), distributed.HostCores)
    assert not isinstance(distributed.placement(None, "jax", 1, shared_negatives=True), distributed.HostCores)
    config = StepConfig(batch_size=8, steps_per_call=1, num_ns=4, shared_negatives=8, learning_rate=0.05,
                        total_steps=1, vocab_size=100, seed=0)
    with pytest.raises(ValueError, match="keras.ops loop"):
        cpu_sgd.train_call(config, 1)


@pytest.mark.parametrize(("xla_flags", "expected"), [("", "HostCores, jax not imported"),
                                                      ("--xla_force_host_platform_device_count=2",
                                                       "DataParallel, jax imported")])
def test_the_cpu_loop_is_chosen_without_importing_jax_where_jax_has_only_the_cpu(xla_flags: str,
                                                                                 expected: str) -> None:
    """No accelerator plugin and no forced host devices: JAX can only have the CPU, so the train stage does not
    import it to ask; with forced host devices it must."""
    script = ("import sys; from w2vpipe import distributed; placement = distributed.placement(None, 'jax'); "
              "print(type(placement).__name__ + ', jax ' + ('imported' if 'jax' in sys.modules else 'not imported'))")
    env = {**os.environ, "XLA_FLAGS": xla_flags, "PYTHONPATH": str(REPO_ROOT / "src")}
    result = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True)
    assert result.stdout.strip() == expected


def test_a_copy_of_the_checkout_loads_the_compiled_kernel(tmp_path: Path) -> None:
    """`dvc exp run --temp` and Prefect runs train in a copy of the checkout at another path: the compiled
    kernel is found by its source's content, not compiled again (~10 s)."""
    script = ("import sys, numpy as np; sys.path.insert(0, sys.argv[1]); from w2vpipe import cpu_sgd; "
              "t = np.zeros((50, 8), np.float32); "
              "cpu_sgd.train_steps(t, t.copy(), np.ones(9, np.int32), np.ones((1, 4), np.int32), "
              "np.ones((1, 4, 1), np.int32), 0, 0.025, 10, 1, 2)")
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path / "cache"), "NUMBA_DEBUG_CACHE": "1"}
    outputs = []
    for copy in ("first", "second"):
        shutil.copytree(REPO_ROOT / "src", tmp_path / copy, ignore=shutil.ignore_patterns("__pycache__"))
        result = subprocess.run([sys.executable, "-c", script, str(tmp_path / copy)], env=env, capture_output=True,
                                text=True, timeout=300)
        assert result.returncode == 0, result.stderr[-2000:]
        outputs.append(result.stdout + result.stderr)
    assert "data saved to" in outputs[0] and "cpu_sgd.train_steps" in outputs[0]
    loaded = [line for line in outputs[1].splitlines() if "data loaded from" in line and "train_steps" in line]
    assert loaded, outputs[1][-2000:]
    assert not [line for line in outputs[1].splitlines() if "data saved to" in line and "train_steps" in line]


def test_cores_wait_for_a_step_asleep_not_spinning() -> None:
    """The train stage's own imports, then a step: numba's OpenMP threads run with the passive wait policy
    (a spinning core would take the CPU from the thread drawing the next shard's examples)."""
    script = ("import ctypes, numpy as np, numba; import pipeline.stages.train; from w2vpipe import cpu_sgd; "
              "t = np.zeros((50, 8), np.float32); "
              "cpu_sgd.train_steps(t, t.copy(), np.ones(9, np.int32), np.ones((1, 4), np.int32), "
              "np.ones((1, 4, 1), np.int32), 0, 0.025, 10, 1, 2); "
              "print(numba.threading_layer(), flush=True); "
              "gomp = [line.split()[-1] for line in open('/proc/self/maps') if '/libgomp' in line "
              "and 'scikit_learn' not in line]; "
              "gomp and ctypes.CDLL(gomp[0]).omp_display_env(1)")
    env = {key: value for key, value in os.environ.items() if key not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    result = subprocess.run([sys.executable, "-c", script], cwd=REPO_ROOT, env=env, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    if result.stdout.split()[-1] != "omp":
        pytest.skip(f"numba runs its {result.stdout.split()[-1]} threading layer here, not OpenMP's")
    # libgomp shows an unset policy as PASSIVE too; the spin count tells them apart (300,000 rounds unset).
    assert "GOMP_SPINCOUNT = '0'" in result.stderr, result.stderr[-2000:]


@pytest.mark.skipif(not {"avx2", "fma"} <= set(Path("/proc/cpuinfo").read_text().split()),
                    reason="the code target is pinned on x86-64 machines with AVX2 and FMA")
@pytest.mark.parametrize("before", ["", "import numba\n"], ids=["w2vpipe first", "numba imported first"])
def test_the_compiled_code_is_haswells_on_every_avx2_machine(before: str) -> None:
    # numba adds the host's features to a named CPU unless told otherwise: on an AVX-512 machine, 512-bit vectors
    # (zmm registers) would sum in another order than elsewhere, and the tables would differ in their last bits.
    script = (before + "import w2vpipe.cpu_sgd, numba, numpy as np\n"
              "from numba.core import config\n"
              "@numba.njit(fastmath=True)\n"
              "def dot(a, b):\n"
              "    total = 0.0\n"
              "    for i in range(a.size):\n"
              "        total += a[i] * b[i]\n"
              "    return total\n"
              "ones = np.ones(300, np.float32)\n"
              "dot(ones, ones)\n"
              "print(config.CPU_NAME, repr(config.CPU_FEATURES), 'zmm' in dot.inspect_asm(dot.signatures[0]))\n")
    env = {key: value for key, value in os.environ.items() if not key.startswith("NUMBA_CPU")}
    result = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["haswell", "''", "False"]


@pytest.mark.skipif(not {"avx2", "fma"} <= set(Path("/proc/cpuinfo").read_text().split()),
                    reason="the code target is pinned on x86-64 machines with AVX2 and FMA")
def test_numba_code_compiled_before_the_pin_is_refused_with_the_fix() -> None:
    script = "import numba\nnumba.njit(lambda x: x + 1)(1)\nimport w2vpipe.cpu_sgd\n"
    env = {key: value for key, value in os.environ.items() if not key.startswith("NUMBA_CPU")}
    result = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    assert result.stderr.splitlines()[-1].startswith("ImportError: numba compiled code for this machine's CPU before")
    assert "NUMBA_CPU_NAME=haswell" in result.stderr
