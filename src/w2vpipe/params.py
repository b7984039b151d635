"""The pipeline's knobs: one typed schema for `params.yaml`.

The pydantic models below are the single description of every param (type, default, bounds,
allowed values, meaning). They validate `params.yaml` (every stage checks all params before doing
any work, so a typo in `train` fails the `download` stage at once), give the Prefect deployment
its run form, flatten into MLflow params and generate the README's params table. Their defaults
are `params.yaml`'s (a test keeps the two equal).
"""

from __future__ import annotations

import difflib
import json
import re
import unicodedata
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError
from pydantic_core import PydanticCustomError
from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError

from w2vpipe.errors import PipelineError

DEFAULT_LEARNING_RATES = {"adam": 0.001, "sgd": 0.025}


def _load_yaml(text: str) -> Any:
    # YAML 1.2, as DVC reads and writes params.yaml: `no` is a word and `1e-3` a number.
    return YAML(typ="safe", pure=True).load(text)


# Bounds on every text param. A served deployment's form is a trust boundary: whatever it sends ends up in
# `dvc exp run -S` (one argument may hold at most 128 KiB on Linux), in params.yaml and in MLflow params
# (at most 6,000 characters each, so 50 words of 100 characters fit one).
MAX_URL_CHARS = 2048
MAX_WORD_CHARS = 100
MAX_PROBE_WORDS = 50


def _data_only(text: str) -> str:
    """A text param is data: `${...}` would be resolved by OmegaConf when DVC applies `-S` (`${oc.env:X}`
    reads the environment, `${oc.decode:...}` builds other text), and a control character (newline, NUL)
    belongs to no word, path or URL, and cannot pass as a command-line argument."""
    if "${" in text:
        raise PydanticCustomError("interpolation", "interpolation")
    if any(unicodedata.category(character) == "Cc" for character in text):
        raise PydanticCustomError("control_character", "control character")
    return text


Text = Annotated[str, AfterValidator(_data_only)]
Word = Annotated[str, Field(min_length=1, max_length=MAX_WORD_CHARS), AfterValidator(_data_only)]


class Section(BaseModel):
    # Strict: `epochs: 2.5` or `subsample: "yes"` is an error, not a silent cast. Titles are the
    # params.yaml keys, so the Prefect form names each field as the file does.
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True,
                              field_title_generator=lambda name, _: name)


class CorpusParams(Section):
    """Where the text comes from."""

    url: Text = Field(
        "https://storage.googleapis.com/download.tensorflow.org/data/shakespeare.txt", min_length=1,
        max_length=MAX_URL_CHARS,
        description=f"http(s)://, file:// or a path, at most {MAX_URL_CHARS:,} characters; offline, "
                    "W2V_CORPUS_MIRROR names a folder holding a file of the same name (default: the tutorial's "
                    "shakespeare.txt)")
    sha256: str | None = Field(
        "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed", pattern=r"^[0-9a-fA-F]{64}$",
        description="the file's sha256 (64 hex digits), checked after every fetch; null skips the check")


class VectorizeParams(Section):
    """Vocabulary and integer sentences."""

    vocab_size: int | None = Field(
        4096, ge=3, description="tokens kept, most frequent first, padding and [UNK] included; null: no cap "
                                "(min_count alone decides, as in gensim)")
    min_count: int = Field(1, ge=1, description="tokens seen fewer times than this in the training lines are "
                                                "[UNK] (gensim's min_count; word2vec.c: 5)")
    counting_limit: int | None = Field(
        10_000_000, ge=1, description="distinct tokens counted at most (gensim's max_vocab_size): past it, the "
                                      "rarest are dropped as gensim drops them, so counts near min_count may come out "
                                      "short; 10^7 keeps the stage under ~2.5 GB; null: no limit")
    sequence_length: int | None = Field(
        None, ge=2, description="null keeps whole lines (word2vec.c, gensim); a number cuts longer lines and pads "
                                "shorter ones (the tutorial: 10)")
    shard_lines: int = Field(100_000, ge=1, description="lines per shard: bounds memory, and the unit of parallel work")
    validation_fraction: float = Field(
        0.02, ge=0, le=0.5,
        description="share of lines held out (one in every 1/fraction), never trained on nor counted in the "
                    "vocabulary: their loss and accuracy are val_loss and val_accuracy every epoch; 0 holds none "
                    "out (the tutorial)")


