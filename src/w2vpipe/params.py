"""The pipeline's knobs: `params.yaml` read, checked and flattened.

Every stage validates all params before doing any work, so a typo in `train` fails the
`download` stage at once instead of after minutes of preprocessing.
"""

from __future__ import annotations

import dataclasses
import difflib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from w2vpipe.errors import PipelineError

TUTORIAL_CORPUS_URL = "https://storage.googleapis.com/download.tensorflow.org/data/shakespeare.txt"


@dataclass(frozen=True)
class CorpusParams:
    url: str = TUTORIAL_CORPUS_URL
    sha256: str | None = None


ARCHITECTURES = ("skipgram", "cbow")
NEGATIVE_MODES = ("stored", "per_batch")
NOISE_DISTRIBUTIONS = ("log_uniform", "unigram")
OPTIMIZERS = ("adam", "sgd")
INITIALIZERS = ("word2vec", "keras")
DEFAULT_LEARNING_RATES = {"adam": 0.001, "sgd": 0.025}


@dataclass(frozen=True)
class VectorizeParams:
    vocab_size: int = 4096
    sequence_length: int | None = 10
    shard_lines: int = 100_000
    validation_fraction: float = 0.0


@dataclass(frozen=True)
class ExamplesParams:
    window_size: int = 2
    num_ns: int = 4
    negatives: str = "stored"
    noise: str = "log_uniform"
    subsample: bool = True
    sample: float | None = None
    drop_before_windowing: bool = False
    dynamic_window: bool = False
    redraw_each_epoch: bool = False
    seed: int = 42
    workers: int = 0


@dataclass(frozen=True)
class TrainParams:
    architecture: str = "skipgram"
    embedding_dim: int = 128
    batch_size: int = 1024
    epochs: int = 20
    optimizer: str = "adam"
    learning_rate: float | None = None
    scale_learning_rate: bool = False
    mixed_precision: bool = False
    initializer: str = "keras"
    seed: int = 42

    @property
    def effective_learning_rate(self) -> float:
        """The learning rate used: the optimizer's default unless set, times batch_size / 1024 if scaled."""
        base = self.learning_rate if self.learning_rate is not None else DEFAULT_LEARNING_RATES[self.optimizer]
        return base * self.batch_size / 1024 if self.scale_learning_rate else base


DEFAULT_PROBE_WORDS = ("king", "queen", "love", "death", "sword", "night", "father")


@dataclass(frozen=True)
class EvaluateParams:
    probe_words: list[str] = field(default_factory=lambda: list(DEFAULT_PROBE_WORDS))
    neighbours: int = 10


@dataclass(frozen=True)
class Params:
    corpus: CorpusParams = field(default_factory=CorpusParams)
    vectorize: VectorizeParams = field(default_factory=VectorizeParams)
    examples: ExamplesParams = field(default_factory=ExamplesParams)
    train: TrainParams = field(default_factory=TrainParams)
    evaluate: EvaluateParams = field(default_factory=EvaluateParams)


def _bad(key: str, value: Any, rule: str) -> PipelineError:
    return PipelineError(f"param {key}={value!r} is invalid: {rule}; fix it in params.yaml or with --set {key}=...")


def _check_type(key: str, value: Any, annotation: str) -> Any:
    optional = "None" in annotation
    if value is None:
        if optional:
            return None
        raise _bad(key, value, "it must be set")
    if annotation.startswith("list"):
        if not isinstance(value, list) or not all(isinstance(item, str) and item.strip() for item in value):
            raise _bad(key, value, "it must be a list of words, e.g. [king, queen]")
    elif "int" in annotation and "float" not in annotation:
        if isinstance(value, bool) or not isinstance(value, int):
            raise _bad(key, value, "it must be a whole number")
    elif "float" in annotation:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise _bad(key, value, "it must be a number")
        value = float(value)
    elif "bool" in annotation:
        if not isinstance(value, bool):
            raise _bad(key, value, "it must be true or false")
    elif "str" in annotation and not isinstance(value, str):
        raise _bad(key, value, "it must be a string")
    return value


def _unknown(key: str, known: list[str]) -> PipelineError:
    close = difflib.get_close_matches(key, known, n=1)
    hint = f"did you mean {close[0]!r}?" if close else f"known keys: {', '.join(known)}"
    return PipelineError(f"unknown param {key!r} in params.yaml: {hint}")


def _build_section(name: str, cls: type, raw: Any) -> Any:
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise PipelineError(f"params.yaml section {name!r} must be a mapping of key: value")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    values = {}
    for key, value in raw.items():
        if key not in fields:
            raise _unknown(f"{name}.{key}", [f"{name}.{k}" for k in fields])
        values[key] = _check_type(f"{name}.{key}", value, str(fields[key].type))
    return cls(**values)


