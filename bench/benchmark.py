"""The pipeline against the tutorial's code and gensim, side by side, per stage, on one machine.

    python bench/benchmark.py [--corpus ../shared/corpora/shakespeare.txt] [--repeats 3]
                              [--epochs 20] [--scale 2e6 6e6 2e7] [--realistic all | ROW ...]
                              [--realistic-repeats 3] [--updates batch hogwild] [--corpora DIR]

Part 1, on the corpus, same hyperparameters everywhere (window 2, 4 negatives, dimension 128,
4096-word vocabulary, --epochs epochs), medians of --repeats alternating runs:
  (a) the tutorial's code (bench/tutorial_word2vec.py, tf_keras for the two functions Keras 3 dropped),
  (b) gensim Word2Vec (bench/gensim_word2vec.py, 2 workers),
  (c) this pipeline's stages, each a `python -m pipeline STAGE` process, in two configurations:
      "tutorial" (recipes/tutorial.yaml) and "defaults" (params.yaml: word2vec.c's recipe, as gensim
      runs it, on the JAX backend), both also scored by the evaluate stage; gensim's vectors are
      scored by the same code.
Part 2, scaling: the corpus concatenated to each --scale word count; the defaults' vectorize +
examples + one training epoch, and gensim's one epoch, with peak RSS and both training loops' words/s.
Part 3, the settings people train with (--realistic ROW...; `all` for every row of REALISTIC), each row
--realistic-repeats alternating runs of the pipeline's vectorize, examples and train stages (once per --updates
value: train.updates batch, the default, and hogwild) and of a whole gensim
process (import, vocabulary, train(), save), 2 workers, same settings: the training loop's corpus words/s
against train()'s, the whole train stage against the whole gensim process, peak RSS, scores beside.

`--repeats 0 --scale` runs part 3 alone. Every timed command runs under /usr/bin/time for wall time
and peak RSS. Writes a markdown table to bench/results/benchmark-<time>.md and prints it.
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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from _results import publish

ROOT = Path(__file__).resolve().parent.parent
STAGES = ("vectorize", "examples", "train")
DEFAULTS: dict[str, object] = {}  # params.yaml as it is
SCORES = (("wordsim353", "spearman"), ("simlex999", "spearman"), ("analogies", "accuracy"))
PUNCTUATION = re.compile(f"[{re.escape(string.punctuation)}]")


@dataclass(frozen=True)
class RealisticRow:
    """A corpus at the settings its users train with: `corpus` is made by `make` (a command run with the
    path appended) unless it exists; `min_count` both the pipeline's and gensim's."""

    corpus: str
    make: list[str]
    min_count: int
    dim: int
    epochs: int
    scored: bool  # the corpus has English words: WordSim353, SimLex-999 and analogies mean something
    window: int = 5
    negatives: int = 5

    def overrides(self) -> dict[str, object]:
        # no held-out lines: gensim trains on every line, and words/s counts them all
        return {"vectorize.vocab_size": None, "vectorize.min_count": self.min_count,
                "vectorize.validation_fraction": 0, "examples.window_size": self.window,
                "examples.num_ns": self.negatives,
                "train.embedding_dim": self.dim, "train.epochs": self.epochs}

    def gensim_arguments(self) -> list[str]:
        return ["--min-count", str(self.min_count), "--dim", str(self.dim), "--window", str(self.window),
                "--negative", str(self.negatives), "--epochs", str(self.epochs), "--workers", "2", "--stream"]


ZIPF_1E7 = [sys.executable, str(ROOT / "bench" / "zipf_corpus.py"), "--words", "1e7"]
REALISTIC = {
    # 10^7 words over 2*10^6 Zipf types: ~166k seen 5 times or more
    "zipf-1e7-min5": RealisticRow("zipf1e7.txt", ZIPF_1E7, min_count=5, dim=300, epochs=1, scored=False),
    # the same corpus, every type kept: a vocabulary of ~1.1M words
    "zipf-1e7-vocab-1m": RealisticRow("zipf1e7.txt", ZIPF_1E7, min_count=1, dim=300, epochs=1, scored=False),
    "wiki-kjv": RealisticRow("wiki-kjv.txt", [sys.executable, str(ROOT / "bench" / "make_corpus.py"), "--out"],
                             min_count=5, dim=100, epochs=5, scored=True),
}


def tutorial_recipe() -> dict[str, object]:
    """recipes/tutorial.yaml as dotted overrides (all but the corpus)."""
    import yaml

    recipe = yaml.safe_load((ROOT / "recipes" / "tutorial.yaml").read_text())
    return {f"{section}.{key}": value for section, values in recipe.items() if section != "corpus"
            for key, value in values.items()}


TUTORIAL = tutorial_recipe()


def timed(command: list[str], cwd: Path, env: dict[str, str]) -> tuple[float, float, str]:
    """(wall seconds, peak RSS in MiB, stdout) of one command."""
    with tempfile.NamedTemporaryFile("r", suffix=".time") as report:
        result = subprocess.run(["/usr/bin/time", "-f", "%e %M", "-o", report.name, *command], cwd=cwd, env=env,
                                capture_output=True, text=True)
        if result.returncode != 0:
            raise SystemExit(f"{' '.join(command)} failed:\n{result.stdout[-2000:]}\n{result.stderr[-3000:]}")
        wall, rss_kib = report.read().split()[-2:]
    return float(wall), int(rss_kib) / 1024, result.stdout


def corpus_words(path: Path) -> int:
    """Words after the tutorial's standardization: the unit of every words/s here."""
    with path.open(encoding="utf-8") as corpus:
        return sum(len(PUNCTUATION.sub("", line.lower()).split()) for line in corpus)


