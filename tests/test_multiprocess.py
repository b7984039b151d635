"""Data-parallel training over two processes on 127.0.0.1 (JAX's multi-process runtime), over two devices
of one process, against one process on the CPU's cores (`w2vpipe.cpu_sgd`); and one core against two."""

from __future__ import annotations

import csv
import hashlib
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from conftest import REPO_ROOT, free_port, tool_env

EPOCHS = 3


def set_params(root: Path, values: dict[str, object]) -> None:
    params = yaml.safe_load((root / "params.yaml").read_text())
    for key, value in values.items():
        section, _, name = key.partition(".")
        params[section][name] = value
    (root / "params.yaml").write_text(yaml.safe_dump(params))


def pipeline(root: Path, command: str, **env: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "pipeline", command], cwd=root, text=True, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, env=tool_env(PYTHONPATH=str(REPO_ROOT), **env))


def finished(process: subprocess.Popen[str]) -> str:
    output, _ = process.communicate(timeout=600)
    assert process.returncode == 0, output[-3000:]
    return output


@pytest.fixture(scope="module")
def examples_made(tmp_path_factory: pytest.TempPathFactory, shakespeare: Path) -> Path:
    root = tmp_path_factory.mktemp("multiprocess")
    shutil.copy(REPO_ROOT / "params.yaml", root / "params.yaml")
    with shakespeare.open(encoding="utf-8") as source:
        (root / "small.txt").write_text("".join(line for _, line in zip(range(4000), source, strict=False)))
    set_params(root, {"corpus.url": str(root / "small.txt"), "corpus.sha256": None, "vectorize.vocab_size": 1000,
                      "train.backend": "jax", "train.epochs": EPOCHS, "train.batch_size": 256,
                      "train.embedding_dim": 32})
    for name in ("download", "vectorize", "examples"):
        finished(pipeline(root, name))
    return root


def history(root: Path) -> dict[str, list[float]]:
    with (root / "metrics" / "train_history.csv").open() as rows:
        table = list(csv.DictReader(rows))
    return {name: [float(row[name]) for row in table] for name in table[0]}


@pytest.fixture(scope="module")
def alone(examples_made: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = shutil.copytree(examples_made, tmp_path_factory.mktemp("alone") / "project")
    (root / "train-output.txt").write_text(finished(pipeline(root, "train")))
    return root


def assert_trains_as_alone(root: Path, alone: Path) -> np.ndarray:
    embedding = np.load(root / "models" / "w2v_embedding.npy")
    single = np.load(alone / "models" / "w2v_embedding.npy")
    assert embedding.shape == single.shape == (1000, 32)
    # It learns: the loss falls epoch by epoch, as alone.
    losses = history(root)["loss"]
    assert len(losses) == EPOCHS and losses[0] > losses[-1]
    # The same global batches, draws and start as one device: the same training, up to the order of sums.
    np.testing.assert_allclose(embedding, single, atol=1e-3)
    np.testing.assert_allclose(losses, history(alone)["loss"], rtol=1e-4)
    return embedding


def test_two_processes_train_as_one_on_the_same_global_batches(examples_made: Path, alone: Path,
                                                               tmp_path: Path) -> None:
    group = shutil.copytree(examples_made, tmp_path / "group")
    address = f"127.0.0.1:{free_port()}"
    processes = [pipeline(group, "train", W2V_COORDINATOR=address, W2V_PROCESS_COUNT="2", W2V_PROCESS_ID=str(index))
                 for index in (1, 0)]
    worker_output, leader_output = (finished(process) for process in processes)
    embedding = assert_trains_as_alone(group, alone)
    # Both processes end with the same tables (process 1 reports its hash; process 0 wrote the file).
    reported = re.search(r"process 1 of 2: .* on 2 devices, .*sha256 ([0-9a-f]{64})", worker_output)
    assert reported, worker_output[-2000:]
    assert reported.group(1) == hashlib.sha256(embedding.tobytes()).hexdigest()
    assert " on 2 devices of 2 processes" in leader_output


def test_one_process_spreads_its_batches_over_its_devices(examples_made: Path, alone: Path, tmp_path: Path) -> None:
    """Two CPU devices stand in for a machine's GPUs."""
    two_devices = shutil.copytree(examples_made, tmp_path / "two-devices")
    output = finished(pipeline(two_devices, "train", XLA_FLAGS="--xla_force_host_platform_device_count=2"))
    assert " on 2 devices" in output
    assert_trains_as_alone(two_devices, alone)


def test_one_core_trains_the_same_bytes_as_all_cores(examples_made: Path, alone: Path, tmp_path: Path) -> None:
    """Each table row is one core's to update, in batch order: the core count changes the speed, not the model."""
    root = shutil.copytree(examples_made, tmp_path / "one-core")
    set_params(root, {"train.cores": 1})
    output = finished(pipeline(root, "train"))
    assert " CPU cores" not in output
    assert " CPU cores" in (alone / "train-output.txt").read_text()  # all of them: 2 or more
    embedding = np.load(root / "models" / "w2v_embedding.npy")
    assert embedding.tobytes() == np.load(alone / "models" / "w2v_embedding.npy").tobytes()
    assert history(root) == history(alone)


def test_hogwild_updates_train_on_the_cores_and_nowhere_else(examples_made: Path, alone: Path, tmp_path: Path) -> None:
    """train.updates hogwild: word2vec.c's row-by-row loop, another model than the batch step's that learns as
    well; refused, in one line and before training, where it cannot run (JAX's devices, adam)."""
    root = shutil.copytree(examples_made, tmp_path / "hogwild")
    set_params(root, {"train.updates": "hogwild"})
    output = finished(pipeline(root, "train", XLA_FLAGS=""))
    assert "CPU cores (hogwild updates)" in output
    assert np.load(root / "models" / "w2v_embedding.npy").tobytes() != np.load(
        alone / "models" / "w2v_embedding.npy").tobytes()
    losses, batch_losses = history(root)["loss"], history(alone)["loss"]
    assert losses[0] > losses[-1]
    np.testing.assert_allclose(losses, batch_losses, rtol=0.05)
    for env, values, message in (
            ({"XLA_FLAGS": "--xla_force_host_platform_device_count=2"}, {},
             "train.updates hogwild trains on this machine's CPU cores, but this run trains on JAX's devices"),
            ({}, {"train.optimizer": "adam"}, "not train.optimizer adam: set train.updates: batch")):
        set_params(root, {"train.optimizer": "sgd", **values})
        process = pipeline(root, "train", **env)
        refused, _ = process.communicate(timeout=600)
        assert process.returncode != 0
        assert message in refused, refused[-2000:]
        assert "Epoch 1/" not in refused
