"""Where each stage reads and writes, relative to the project root (the same paths as dvc.yaml)."""

import os
from pathlib import Path

import numpy as np

from w2vpipe.errors import PipelineError
from w2vpipe.files import SHARD_GLOB, shard_name
from w2vpipe.skipgrams import check_examples_shard

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
# The pipeline's own state, under the project root and outside DVC's outputs (which DVC deletes before a
# stage runs), git-ignored: training checkpoints, and tracking that waits for its MLflow store.
STATE_DIR = Path(".w2v")
CHECKPOINTS_DIR = STATE_DIR / "checkpoints"
OUTBOX_DIR = STATE_DIR / "outbox"
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


def check_example_shards(vocab_size: int, stats: dict[str, int]) -> None:
    """Every example shard sound, and as many rows as the examples stage counted (before TensorFlow loads)."""
    fix = f"rebuild the examples (dvc repro -f examples) or restore them (dvc checkout {EXAMPLES_DIR})"
    for validation, total in ((False, "pairs"), (True, "validation_pairs")):
        root = EXAMPLES_DIR / VALIDATION_DIR_NAME if validation else EXAMPLES_DIR
        rows = sum(check_examples_shard(shard, vocab_size, fix) for shard in sorted(root.glob(SHARD_GLOB)))
        if rows != stats.get(total, rows):
            raise PipelineError(f"{root} holds {rows:,} examples but its stats.json counts {stats[total]:,}: {fix}")


def load_embedding(vocabulary: list[str]) -> np.ndarray:
    """The trained embedding, checked against the vocabulary it belongs to."""
    require_input(EMBEDDING_FILE, "train")
    try:
        weights = np.load(EMBEDDING_FILE)
    except (OSError, ValueError) as error:
        raise PipelineError(f"{EMBEDDING_FILE} is damaged ({error}): retrain (dvc repro -f train) or restore it "
                            f"(dvc checkout {MODEL_DIR})") from None
    if weights.ndim != 2 or len(weights) != len(vocabulary):
        raise PipelineError(f"{EMBEDDING_FILE} has {len(weights):,} rows but {VOCABULARY_FILE} has "
                            f"{len(vocabulary):,} tokens: they come from different runs; restore both (dvc checkout) "
                            "or retrain (dvc repro -f train)")
    return weights


def require_input(path: Path, producer: str) -> None:
    """Stop with one line naming the stage that makes `path`, when it is missing."""
    if not path.exists():
        raise PipelineError(f"{path} not found: run the {producer} stage first (dvc repro {producer})")
