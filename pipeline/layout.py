"""Where each stage reads and writes, relative to the project root (the same paths as dvc.yaml)."""

import os
from pathlib import Path

from w2vpipe.errors import PipelineError
from w2vpipe.files import shard_name

PARAMS_FILE = Path("params.yaml")
CORPUS_DIR = Path("data/corpus")
VECTORIZED_DIR = Path("data/vectorized")
VOCABULARY_FILE = VECTORIZED_DIR / "vocab.txt"
COUNTS_FILE = VECTORIZED_DIR / "counts.npy"
EXAMPLES_DIR = Path("data/examples")
MODEL_DIR = Path("models")
MODEL_FILE = MODEL_DIR / "word2vec.keras"
# Named after the model's target embedding layer, which the projector config names too.
EMBEDDING_NAME = "w2v_embedding"
EMBEDDING_FILE = MODEL_DIR / f"{EMBEDDING_NAME}.npy"
# Outside DVC's outputs (their event files carry the time and host, so they are never the same twice),
# one folder per run, as TensorBoard compares them: `tensorboard --logdir logs/tensorboard`.
TENSORBOARD_DIR = Path("logs/tensorboard")
METRICS_DIR = Path("metrics")
TRAIN_METRICS_FILE = METRICS_DIR / "train.json"
TRAIN_HISTORY_FILE = METRICS_DIR / "train_history.csv"
EVALUATE_METRICS_FILE = METRICS_DIR / "evaluate.json"
NEIGHBOURS_FILE = METRICS_DIR / "neighbours.json"
EXPORT_DIR = Path("exports")
STATS_FILE_NAME = "stats.json"
# Held-out lines, and their examples: a subfolder of shards beside the training shards.
VALIDATION_DIR_NAME = "validation"
STAGES = ("download", "vectorize", "examples", "train", "export", "evaluate")


def project_root() -> Path:
    """The project's checkout: where its MLflow store and logs live, also when a DVC experiment runs the
    stages in a temporary copy (DVC then names the checkout in DVC_ROOT)."""
    return Path(os.environ.get("DVC_ROOT") or Path.cwd()).resolve()


def shard_dir(root: Path, index: int, validation: bool = False) -> Path:
    """Where shard `index` of a sharded output lives (its held-out lines' shard, with `validation`)."""
    return root / (VALIDATION_DIR_NAME if validation else "") / shard_name(index)


def require_input(path: Path, producer: str) -> None:
    """Stop with one line naming the stage that makes `path`, when it is missing."""
    if not path.exists():
        raise PipelineError(f"{path} not found: run the {producer} stage first (dvc repro {producer})")
