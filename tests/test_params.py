from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import run, tool_env
from w2vpipe.errors import PipelineError
from w2vpipe.params import (
    Params,
    TrainParams,
    apply_overrides,
    flatten,
    load_params,
    markdown_table,
    override,
    params_from_dict,
    parse_overrides,
    read_params_file,
)

REPO_ROOT = Path(__file__).resolve().parent.parent
TUTORIAL_PARAMS = REPO_ROOT / "recipes" / "tutorial.yaml"


def test_tutorial_recipe_holds_the_tutorials_params() -> None:
    params = load_params(TUTORIAL_PARAMS)
    assert (params.vectorize.vocab_size, params.vectorize.sequence_length) == (4096, 10)
    assert (params.examples.window_size, params.examples.num_ns, params.examples.seed) == (2, 4, 42)
    assert (params.train.embedding_dim, params.train.batch_size, params.train.epochs) == (128, 1024, 20)
    assert (params.train.optimizer, params.train.effective_learning_rate) == ("adam", 0.001)
    assert (params.examples.negatives, params.examples.noise) == ("stored", "log_uniform")
    assert (params.train.architecture, params.train.initializer, params.vectorize.validation_fraction) == (
        "skipgram", "keras", 0.0)
    assert flatten(params)["train.epochs"] == 20


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"examples.window_size": 0}, "examples.window_size=0 is invalid"),
        ({"vectorize.vocab_size": 2}, "vectorize.vocab_size=2 is invalid"),
        ({"examples.num_ns": 4096}, "examples.num_ns=4096 is invalid"),
        ({"train.epochs": 0}, "train.epochs=0 is invalid"),
        ({"train.batch_size": -1}, "train.batch_size=-1 is invalid"),
        ({"train.epochs": 2.5}, "must be a whole number"),
        ({"train.epoch": 5}, "did you mean 'train.epochs'"),
        ({"trian.epochs": 5}, "did you mean 'train'"),
        ({"corpus.sha256": "abc"}, "64 hex digits"),
        ({"train.optimizer": "rmsprop"}, "it must be one of sgd, adam"),
        ({"train.architecture": "glove"}, "it must be one of skipgram, cbow"),
        ({"vectorize.validation_fraction": 0.9}, "it must be at most 0.5"),
        ({"evaluate.probe_words": "king"}, "it must be a list of words"),
        ({"examples.subsample": "yes"}, "it must be true or false"),
        ({"train.learning_rate": 0}, "it must be above 0"),
        ({"examples.negatives": "device"}, "it must be one of per_batch, stored"),
        ({"vectorize.sequence_length": 1}, "it must be at least 2 (null keeps whole lines"),
        # Params are data: an interpolation, which DVC's `-S` would resolve, is refused wherever it comes from.
        ({"corpus.url": "/data/${oc.decode:'..'}/../etc/passwd"}, "corpus.url=/data/${oc.decode:'..'}/../etc/passwd "
                                                                  "is invalid: it must not contain '${'"),
        ({"evaluate.probe_words": ["king", "${oc.env:HOME}"]},
         "word 2 of param evaluate.probe_words, ${oc.env:HOME}, is invalid: it must not contain '${'"),
        ({"corpus.url": "https://example.com/a.txt\nHost: x"}, "it must not contain control characters"),
        ({"evaluate.probe_words": ["a\x00b"]}, "it must not contain control characters"),
        ({"corpus.url": "https://example.com/" + "a" * 2048}, "it must be at most 2048 characters"),
        ({"evaluate.probe_words": ["king", "k" * 200_000]}, "word 2 of param evaluate.probe_words, "
                                                           + "k" * 50 + "… (200,000 characters), is invalid: it must "
                                                           "be at most 100 characters"),
        ({"evaluate.probe_words": ["king"] * 51}, "it must hold at most 50 words"),
        ({"evaluate.probe_words": ["king", ""]}, "word 2 of param evaluate.probe_words, '', is invalid: it must not "
                                                 "be empty"),
        ({"cluster.scheduler": "tcp://10.0.0.5:8786"}, "unknown param 'cluster.scheduler' in params.yaml: a Dask "
                                                       "scheduler is named only by the environment"),
    ],
)
def test_bad_params_fail_with_one_line_naming_key_and_fix(overrides: dict, message: str) -> None:
    raw = apply_overrides({"train": {"epochs": 20}}, overrides)
    with pytest.raises(PipelineError) as error:
        params_from_dict(raw)
    assert message in str(error.value)
    assert "\n" not in str(error.value) and len(str(error.value)) < 600


