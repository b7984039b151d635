"""What a pipeline run ends with: a short markdown summary, for Prefect's artifact and the terminal."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pipeline import layout
from w2vpipe.params import yaml_value

RESULT_FILES = {"train": layout.TRAIN_METRICS_FILE, "evaluation": layout.EVALUATE_METRICS_FILE,
                "neighbours": layout.NEIGHBOURS_FILE}


def read_results(read_text: Callable[[Path], str | None]) -> dict[str, Any]:
    """The final metrics, scores and neighbours, from the workspace or an experiment's commit."""
    results = {}
    for name, path in RESULT_FILES.items():
        text = read_text(path)
        if text:
            results[name] = json.loads(text)
    return results


def workspace_file(path: Path) -> str | None:
    return path.read_text(encoding="utf-8") if path.is_file() else None


def summary_markdown(title: str, stages: dict[str, str], changed: dict[str, Any], results: dict[str, Any],
                     links: list[str]) -> str:
    lines = [f"# {title}", "", "| stage | outcome |", "| --- | --- |",
             *(f"| {stage} | {outcome} |" for stage, outcome in stages.items()), ""]
    lines.append("Params that differ from the defaults: " + (
        ", ".join(f"`{key}={yaml_value(value)}`" for key, value in changed.items()) if changed else "none") + ".")
    if "train" in results:
        lines += ["", "Final " + ", ".join(f"{key} {value:.4f}" for key, value in results["train"].items()) + "."]
    if "evaluation" in results:
        lines += ["", "| benchmark | score | coverage |", "| --- | ---: | ---: |"]
        for name, scores in results["evaluation"].items():
            # Word pairs: Spearman; analogies: the share answered right.
            score = (f"{scores['spearman']:.3f}" if scores.get("spearman") is not None
                     else f"{scores['accuracy']:.1%}" if scores.get("accuracy") is not None else "n/a")
            lines.append(f"| {name} | {score} | {scores['coverage']:.1%} |")
    if "neighbours" in results:
        lines += ["", "| probe | nearest words (cosine) |", "| --- | --- |"]
        for word, nearest in results["neighbours"]["neighbours"].items():
            lines.append(f"| {word} | " + ", ".join(f"{n['word']} ({n['cosine']:.2f})" for n in nearest[:5]) + " |")
        for word in results["neighbours"]["missing"]:
            lines.append(f"| {word} | not in the vocabulary |")
    lines += ["", *(f"- {link}" for link in links)]
    return "\n".join(lines)