def _check_ranges(params: Params) -> None:
    checks = [
        ("corpus.url", params.corpus.url, bool(params.corpus.url.strip()), "it must not be empty"),
        (
            "corpus.sha256",
            params.corpus.sha256,
            params.corpus.sha256 is None or re.fullmatch(r"[0-9a-fA-F]{64}", params.corpus.sha256) is not None,
            "it must be 64 hex digits, or null to skip the check",
        ),
        ("vectorize.vocab_size", params.vectorize.vocab_size, params.vectorize.vocab_size >= 3,
         "it must be at least 3 (padding, [UNK] and one word)"),
        ("vectorize.sequence_length", params.vectorize.sequence_length,
         params.vectorize.sequence_length is None or params.vectorize.sequence_length >= 2,
         "it must be at least 2, or null to keep whole lines"),
        ("vectorize.shard_lines", params.vectorize.shard_lines, params.vectorize.shard_lines >= 1,
         "it must be positive"),
        ("vectorize.validation_fraction", params.vectorize.validation_fraction,
         0 <= params.vectorize.validation_fraction <= 0.5, "it must be between 0 (no held-out lines) and 0.5"),
        ("examples.window_size", params.examples.window_size, params.examples.window_size >= 1,
         "it must be at least 1"),
        ("examples.num_ns", params.examples.num_ns, 1 <= params.examples.num_ns < params.vectorize.vocab_size,
         f"it must be at least 1 and below vectorize.vocab_size ({params.vectorize.vocab_size})"),
        ("examples.negatives", params.examples.negatives, params.examples.negatives in NEGATIVE_MODES,
         f"it must be one of {', '.join(NEGATIVE_MODES)}"),
        ("examples.noise", params.examples.noise, params.examples.noise in NOISE_DISTRIBUTIONS,
         f"it must be one of {', '.join(NOISE_DISTRIBUTIONS)}"),
        ("examples.sample", params.examples.sample, params.examples.sample is None or params.examples.sample > 0,
         "it must be positive (word2vec.c's threshold, e.g. 0.001), or null for Keras 2's table"),
        ("examples.seed", params.examples.seed, params.examples.seed >= 0, "it must be 0 or more"),
        ("examples.workers", params.examples.workers, params.examples.workers >= 0,
         "it must be 0 (all cores) or more"),
        ("train.architecture", params.train.architecture, params.train.architecture in ARCHITECTURES,
         f"it must be one of {', '.join(ARCHITECTURES)}"),
        ("train.initializer", params.train.initializer, params.train.initializer in INITIALIZERS,
         f"it must be one of {', '.join(INITIALIZERS)}"),
        ("train.embedding_dim", params.train.embedding_dim, params.train.embedding_dim >= 1, "it must be positive"),
        ("train.batch_size", params.train.batch_size, params.train.batch_size >= 1, "it must be positive"),
        ("train.epochs", params.train.epochs, params.train.epochs >= 1, "it must be positive"),
        ("train.optimizer", params.train.optimizer, params.train.optimizer in OPTIMIZERS,
         f"it must be one of {', '.join(OPTIMIZERS)}"),
        ("train.learning_rate", params.train.learning_rate,
         params.train.learning_rate is None or params.train.learning_rate > 0,
         "it must be positive, or null for the optimizer's default"),
        ("train.seed", params.train.seed, params.train.seed >= 0, "it must be 0 or more"),
        ("evaluate.neighbours", params.evaluate.neighbours, params.evaluate.neighbours >= 1, "it must be positive"),
    ]
    for key, value, ok, rule in checks:
        if not ok:
            raise _bad(key, value, rule)


def params_from_dict(raw: Any) -> Params:
    """Build and validate `Params` from a nested mapping (the parsed params.yaml)."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise PipelineError("params.yaml must be a mapping of sections (corpus, vectorize, examples, train, "
                            "evaluate)")
    sections: dict[str, type] = {"corpus": CorpusParams, "vectorize": VectorizeParams,
                                 "examples": ExamplesParams, "train": TrainParams, "evaluate": EvaluateParams}
    built = {}
    for name, value in raw.items():
        if name not in sections:
            raise _unknown(str(name), list(sections))
        built[name] = _build_section(name, sections[name], value)
    params = Params(**built)
    _check_ranges(params)
    return params


def parse_overrides(assignments: list[str]) -> dict[str, Any]:
    """Parse `section.key=value` strings; values are YAML scalars (`5`, `0.1`, `null`, `true`)."""
    overrides: dict[str, Any] = {}
    for assignment in assignments:
        key, sep, text = assignment.partition("=")
        if not sep or "." not in key:
            raise PipelineError(f"override {assignment!r} is not of the form section.key=value (e.g. train.epochs=5)")
        overrides[key.strip()] = yaml.safe_load(text) if text.strip() else None
    return overrides


def apply_overrides(raw: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """Return a copy of the nested params with dotted-key overrides applied (not yet validated)."""
    merged = {section: dict(values or {}) for section, values in (raw or {}).items()}
    for key, value in overrides.items():
        section, _, name = key.partition(".")
        merged.setdefault(section, {})[name] = value
    return merged


def read_params_file(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise PipelineError(f"{path} not found: run from the project root, where params.yaml lives")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as error:
        first_line = str(error).splitlines()[0]
        raise PipelineError(f"{path} is not valid YAML ({first_line}): fix its syntax") from error
    return raw or {}


def load_params(path: Path = Path("params.yaml")) -> Params:
    return params_from_dict(read_params_file(path))


def flatten(params: Params) -> dict[str, Any]:
    """`{"train.epochs": 20, ...}`: the form MLflow and DVC show params in."""
    return {
        f"{section}.{key}": value
        for section, values in dataclasses.asdict(params).items()
        for key, value in values.items()
    }