class ExamplesParams(Section):
    """Training examples: windows, subsampling, negatives."""

    window_size: int = Field(2, ge=1, description="context words on each side of a target word")
    num_ns: int = Field(4, ge=1, description="negatives per positive pair, never the true word (below "
                                             "vectorize.vocab_size); stored ones are unique within their row (the "
                                             "tutorial's sampler), per_batch ones are drawn with replacement and may "
                                             "repeat (word2vec.c)")
    negatives: Literal["per_batch", "stored"] = Field(
        "per_batch", description="per_batch: drawn on the device at every batch (word2vec.c; the examples hold "
                                 "positives only); stored: drawn here and written with each pair (the tutorial)")
    noise: Literal["unigram", "log_uniform"] = Field(
        "unigram", description="the negatives' distribution: unigram (word counts ^ 0.75, word2vec.c) or "
                               "log_uniform (the tutorial's TensorFlow sampler)")
    subsample: bool = Field(True, description="drop frequent words at random")
    sample: float | None = Field(
        0.001, gt=0, description="word2vec.c's subsampling formula on the corpus's counts, with this threshold "
                                 "(gensim's default); null: Keras 2's Zipf sampling table (the tutorial)")
    drop_before_windowing: bool = Field(
        True, description="drop [UNK] and subsampled words before windowing, so windows reach past them "
                          "(word2vec.c, gensim); false: only targets are dropped (the tutorial)")
    dynamic_window: bool = Field(
        True, description="each target's window shrinks at random to 1..window_size words a side (word2vec.c)")
    redraw_each_epoch: bool = Field(
        True, description="every epoch after the first trains on a new draw of subsampling, windows and stored "
                          "negatives (word2vec.c, gensim); false: this stage's one draw for every epoch (the "
                          "tutorial)")
    seed: int = Field(42, ge=0, description="seeds subsampling and negatives; shard i is drawn from (seed, i[, "
                                            "epoch]), so results do not depend on workers")


class ClusterParams(Section):
    """Where the vectorize and examples stages run their shards, on Dask; outputs are the same bit for bit
    whatever is chosen, so no stage depends on these. A running scheduler is named only by the operator's
    environment (W2V_DASK_SCHEDULER), never by a param: a Dask client unpickles what its scheduler sends, so
    whoever may start a run must not choose which one it connects to."""

    workers: int = Field(0, ge=0, description="worker processes (one thread each) of the local Dask cluster a stage "
                                              "starts; 0 = all cores; the variable W2V_DASK_SCHEDULER names a running "
                                              "cluster to use instead")


