"""Where each stage reads and writes, relative to the project root (the same paths as dvc.yaml)."""

import json
import os
from collections.abc import Callable
from functools import partial
from pathlib import Path

import numpy as np

from w2vpipe.errors import PipelineError
from w2vpipe.files import SHARD_GLOB, check_ids, mapped_arrays, shard_name
from w2vpipe.skipgrams import check_examples_shard

PARAMS_FILE = Path("params.yaml")
CORPUS_DIR = Path("data/corpus")
VECTORIZED_DIR = Path("data/vectorized")
VOCABULARY_FILE = VECTORIZED_DIR / "vocab.txt"
COUNTS_FILE = VECTORIZED_DIR / "counts.npy"
EXAMPLES_DIR = Path("data/examples")
MODEL_DIR = Path("models")
# The trained model is its two tables, as gensim keeps it: the word vectors (named after the Keras model's
# target embedding layer, which the projector config names too) and the output vectors.
EMBEDDING_NAME = "w2v_embedding"
EMBEDDING_FILE = MODEL_DIR / f"{EMBEDDING_NAME}.npy"
CONTEXT_FILE = MODEL_DIR / "context_embedding.npy"
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


def check_shards(root: Path, check_shard: Callable[[Path], int], counted: int | None, what: str, fix: str) -> None:
    """Every shard under `root` sound (`check_shard` gives its rows or raises), and as many rows in all as
    the stage that wrote them counted (`counted`, when its stats.json has it): the one check of every
    sharded input, before the work that reads it."""
    rows = sum(check_shard(shard) for shard in sorted(root.glob(SHARD_GLOB)))
    if counted is not None and rows != counted:
        raise PipelineError(f"{root} holds {rows:,} {what} but its stats.json counts {counted:,}: {fix}")


def check_example_shards(vocab_size: int, stats: dict[str, int]) -> None:
    """Every example shard sound, and as many rows as the examples stage counted (before TensorFlow loads);
    the training pairs only where the stage stored them."""
    fix = f"rebuild the examples (dvc repro -f examples) or restore them (dvc checkout {EXAMPLES_DIR})"
    stored = [(False, "pairs")] if stats.get("pairs_stored", True) else []
    for validation, total in (*stored, (True, "validation_pairs")):
        root = EXAMPLES_DIR / VALIDATION_DIR_NAME if validation else EXAMPLES_DIR
        check_shards(root, partial(check_examples_shard, vocab_size=vocab_size, fix=fix), stats.get(total),
                     "examples", fix)


def check_sentences_shard(directory: Path, vocab_size: int, fix: str) -> int:
    """The lines of a vectorized shard, once it is found sound: both files readable flat int32 arrays,
    every id inside the vocabulary, the lengths summing to the tokens. Memory-mapped: milliseconds a
    shard, so a damaged file stops a stage before it draws examples from it."""
    arrays = mapped_arrays(directory, ("tokens", "lengths"), fix)
    for name, array in arrays.items():
        if array.dtype != np.int32 or array.ndim != 1:
            raise PipelineError(f"{directory / name}.npy holds {array.dtype} of shape {array.shape}, not the flat "
                                f"int32 array the vectorize stage writes: {fix}")
    tokens, lengths = arrays["tokens"], arrays["lengths"]
    check_ids(directory / "tokens.npy", tokens, vocab_size, fix)
    if lengths.size and int(lengths.min()) < 0:
        raise PipelineError(f"{directory / 'lengths.npy'} holds negative line lengths: {fix}")
    total = int(lengths.sum(dtype=np.int64))
    if total != len(tokens):
        raise PipelineError(f"{directory / 'lengths.npy'} gives its lines {total:,} tokens but tokens.npy holds "
                            f"{len(tokens):,}: {fix}")
    return len(lengths)


def check_vectorized_shards(vocab_size: int, held_out: bool) -> None:
    """Every vectorized shard sound (the held-out lines' too, with `held_out`), as many as the vectorize
    stage made, holding as many lines as it counted: before examples are drawn from them."""
    fix = f"rebuild them (dvc repro -f vectorize) or restore them (dvc checkout {VECTORIZED_DIR})"
    stats_file = VECTORIZED_DIR / STATS_FILE_NAME
    require_input(stats_file, "vectorize")
    try:
        stats = json.loads(stats_file.read_text())
        shards, lines, held_out_lines = stats["shards"], stats["lines"], stats["validation_lines"]
    except (OSError, ValueError, KeyError) as error:
        raise PipelineError(f"{stats_file} is damaged ({error!r}): {fix}") from None
    found = sorted(path.name for path in VECTORIZED_DIR.glob(SHARD_GLOB))
    expected = [shard_name(index) for index in range(shards)]
    if found != expected:
        missing = [name for name in expected if name not in found] or ["none"]
        unexpected = [name for name in found if name not in expected] or ["none"]
        raise PipelineError(f"{VECTORIZED_DIR} does not hold the {shards} shards its stats.json counts (missing: "
                            f"{', '.join(missing[:3])}; unexpected: {', '.join(unexpected[:3])}): {fix}")
    check = partial(check_sentences_shard, vocab_size=vocab_size, fix=fix)
    check_shards(VECTORIZED_DIR, check, lines, "lines", fix)
    if held_out:
        check_shards(VECTORIZED_DIR / VALIDATION_DIR_NAME, check, held_out_lines, "held-out lines", fix)


def load_counts() -> np.ndarray:
    """Each vocabulary entry's count in the training lines (the vectorize stage's counts.npy), checked."""
    require_input(COUNTS_FILE, "vectorize")
    fix = f"rebuild it (dvc repro -f vectorize) or restore it (dvc checkout {VECTORIZED_DIR})"
    try:
        counts = np.load(COUNTS_FILE)
    except (OSError, ValueError) as error:
        raise PipelineError(f"{COUNTS_FILE} is damaged ({error}): {fix}") from None
    if counts.ndim != 1 or counts.dtype != np.int64 or len(counts) < 3 or counts.min() < 0:
        raise PipelineError(f"{COUNTS_FILE} holds {counts.dtype} of shape {counts.shape}, not the vectorize stage's "
                            f"counts (int64, one per token, none negative): {fix}")
    return counts


def load_embedding(vocabulary: list[str]) -> np.ndarray:
    """The trained embedding, checked against the vocabulary it belongs to, every value finite."""
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
    finite = np.isfinite(weights).all(axis=1)
    if not finite.all():
        raise PipelineError(f"{EMBEDDING_FILE} holds NaN or infinite values in {np.count_nonzero(~finite):,} of its "
                            f"{len(weights):,} rows: its training diverged; lower train.learning_rate and retrain "
                            "(dvc repro train)")
    return weights


def require_input(path: Path, producer: str) -> None:
    """Stop with one line naming the stage that makes `path`, when it is missing."""
    if not path.exists():
        raise PipelineError(f"{path} not found: run the {producer} stage first (dvc repro {producer})")
