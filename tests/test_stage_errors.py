"""Bad input fails fast, in one line naming the problem and the fix, and leaves no artifact."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from conftest import REPO_ROOT, free_port, tool_env


def stage(workdir: Path, name: str) -> subprocess.CompletedProcess[str]:
    env = tool_env(PYTHONPATH=str(REPO_ROOT))
    return subprocess.run([sys.executable, "-m", "pipeline", name], cwd=workdir, env=env, capture_output=True,
                          text=True, timeout=300)


def one_line_error(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    # Exactly one line: TensorFlow's start-up noise (absl's CUDA probe...) is filtered too.
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    shutil.copy(REPO_ROOT / "params.yaml", tmp_path / "params.yaml")
    return tmp_path


def set_params(workdir: Path, **values: object) -> None:
    params = yaml.safe_load((workdir / "params.yaml").read_text())
    for key, value in values.items():
        section, _, name = key.partition("__")
        params[section][name] = value
    (workdir / "params.yaml").write_text(yaml.safe_dump(params))


@pytest.mark.parametrize(
    ("name", "missing"),
    [("vectorize", "data/corpus/shakespeare.txt"), ("examples", "data/vectorized/counts.npy"),
     ("train", "data/vectorized/counts.npy"), ("export", "data/vectorized/vocab.txt")],
)
def test_stage_before_its_inputs_says_which_stage_to_run(workdir: Path, name: str, missing: str) -> None:
    line = one_line_error(stage(workdir, name))
    assert f"{missing} not found: run the" in line and "dvc repro" in line
    assert not (workdir / "data").exists() or not any((workdir / "data").rglob("*.*"))
    assert not (workdir / "models").exists() and not (workdir / "exports").exists()


def test_out_of_range_param_stops_the_first_stage(workdir: Path) -> None:
    set_params(workdir, train__epochs=0)
    line = one_line_error(stage(workdir, "download"))
    assert "train.epochs=0 is invalid: it must be at least 1" in line
    assert not (workdir / "data").exists()


def test_checksum_mismatch_leaves_no_corpus(workdir: Path) -> None:
    set_params(workdir, corpus__sha256="f" * 64)
    line = one_line_error(stage(workdir, "download"))
    assert "checksum mismatch" in line
    assert not list(workdir.glob("data/**/*.txt"))


def test_num_ns_beyond_the_corpus_vocabulary_fails_before_sampling(workdir: Path) -> None:
    (workdir / "tiny.txt").write_text("a b c\nb c a\n")
    set_params(workdir, corpus__url=str(workdir / "tiny.txt"), corpus__sha256=None, examples__num_ns=6)
    assert stage(workdir, "download").returncode == 0
    assert stage(workdir, "vectorize").returncode == 0
    line = one_line_error(stage(workdir, "examples"))
    assert "examples.num_ns=6 needs a larger vocabulary than the corpus gave (5 tokens)" in line
    assert not (workdir / "data" / "examples").exists()


def test_too_few_pairs_for_a_batch_fails_before_training(workdir: Path) -> None:
    (workdir / "tiny.txt").write_text("the quick brown fox jumps over the lazy dog\n" * 20)
    set_params(workdir, corpus__url=str(workdir / "tiny.txt"), corpus__sha256=None, examples__subsample=False)
    for name in ("download", "vectorize", "examples"):
        assert stage(workdir, name).returncode == 0
    line = one_line_error(stage(workdir, "train"))
    assert "fewer than train.batch_size=1024: lower train.batch_size" in line
    assert not (workdir / "models").exists()


def test_unreachable_tracking_server_fails_before_training(workdir: Path) -> None:
    (workdir / "tiny.txt").write_text("the quick brown fox jumps over the lazy dog\n" * 20)
    set_params(workdir, corpus__url=str(workdir / "tiny.txt"), corpus__sha256=None, examples__subsample=False,
               train__batch_size=16)
    for name in ("download", "vectorize", "examples"):
        assert stage(workdir, name).returncode == 0
    # MLflow's client alone retries for minutes (259 s measured); the stage asks once, in seconds.
    env = tool_env(PYTHONPATH=str(REPO_ROOT), MLFLOW_TRACKING_URI=f"http://127.0.0.1:{free_port()}")
    result = subprocess.run([sys.executable, "-m", "pipeline", "train"], cwd=workdir, env=env,
                            capture_output=True, text=True, timeout=120)
    line = one_line_error(result)
    assert "MLflow tracking server http://127.0.0.1:" in line and "does not answer" in line
    assert "unset MLFLOW_TRACKING_URI" in line
    assert "Epoch 1/" not in result.stdout  # it stopped before training
    assert not (workdir / "models").exists()


@pytest.fixture(scope="module")
def examples_made(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny corpus through download, vectorize and examples: sound shards to damage."""
    root = tmp_path_factory.mktemp("examples-made")
    shutil.copy(REPO_ROOT / "params.yaml", root / "params.yaml")
    (root / "tiny.txt").write_text("the quick brown fox jumps over the lazy dog\n" * 40)
    set_params(root, corpus__url=str(root / "tiny.txt"), corpus__sha256=None, examples__subsample=False,
               train__batch_size=16, vectorize__validation_fraction=0.0)
    for name in ("download", "vectorize", "examples"):
        assert stage(root, name).returncode == 0
    return root