class TrainParams(Section):
    """The model and its optimization."""

    architecture: Literal["skipgram", "cbow"] = Field(
        "skipgram", description="skipgram: a word predicts each word of its window; cbow: the mean of the "
                                "window's vectors predicts the word in the middle (gensim's sg=0)")
    embedding_dim: int = Field(128, ge=1, description="vector size")
    batch_size: int = Field(1024, ge=1, description="examples per step")
    epochs: int = Field(20, ge=1, description="passes over the examples")
    optimizer: Literal["sgd", "adam"] = Field(
        "sgd", description="sgd: word2vec.c's (sigmoid cross-entropy summed per pair, plain SGD decaying "
                           "linearly, sparse row updates); adam: the tutorial's (softmax cross-entropy, dense Adam)")
    learning_rate: float | None = Field(
        0.03, gt=0, description="the starting rate, chosen by bench/quality.py (word2vec.c: 0.025); null: 0.025 "
                                "for sgd, 0.001 for adam")
    scale_learning_rate: bool = Field(False, description="multiply the rate by batch_size / 1024 (large batches)")
    shared_negatives: int = Field(
        0, ge=0, description="0: each example draws its own examples.num_ns negatives (word2vec.c); N > 0: N drawn "
                             "per batch, shared by all its examples and weighted num_ns/N (BlazingText), "
                             "optimizer sgd only")
    cores: int = Field(
        0, ge=0, description="CPU cores that train sgd (word2vec.c's step on the tables in memory; with updates "
                             "batch, each row's updates added by one core in batch order: the same tables whatever "
                             "the count); 0: all this process may use")
    updates: Literal["batch", "hogwild"] = Field(
        "batch", description="how sgd's CPU cores apply a batch: batch, its rows scored from the tables as the step "
                             "found them and their updates summed (the same tables on any core count); hogwild, "
                             "each row's vectors moved at once by whichever core scores it, the tables shared "
                             "without locks (word2vec.c's and gensim's threads): faster, but on more than one core "
                             "a rerun's tables differ. CPU training only")
    backend: Literal["jax", "tensorflow"] = Field(
        "jax", description="the Keras backend that trains sgd (the same code and draws on both): jax, faster here "
                           "(bench/benchmark.py) and needed across processes; adam always trains on tensorflow")
    mixed_precision: bool = Field(False, description="float16 compute on a GPU for the adam recipe (model.fit); "
                                                     "ignored on the CPU and by sgd")
    initializer: Literal["word2vec", "keras"] = Field(
        "word2vec", description="word2vec: input vectors uniform in ±0.5/dim, output vectors zero (word2vec.c); "
                                "keras: both uniform in ±0.05 (the tutorial)")
    seed: int = Field(42, ge=0, description="seeds initialization and shuffling")

    @property
    def effective_learning_rate(self) -> float:
        """The learning rate used: the optimizer's default unless set, times batch_size / 1024 if scaled."""
        base = self.learning_rate if self.learning_rate is not None else DEFAULT_LEARNING_RATES[self.optimizer]
        return base * self.batch_size / 1024 if self.scale_learning_rate else base

    @property
    def effective_backend(self) -> str:
        """The Keras backend that trains: `backend` for sgd; adam trains with model.fit, on TensorFlow."""
        return self.backend if self.optimizer == "sgd" else "tensorflow"


class ExportParams(Section):
    """The exported files and the map of the embedding."""

    map_words: int = Field(500, ge=3, description="the most frequent words drawn on the 2-D map (PCA and t-SNE): "
                                                   "exports/map.png and map.html")
    seed: int = Field(42, ge=0, description="seeds the map's t-SNE layout")
    text_words: int | None = Field(
        100_000, ge=1, description="the most frequent words in the text files, exports/word2vec.txt and the Embedding "
                                   "Projector's vectors.tsv and metadata.tsv (the Projector loads 100,000 at most); "
                                   "null: every word. word2vec.bin and word2vec.kv always hold every word")


class EvaluateParams(Section):
    """Scores and nearest neighbours."""

    probe_words: list[Word] = Field(
        ["king", "queen", "love", "death", "sword", "night", "father"], min_length=1, max_length=MAX_PROBE_WORDS,
        description=f"words whose nearest neighbours are listed (lowercased, as the corpus is), 1 to "
                    f"{MAX_PROBE_WORDS} words of 1 to {MAX_WORD_CHARS} characters; one outside the vocabulary is "
                    "reported as such")
    neighbours: int = Field(10, ge=1, description="neighbours listed per probe word")


class Params(Section):
    corpus: CorpusParams = CorpusParams()
    vectorize: VectorizeParams = VectorizeParams()
    examples: ExamplesParams = ExamplesParams()
    train: TrainParams = TrainParams()
    export: ExportParams = ExportParams()
    evaluate: EvaluateParams = EvaluateParams()
    cluster: ClusterParams = ClusterParams()


SECTIONS: dict[str, type[Section]] = {name: info.annotation for name, info in Params.model_fields.items()}


# Keys that were params once, and what replaces them.
REMOVED = {"cluster.scheduler": "a Dask scheduler is named only by the environment "
                                "(W2V_DASK_SCHEDULER=tcp://host:8786), never by a param: remove the key"}


def _fix(key: str) -> str:
    return f"fix it in params.yaml, with --set {key}=... or in the run form"