def scaled_corpus(source: Path, words: int, destination: Path) -> Path:
    """`source` repeated (whole, then a prefix of its lines) until it holds about `words` words."""
    lines = source.read_text(encoding="utf-8").splitlines(keepends=True)
    per_copy = corpus_words(source)
    with destination.open("w", encoding="utf-8") as out:
        for _ in range(words // per_copy):
            out.writelines(lines)
        out.writelines(lines[: len(lines) * (words % per_copy) // per_copy])
    return destination


def project(destination: Path, corpus: Path, overrides: dict[str, object]) -> Path:
    """A scratch copy of the project whose download stage has run on `corpus`."""
    import yaml

    for name in ("params.yaml", "pyproject.toml"):
        shutil.copy2(ROOT / name, destination / name)
    shutil.copytree(ROOT / "pipeline", destination / "pipeline", ignore=shutil.ignore_patterns("__pycache__"))
    params = yaml.safe_load((destination / "params.yaml").read_text())
    params["corpus"].update(url=str(corpus), sha256=None)
    for key, value in overrides.items():
        section, _, name = key.partition(".")
        params[section][name] = value
    (destination / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    (destination / "data" / "corpus").mkdir(parents=True)
    shutil.copy2(corpus, destination / "data" / "corpus" / corpus.name)
    return destination


def run_pipeline(corpus: Path, overrides: dict[str, object], env: dict[str, str],
                 score: bool = False) -> dict[str, Any]:
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="w2v-bench-") as tmp:
        root = project(Path(tmp), corpus, overrides)
        for stage in STAGES:
            wall, rss, out = timed([sys.executable, "-m", "pipeline", stage], root, env)
            results[stage], results[f"{stage} rss"] = wall, rss
            if stage == "examples":  # the stage's own work, after interpreter start-up and imports
                results["examples work"] = float(re.search(r"made in ([0-9.]+) s", out).group(1))
            if stage == "train":  # model.fit alone: what gensim's train() is timed on
                results["fit"] = float(re.search(r"fit in ([0-9.]+) s", out).group(1))
        results["pairs"] = json.loads((root / "data" / "examples" / "stats.json").read_text())["pairs"]
        if score:
            timed([sys.executable, "-m", "pipeline", "evaluate"], root, env)
            results["scores"] = json.loads((root / "metrics" / "evaluate.json").read_text())
    return results


def run_tutorial(corpus: Path, epochs: int, env: dict[str, str]) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="w2v-tutorial-") as tmp:
        wall, rss, _ = timed([sys.executable, str(ROOT / "bench" / "tutorial_word2vec.py"), str(corpus), "--out", tmp,
                              "--epochs", str(epochs), "--json", f"{tmp}/phases.json"], ROOT, env)
        phases = json.loads(Path(f"{tmp}/phases.json").read_text())
    return {**phases, "wall": wall, "rss": rss}


def run_gensim(corpus: Path, epochs: int, env: dict[str, str], score: bool = False,
               arguments: list[str] | None = None) -> dict[str, Any]:
    """gensim's JSON report (read, vocab, train, save, total seconds; scores) with the process's wall and RSS."""
    with tempfile.TemporaryDirectory(prefix="w2v-gensim-") as tmp:
        wall, rss, out = timed([sys.executable, str(ROOT / "bench" / "gensim_word2vec.py"), str(corpus),
                                *(arguments or ["--epochs", str(epochs)]), "--save", f"{tmp}/vectors.bin",
                                *(["--evaluate"] if score else [])], ROOT, env)
    return {**json.loads(out.strip().splitlines()[-1]), "wall": wall, "rss": rss}


def median(runs: list[dict[str, Any]], key: str) -> float:
    return statistics.median(run[key] for run in runs)


def median_score(runs: list[dict[str, Any]], name: str, key: str) -> str:
    values = [run["scores"][name][key] for run in runs if run["scores"][name][key] is not None]
    if not values:
        return "n/a"
    value = statistics.median(values)
    return f"{value:.1%}" if key == "accuracy" else f"{value:.3f}"


def fmt(value: float, digits: int = 2) -> str:
    return f"{value:,.{digits}f}"


def tutorial_settings(corpus: Path, repeats: int, epochs: int, env: dict[str, str]) -> list[str]:
    """Part 1: the tutorial's code, gensim and both pipeline configurations at the tutorial's settings."""
    words = corpus_words(corpus)

    tutorial, gensim, recipe, defaults = [], [], [], []  # recipe: the tutorial recipe in the pipeline
    for repeat in range(repeats):
        tutorial.append(run_tutorial(corpus, epochs, env))
        gensim.append(run_gensim(corpus, epochs, env, score=True))
        recipe.append(run_pipeline(corpus, {**TUTORIAL, "train.epochs": epochs}, env, score=True))
        defaults.append(run_pipeline(corpus, {**DEFAULTS, "train.epochs": epochs}, env, score=True))
        print(f"repeat {repeat + 1}/{repeats} done", file=sys.stderr, flush=True)

    tutorial_lines_per_s = median(tutorial, "lines") / median(tutorial, "examples")
    tutorial_pairs = median(tutorial, "pairs")
    gensim_train_wps = words * epochs / median(gensim, "train")
    # gensim counts words, not pairs: each word kept by subsampling is paired with the words of a
    # window shrunk at random to 1..window on each side, so (window + 1) contexts on average.
    gensim_pairs = median(gensim, "effective_words") / epochs * (2 + 1)
    gensim_pairs_per_s = gensim_pairs * epochs / median(gensim, "train")
    lines = [
        f"# Benchmark — {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC",
        "",
        f"{platform.node()}: {os.cpu_count()} cores, Python {platform.python_version()}. Corpus `{corpus.name}`: "
        f"{words:,} words (after the tutorial's standardization), {int(median(tutorial, 'lines')):,} non-empty lines. "
        f"Window 2, 4 negatives, dimension 128, vocabulary 4096, {epochs} epochs. Medians of {repeats} "
        "alternating runs; pipeline stages are whole processes (start-up and imports included).",
        "",
        "## Per stage",
        "",
        "| stage | tutorial | gensim | pipeline, tutorial recipe | pipeline, defaults |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for stage, tutorial_key, gensim_key in (("vectorize", "vectorize", "vocab"), ("examples", "examples", None),
                                            ("train", "train", "train")):
        row = [stage, f"{fmt(median(tutorial, tutorial_key))} s",
               f"{fmt(median(gensim, gensim_key))} s" if gensim_key else "— (inside train)"]
        for runs in (recipe, defaults):
            row.append(f"{fmt(median(runs, stage))} s, {fmt(median(runs, stage + ' rss'), 0)} MiB")
        lines.append("| " + " | ".join(row) + " |")
    lines += [
        f"| whole run, peak RSS | {fmt(median(tutorial, 'wall'))} s, {fmt(median(tutorial, 'rss'), 0)} MiB "
        f"| {fmt(median(gensim, 'wall'))} s, {fmt(median(gensim, 'rss'), 0)} MiB | | |",
        "",
        "## Throughput and ratios",
        "",
        "| measure | tutorial | gensim | pipeline, tutorial recipe | pipeline, defaults |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    rows = {
        "examples: lines/s (whole process)": [
            tutorial_lines_per_s, None,
            *(median(tutorial, "lines") / median(r, "examples") for r in (recipe, defaults))],
        "examples: lines/s (stage work, after imports)": [
            tutorial_lines_per_s, None,
            *(median(tutorial, "lines") / max(median(r, "examples work"), 1e-3) for r in (recipe, defaults))],
        "training pairs (per epoch)": [tutorial_pairs, gensim_pairs, *(median(r, "pairs") for r in (recipe, defaults))],
        "train: pairs/s (training loop)": [
            tutorial_pairs * epochs / median(tutorial, "train"), gensim_pairs_per_s,
            *(median(r, "pairs") * epochs / median(r, "fit") for r in (recipe, defaults))],
        "train: corpus words/s (training loop)": [
            words * epochs / median(tutorial, "train"), gensim_train_wps,
            *(words * epochs / median(r, "fit") for r in (recipe, defaults))],
        "train: corpus words/s (whole stage process)": [
            None, None, *(words * epochs / median(r, "train") for r in (recipe, defaults))],
    }
    for name, values in rows.items():
        lines.append(f"| {name} | " + " | ".join("—" if v is None else fmt(v, 0) for v in values) + " |")
    lines += ["", "## Scores (same evaluation code for all)", "",
              "| system | WordSim353 | SimLex-999 | analogies |", "| --- | ---: | ---: | ---: |"]
    for system, runs in (("gensim", gensim), ("pipeline, tutorial recipe", recipe), ("pipeline, defaults", defaults)):
        lines.append(f"| {system} | " + " | ".join(median_score(runs, name, key) for name, key in SCORES) + " |")
    examples_whole, examples_work = (rows["examples: lines/s (whole process)"],
                                     rows["examples: lines/s (stage work, after imports)"])
    loop, whole = rows["train: corpus words/s (training loop)"], rows["train: corpus words/s (whole stage process)"]
    lines += [
        "",
        "- examples stage vs the tutorial's generate_training_data (lines/s), stage work / whole process: "
        f"tutorial recipe **{examples_work[2] / tutorial_lines_per_s:.0f}x** / "
        f"**{examples_whole[2] / tutorial_lines_per_s:.0f}x**, defaults "
        f"**{examples_work[3] / tutorial_lines_per_s:.0f}x** / **{examples_whole[3] / tutorial_lines_per_s:.0f}x**",
        "- training, corpus words/s vs gensim's train() (training loop / whole train stage): tutorial recipe "
        f"**{loop[2] / gensim_train_wps:.2f}x** / **{whole[2] / gensim_train_wps:.2f}x**, defaults "
        f"**{loop[3] / gensim_train_wps:.2f}x** / **{whole[3] / gensim_train_wps:.2f}x**; "
        f"vs the tutorial's model.fit: **{loop[2] / loop[0]:.1f}x** and **{loop[3] / loop[0]:.1f}x**",
        "- training loop: the train stage's `fit in` time (XLA compilation and per-epoch callbacks included; "
        "tutorial: its model.fit; gensim: train()). Whole stage: the `python -m pipeline train` process "
        "(imports, MLflow, model saving included). gensim counts pairs as 3 per kept word (an estimate).",
    ]

    return lines


def realistic_settings(rows: list[str], repeats: int, corpora: Path, env: dict[str, str],
                       updates: list[str]) -> list[str]:
    """Part 3: each REALISTIC row, the pipeline's stages (once per `train.updates` value) and a whole gensim
    process alternating."""
    lines = ["", "## Realistic settings (window 5, 5 negatives, 2 workers)", "",
             "| row | words, vocabulary | loop: pipeline, gensim train() (corpus words/s) | ratio | "
             "train stage, gensim whole process | ratio | peak RSS: train stage, gensim | "
             "scores (WordSim353, SimLex-999, analogies): pipeline; gensim |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |"]
    corpora.mkdir(parents=True, exist_ok=True)
    for name in rows:
        row = REALISTIC[name]
        corpus = corpora / row.corpus
        if not corpus.exists():
            subprocess.run([*row.make, str(corpus)], check=True, capture_output=True)
        words = corpus_words(corpus)
        pipeline: dict[str, list[dict[str, Any]]] = {update: [] for update in updates}
        gensim: list[dict[str, Any]] = []
        for repeat in range(repeats):
            runs = [*(lambda update=update: pipeline[update].append(run_pipeline(
                         corpus, {**row.overrides(), "train.updates": update}, env, score=row.scored))
                      for update in updates),
                    lambda: gensim.append(run_gensim(corpus, row.epochs, env, score=row.scored,
                                                     arguments=row.gensim_arguments()))]
            for run in runs if repeat % 2 == 0 else reversed(runs):
                run()
            print(f"{name}: repeat {repeat + 1}/{repeats} done", file=sys.stderr, flush=True)
        reference_loop = words * row.epochs / median(gensim, "train")
        whole = median(gensim, "total")
        for update, runs in pipeline.items():
            loop = words * row.epochs / median(runs, "fit")
            stage = median(runs, "train")
            scores = " ; ".join(", ".join(median_score(system, score, key) for score, key in SCORES)
                                for system in (runs, gensim)) if row.scored else "made-up words"
            lines.append(
                f"| {name}: {row.dim} dimensions, min count {row.min_count}, {row.epochs} epoch(s); "
                f"updates {update} | {words:,}, {int(median(gensim, 'vocab_size')):,} | {fmt(loop, 0)}, "
                f"{fmt(reference_loop, 0)} | **{loop / reference_loop:.2f}x** | {fmt(stage)} s, {fmt(whole)} s | "
                f"**{whole / stage:.2f}x** | {fmt(median(runs, 'train rss') / 1024)} GiB, "
                f"{fmt(median(gensim, 'rss') / 1024)} GiB | {scores} |")
    lines += ["", f"Medians of {repeats} alternating runs. Loop: the train stage's `fit in` (the compiled kernel's "
              "load included) against gensim's train(). Whole: the `python -m pipeline train` process against "
              "gensim's import, vocabulary scan, train() and save (bench/gensim_word2vec.py --stream --save; its "
              "peak RSS includes scoring where scored). Ratios above 1 favour the pipeline."]
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", type=Path, default=ROOT.parent / "shared" / "corpora" / "shakespeare.txt")
    parser.add_argument("--repeats", type=int, default=3, help="0: no part 1 (tutorial settings)")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--scale", type=float, nargs="*", default=[2e6, 6e6, 2e7])
    parser.add_argument("--realistic", nargs="*", default=[], choices=["all", *REALISTIC], metavar="ROW",
                        help=f"rows at realistic settings: all, or some of {', '.join(REALISTIC)}")
    parser.add_argument("--realistic-repeats", type=int, default=3)
    parser.add_argument("--updates", nargs="+", default=["batch", "hogwild"], choices=["batch", "hogwild"],
                        help="the train.updates values part 3 runs the pipeline with, each beside gensim")
    parser.add_argument("--corpora", type=Path, default=Path(tempfile.gettempdir()) / "w2v-bench-corpora",
                        help="where --realistic's corpora are made, once")
    args = parser.parse_args()
    corpus = args.corpus.resolve()
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
           "PYTHONPATH": str(ROOT), "DO_NOT_TRACK": "true", "MLFLOW_TRACKING_URI": ""}
    env.pop("MLFLOW_TRACKING_URI")
    epochs = args.epochs
    lines = tutorial_settings(corpus, args.repeats, epochs, env) if args.repeats else [
        f"# Benchmark — {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC", "",
        f"{platform.node()}: {os.cpu_count()} cores, Python {platform.python_version()}."]
    if args.scale:
        lines += ["", "## Scaling (defaults, one epoch)", "",
                  "| corpus words | vectorize | examples | train, 1 epoch | total | pairs | peak RSS | "
                  "gensim 1 epoch (vocab + train) | training loop words/s: pipeline, gensim, ratio |",
                  "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
        with tempfile.TemporaryDirectory(prefix="w2v-scale-") as tmp:
            for target in args.scale:
                big = scaled_corpus(corpus, int(target), Path(tmp) / f"corpus-{int(target)}.txt")
                big_words = corpus_words(big)
                result = run_pipeline(big, {**DEFAULTS, "train.epochs": 1}, env)
                reference = run_gensim(big, 1, env)
                total = sum(result[stage] for stage in STAGES)
                peak = max(result[f"{stage} rss"] for stage in STAGES)
                pipeline_wps, gensim_wps = big_words / result["fit"], big_words / reference["train"]
                lines.append(
                    f"| {big_words:,} | {fmt(result['vectorize'])} s | {fmt(result['examples'])} s | "
                    f"{fmt(result['train'])} s | {fmt(total)} s | {int(result['pairs']):,} | {fmt(peak, 0)} MiB | "
                    f"{fmt(reference['vocab'] + reference['train'])} s, {fmt(reference['rss'], 0)} MiB | "
                    f"{fmt(pipeline_wps, 0)}, {fmt(gensim_wps, 0)}, **{pipeline_wps / gensim_wps:.2f}x** |")
                print(f"scale {int(target):,} done", file=sys.stderr, flush=True)
                big.unlink()

    rows = list(REALISTIC) if "all" in args.realistic else args.realistic
    if rows:
        lines += realistic_settings(rows, args.realistic_repeats, args.corpora, env, args.updates)
    publish("benchmark", lines)


if __name__ == "__main__":
    main()