# Words and a path that Hydra's override grammar would read otherwise if they were not quoted and escaped:
# a trailing backslash, quotes, its separators, brackets, keywords, `$` and braces, spaces at the ends.
TRICKY_WORDS = ["a\\", "it's", "x,y", "[a]", "null", "=", "true", "1e3", "\\'", "\\\\", "'", '"q"', "$", "{b}",
                "(c)", "d:e", " f ", "~g", "@h", "é✓", "\\{i\\}", "$ {j}"]
TRICKY_URL = "/data/it's a [b],c=d\\e$f{g}h%20i'\\.txt"


def test_values_round_trip_exactly_through_dvc_exp_run_set(tmp_path: Path) -> None:
    """What `override()` makes of a value, `dvc exp run -S` writes into params.yaml as it was, and the stage
    reads it so: Hydra's grammar takes any remaining text literally."""
    project = tmp_path / "dvc-project"
    project.mkdir()
    (project / "params.yaml").write_text("corpus:\n  url: x\nevaluate:\n  probe_words: [x]\n")
    (project / "dvc.yaml").write_text(
        "stages:\n  seen:\n"
        f"    cmd: {sys.executable} -c \"import json; from w2vpipe.params import read_params_file; "
        "json.dump(read_params_file(__import__('pathlib').Path('params.yaml')), open('seen.json', 'w'))\"\n"
        "    params: [corpus.url, evaluate.probe_words]\n"
        "    metrics: [seen.json: {cache: false}]\n")
    env = tool_env()
    for command in (["git", "init", "-q", "-b", "main"], ["git", "config", "user.email", "t@example.com"],
                    ["git", "config", "user.name", "t"], [sys.executable, "-m", "dvc", "init", "-q"],
                    ["git", "add", "-A"], ["git", "commit", "-q", "-m", "start"]):
        run(command, project, env)
    params_from_dict({"corpus": {"url": TRICKY_URL, "sha256": None}, "evaluate": {"probe_words": TRICKY_WORDS}})
    run([sys.executable, "-m", "dvc", "exp", "run", "--temp", "-n", "tricky",
         "-S", override("corpus.url", TRICKY_URL), "-S", override("evaluate.probe_words", TRICKY_WORDS)], project, env)
    baseline = run(["git", "rev-parse", "HEAD"], project, env).stdout.strip()
    reference = f"refs/exps/{baseline[:2]}/{baseline[2:]}/tricky"
    seen = json.loads(subprocess.run(["git", "show", f"{reference}:seen.json"], cwd=project, capture_output=True,
                                     text=True, check=True).stdout)
    assert seen == {"corpus": {"url": TRICKY_URL}, "evaluate": {"probe_words": TRICKY_WORDS}}


def test_learning_rate_defaults_per_optimizer_and_scales_with_batch() -> None:
    params = params_from_dict({"train": {"optimizer": "sgd", "learning_rate": None, "batch_size": 4096,
                                       "scale_learning_rate": True}})
    assert params.train.effective_learning_rate == pytest.approx(0.025 * 4)
    assert params_from_dict({"train": {"learning_rate": 0.01}}).train.effective_learning_rate == 0.01


def test_overrides_are_typed_yaml_scalars() -> None:
    assert parse_overrides(["train.epochs=5", "train.learning_rate=0.01", "corpus.sha256=null"]) == {
        "train.epochs": 5, "train.learning_rate": 0.01, "corpus.sha256": None}
    with pytest.raises(PipelineError, match="section.key=value"):
        parse_overrides(["epochs5"])


def test_invalid_yaml_is_reported_with_the_fix(tmp_path: Path) -> None:
    bad = tmp_path / "params.yaml"
    bad.write_text("train: [epochs\n")
    with pytest.raises(PipelineError, match="not valid YAML"):
        load_params(bad)


def test_params_yaml_holds_the_schemas_defaults() -> None:
    """The schema's defaults are the ones the Prefect form and the README show: params.yaml's."""
    assert load_params(REPO_ROOT / "params.yaml") == Params()
    assert set(flatten(Params())) == {f"{section}.{key}" for section, values in
                                      read_params_file(REPO_ROOT / "params.yaml").items() for key in values}


def test_readme_params_table_is_generated_from_the_schema() -> None:
    assert markdown_table() in (REPO_ROOT / "README.md").read_text()


def test_an_empty_section_takes_its_defaults_and_unknown_sections_are_named() -> None:
    assert params_from_dict({"train": None}).train == TrainParams()
    with pytest.raises(PipelineError, match="did you mean 'train'"):
        params_from_dict({"trian": {}})