def _rule(error: dict[str, Any], description: str) -> str:
    """What a pydantic error asks of the value, in words."""
    context = error.get("ctx", {})
    rules = {
        "int_type": "it must be a whole number", "float_type": "it must be a number",
        "bool_type": "it must be true or false", "string_type": "it must be a string",
        "list_type": "it must be a list of words, e.g. [king, queen]",
        "literal_error": "it must be one of " + str(context.get("expected", "")).replace("'", "").replace(" or ", ", "),
        "greater_than_equal": f"it must be at least {context.get('ge')}",
        "greater_than": f"it must be above {context.get('gt')}",
        "less_than_equal": f"it must be at most {context.get('le')}",
        "string_too_short": "it must not be empty", "too_short": "it must not be empty",
        "string_too_long": f"it must be at most {context.get('max_length')} characters",
        "too_long": f"it must hold at most {context.get('max_length')} words",
        "string_pattern_mismatch": f"it must match {context.get('pattern')}",
        "interpolation": "it must not contain '${': params are data, and DVC would resolve it as an OmegaConf "
                         "interpolation (${oc.env:...} reads the environment)",
        "control_character": "it must not contain control characters (newline, tab, NUL)",
    }
    return f"{rules.get(error['type'], error['msg'])} ({description})"


def _shown(value: Any) -> str:
    """A value for an error line: as params.yaml shows it, control characters escaped and cut short, so that
    any value stays one short line."""
    text = "".join(repr(character)[1:-1] if unicodedata.category(character) == "Cc" else character
                   for character in yaml_value(value)) or repr("")
    return text if len(text) <= 60 else f"{text[:50]}… ({len(text):,} characters)"


def _one_line(error: ValidationError) -> PipelineError:
    first = error.errors()[0]
    location = [str(part) for part in first["loc"]]
    if first["type"] == "extra_forbidden":
        return _unknown(location)
    if len(location) < 2:  # a section that is not a mapping
        return PipelineError(f"params.yaml section {location[0] if location else ''!r} must be a mapping of "
                             "key: value")
    section, name = location[0], location[1]
    key = f"{section}.{name}"
    field = SECTIONS[section].model_fields[name]
    subject = f"param {key}={_shown(first['input'])}"
    if first["type"] == "list_type" or (len(location) > 2 and first["type"] == "string_type"):
        first = {**first, "type": "list_type"}  # a word that is not a string: the list is wrong
    elif len(location) > 2:  # one word of a list
        subject = f"word {int(location[2]) + 1} of param {key}, {_shown(first['input'])},"
    return PipelineError(f"{subject} is invalid: {_rule(first, field.description or '')}; {_fix(key)}")


def _unknown(location: list[str]) -> PipelineError:
    if len(location) == 1:
        known, key = list(SECTIONS), location[0]
    else:
        known, key = [f"{location[0]}.{name}" for name in SECTIONS[location[0]].model_fields], ".".join(location)
    close = difflib.get_close_matches(key, known, n=1)
    hint = REMOVED.get(key) or (f"did you mean {close[0]!r}?" if close else f"known keys: {', '.join(known)}")
    return PipelineError(f"unknown param {key!r} in params.yaml: {hint}")