def half_ids_out_of_range(path: Path) -> None:
    array = np.load(path)
    array[: len(array) // 2] = 10**6
    np.save(path, array)


def first_half_only(path: Path) -> None:
    array = np.load(path)
    np.save(path, array[: len(array) // 2])


def cut_mid_file(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


@pytest.mark.parametrize(("damage", "message"), [
    (half_ids_out_of_range, "holds ids outside the vocabulary of"),
    (first_half_only, "input rows but"),
    (cut_mid_file, "is missing or damaged"),
])
def test_damaged_example_shards_stop_training_before_tensorflow_loads(
        examples_made: Path, tmp_path: Path, damage: Any, message: str) -> None:
    workdir = tmp_path / "project"
    shutil.copytree(examples_made, workdir)
    damage(workdir / "data" / "examples" / "shard-00000" / "outputs.npy")
    result = stage(workdir, "train")
    line = one_line_error(result)
    assert "data/examples/shard-00000" in line and message in line and "dvc repro -f examples" in line
    assert "Epoch" not in result.stdout and not (workdir / "mlflow.db").exists()  # no training, no run


def test_a_shard_missing_from_the_count_is_caught(examples_made: Path, tmp_path: Path) -> None:
    workdir = tmp_path / "project"
    shutil.copytree(examples_made, workdir)
    stats_file = workdir / "data" / "examples" / "stats.json"
    stats = json.loads(stats_file.read_text())
    stats_file.write_text(json.dumps({**stats, "pairs": stats["pairs"] + 7}))
    line = one_line_error(stage(workdir, "train"))
    assert "examples but its stats.json counts" in line


def test_a_vocabulary_that_does_not_match_the_embedding_stops_export(examples_made: Path, tmp_path: Path) -> None:
    workdir = tmp_path / "project"
    shutil.copytree(examples_made, workdir)
    vocabulary = (workdir / "data" / "vectorized" / "vocab.txt").read_text().splitlines(keepends=True)
    (workdir / "models").mkdir()
    np.save(workdir / "models" / "w2v_embedding.npy", np.zeros((len(vocabulary), 8), np.float32))
    (workdir / "data" / "vectorized" / "vocab.txt").write_text("".join(vocabulary[:5]))
    line = one_line_error(stage(workdir, "export"))
    assert f"has {len(vocabulary)} rows but data/vectorized/vocab.txt has 5 tokens" in line
    assert not (workdir / "exports").exists()


def test_killed_trainings_leave_no_running_mlflow_run_and_no_temporaries(examples_made: Path,
                                                                         tmp_path: Path) -> None:
    from mlflow import MlflowClient

    workdir = tmp_path / "project"
    shutil.copytree(examples_made, workdir)
    set_params(workdir, train__epochs=500)
    env = tool_env(PYTHONPATH=str(REPO_ROOT), PYTHONUNBUFFERED="1")

    def train_until_epoch_3() -> subprocess.Popen[str]:
        process = subprocess.Popen([sys.executable, "-m", "pipeline", "train"], cwd=workdir, env=env,
                                   stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        assert process.stdout is not None
        for line in process.stdout:
            if line.startswith("Epoch 3/"):
                return process
        raise AssertionError(f"training ended before epoch 3 ({process.wait()})")

    def statuses() -> list[str]:
        client = MlflowClient(tracking_uri=f"sqlite:///{workdir / 'mlflow.db'}")
        runs = client.search_runs([client.get_experiment_by_name("word2vec").experiment_id],
                                  order_by=["attributes.start_time ASC"])
        return [run.info.status for run in runs]

    stopped = train_until_epoch_3()
    stopped.terminate()  # SIGTERM: unwinds, the run ends KILLED at once
    assert stopped.wait(timeout=120) == 128 + 15
    killed = train_until_epoch_3()
    killed.kill()  # kill -9: nothing runs, the run stays RUNNING and the temporary folder stays
    killed.wait(timeout=60)
    assert statuses() == ["KILLED", "RUNNING"] and list(workdir.glob(".models.*.tmp"))
    set_params(workdir, train__epochs=1)
    assert stage(workdir, "train").returncode == 0  # the next training cleans up after the dead one
    assert statuses() == ["KILLED", "KILLED", "FINISHED"]
    assert not list(workdir.glob(".models.*.tmp")) and (workdir / "models" / "w2v_embedding.npy").is_file()