def params_from_dict(raw: Any) -> Params:
    """Build and validate `Params` from a nested mapping (the parsed params.yaml)."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise PipelineError(f"params.yaml must be a mapping of sections ({', '.join(SECTIONS)})")
    # An empty section (`train:` with every key commented out) reads as null: all its defaults.
    raw = {str(section): {} if values is None else values for section, values in raw.items()}
    try:
        params = Params.model_validate(raw)
    except ValidationError as error:
        raise _one_line(error) from None
    vocab_size = params.vectorize.vocab_size
    if vocab_size is not None and params.examples.num_ns >= vocab_size:
        raise PipelineError(f"param examples.num_ns={params.examples.num_ns} is invalid: it must be below "
                            f"vectorize.vocab_size ({vocab_size}); {_fix('examples.num_ns')}")
    return params


def parse_overrides(assignments: list[str]) -> dict[str, Any]:
    """Parse `section.key=value` strings; values are YAML scalars (`5`, `0.1`, `null`, `true`)."""
    overrides: dict[str, Any] = {}
    for assignment in assignments:
        key, sep, text = assignment.partition("=")
        if not sep or "." not in key:
            raise PipelineError(f"override {assignment!r} is not of the form section.key=value (e.g. train.epochs=5)")
        overrides[key.strip()] = _load_yaml(text) if text.strip() else None
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
        raw = _load_yaml(path.read_text(encoding="utf-8"))
    except YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(error, "problem", None) or str(error).splitlines()[0]
        raise PipelineError(f"{path} is not valid YAML{where} ({problem}): fix its syntax") from error
    return raw or {}


def load_params(path: Path = Path("params.yaml")) -> Params:
    return params_from_dict(read_params_file(path))


def flatten(params: Params) -> dict[str, Any]:
    """`{"train.epochs": 20, ...}`: the form MLflow and DVC show params in."""
    return {f"{section}.{key}": value for section, values in params.model_dump().items()
            for key, value in values.items()}


def yaml_value(value: Any) -> str:
    """A value as params.yaml shows it: null, true, 0.03, [king, queen]."""
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        return "[" + ", ".join(yaml_value(item) for item in value) + "]"
    return json.dumps(value)


# In a single-quoted Hydra string, backslashes are literal except a run of them before a quote (an inner
# quote, or the closing one), which stands for half as many: Hydra's OverrideLexer.g4 (QUOTED_VALUE) and
# OverridesVisitor._unescape_quoted_string.
_BACKSLASHES_BEFORE_QUOTE = re.compile(r"(\\*)'")
_TRAILING_BACKSLASHES = re.compile(r"(\\+)\Z")


def _hydra_quoted(text: str) -> str:
    escaped = _BACKSLASHES_BEFORE_QUOTE.sub(lambda match: match.group(1) * 2 + "\\'", text)
    return "'" + _TRAILING_BACKSLASHES.sub(lambda match: match.group(1) * 2, escaped) + "'"


def override(key: str, value: Any) -> str:
    """`dvc exp run -S` for one param: `++` also sets a key params.yaml leaves out. Every string is quoted
    and escaped, so Hydra's grammar takes it as it is (`=`, `,`, `[`, `null`, `\\`, quotes); the schema has
    already refused `${`, which OmegaConf would still resolve inside a quoted string."""
    def hydra(item: Any) -> str:
        if isinstance(item, str):
            return _hydra_quoted(item)
        if isinstance(item, list):
            return "[" + ",".join(hydra(element) for element in item) + "]"
        return json.dumps(item)

    return f"++{key}={hydra(value)}"


def changed_params(params: Params, baseline: Params) -> dict[str, Any]:
    """The flattened params whose values differ from `baseline`'s."""
    base = flatten(baseline)
    return {key: value for key, value in flatten(params).items() if base[key] != value}


def markdown_table() -> str:
    """The README's params table, from the schema."""
    lines = ["| key | default | allowed | meaning |", "| --- | --- | --- | --- |"]
    for section, model in SECTIONS.items():
        for name, field in model.model_fields.items():
            schema = model.model_json_schema()["properties"][name]
            lines.append(f"| `{section}.{name}` | `{yaml_value(field.default)}` | {_allowed(schema)} | "
                         f"{field.description} |")
    return "\n".join(lines)


def _allowed(schema: dict[str, Any]) -> str:
    options = schema.get("anyOf", [schema])
    words = []
    for option in options:
        if "enum" in option:
            words.append(" \\| ".join(option["enum"]))
        elif option.get("type") == "null":
            words.append("null")
        else:
            bounds = [f"≥ {option['minimum']}" if "minimum" in option else "",
                      f"> {option['exclusiveMinimum']}" if "exclusiveMinimum" in option else "",
                      f"and ≤ {option['maximum']}" if "maximum" in option else ""]
            kind = {"integer": "integer", "number": "number", "boolean": "true \\| false", "string": "text",
                    "array": "list of words"}[option["type"]]
            words.append(" ".join([kind, *[bound for bound in bounds if bound]]))
    return ", ".join(words)
