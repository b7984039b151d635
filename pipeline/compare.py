"""`python -m pipeline compare`: the workspace and its DVC experiments side by side, in a terminal's width.

`dvc exp show` puts every param, metric and dependency hash in one table, which at 100 columns shows
only `…`. This shows the rows it lists (the workspace, the baseline commit and its experiments), one
line each: the name, the three evaluation scores (WordSim353 and SimLex-999 Spearman, analogy
accuracy), the final held-out loss, then only the params that differ across the rows. Columns that
do not fit the width continue in a block below, the names repeated.

    python -m pipeline compare                      # HEAD's experiments
    python -m pipeline compare --plot curves.png    # and their loss curves (.html: a zoomable page)

The curves file opens offline, unlike `dvc plots diff`'s page (it loads Vega from a CDN).
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline import layout
from w2vpipe.errors import PipelineError
from w2vpipe.files import atomic_file

if TYPE_CHECKING:
    from matplotlib.figure import Figure

# Each score, named as `dvc exp show` names its column (the keys inside the file, dotted): its metrics file
# (as dvc.yaml declares it) and its format.
SCORES: dict[str, tuple[Path, str]] = {
    "wordsim353.spearman": (layout.EVALUATE_METRICS_FILE, ".3f"),
    "simlex999.spearman": (layout.EVALUATE_METRICS_FILE, ".3f"),
    "analogies.accuracy": (layout.EVALUATE_METRICS_FILE, ".1%"),
    "val_loss": (layout.TRAIN_METRICS_FILE, ".6g"),
}
# The per-epoch columns of metrics/train_history.csv drawn, one panel each (val_loss is absent when no
# lines are held out, as in the tutorial's recipe).
CURVES = {"loss": "loss on the training pairs", "val_loss": "val_loss on the held-out lines"}
GAP = "  "
# Where the width is unknown (output to a file or a pipe, COLUMNS unset): the README's width.
DEFAULT_WIDTH = 100
# Narrower than this, no table reads anyway; the floor keeps every column at least a few characters.
MIN_WIDTH = 40
# matplotlib's default colours (tab10), so the picture and the page colour each experiment alike.
COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22",
           "#17becf")
# Past ten lines the colours repeat: the marker tells those apart (matplotlib's name, plotly's name).
MARKERS = (("o", "circle"), ("s", "square"), ("^", "triangle-up"), ("D", "diamond"))
# Legend labels up to this long sit two to a row below the panels (the figure is 14 inches wide).
LEGEND_PAIR_CHARS = 80


@dataclass(frozen=True)
class Experiment:
    """One row of `dvc exp show`: the workspace, a baseline commit or an experiment."""

    name: str
    kind: str  # "workspace", "baseline" or "experiment"
    rev: str  # "workspace", or the commit that holds its params and results
    params: dict[str, Any]  # params.yaml flattened: {"train.epochs": 20, ...}
    scores: dict[str, float | None]  # SCORES' names; None where the run has none (queued, failed, not run)


@dataclass(frozen=True)
class Column:
    """A table column headed by a dotted name on two lines, its last part under the rest ("train" over
    "embedding_dim"): headers then take little more room than the values under them."""

    top: str
    name: str
    cells: list[str]
    right: bool  # numbers align right, text left

    @classmethod
    def of(cls, header: str, cells: list[str], right: bool) -> Column:
        top, _, name = header.rpartition(".")
        return cls(top, name, cells, right)

    @property
    def width(self) -> int:
        return max(len(self.top), len(self.name), *(len(cell) for cell in self.cells))


@dataclass(frozen=True)
class Curve:
    """One experiment's line in each panel of the loss plot."""

    label: str
    history: dict[str, list[float]]  # "epoch" and the CURVES it has: one value per epoch
    dashed: bool  # the workspace, drawn dashed and last (on top): an experiment with the same results shows through


def add_parser(commands: Any) -> None:
    parser = commands.add_parser("compare", help="the workspace and its DVC experiments side by side: scores and "
                                 "the params that differ", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--all", action="store_true", help="every param, not only those that differ across the rows")
    parser.add_argument("--json", action="store_true", help="the rows as JSON on stdout (full precision), for machines")
    parser.add_argument("--rev", metavar="COMMIT", help="the experiments of this baseline commit (default: HEAD)")
    parser.add_argument("--plot", type=Path, metavar="FILE",
                        help="also draw each row's loss and val_loss per epoch into FILE: .png, or .html (a "
                             "zoomable page with plotly inside: it opens offline)")


def run(args: argparse.Namespace) -> None:
    root = Path.cwd()
    if args.plot and args.plot.suffix.lower() not in PLOT_WRITERS:  # before the slow part
        raise PipelineError(f"--plot {args.plot}: name a .png or .html file")
    rows = load_experiments(root, args.rev)
    keys = all_params(rows) if args.all else differing_params(rows)
    print(as_json(rows, keys) if args.json else "\n".join(render(table_columns(rows, keys), terminal_width())))
    if args.plot:
        plot_curves(args.plot, curves(root, rows, keys))


def load_experiments(root: Path, rev: str | None = None) -> list[Experiment]:
    """The rows `dvc exp show` lists for the baseline `rev` (HEAD by default); at least one experiment."""
    rows = []
    for baseline in _exp_show_json(root, rev):
        is_workspace = baseline["rev"] == "workspace"
        rows.append(_experiment(baseline, baseline["name"] or ("workspace" if is_workspace else baseline["rev"][:7]),
                                "workspace" if is_workspace else "baseline"))
        for experiment in baseline.get("experiments") or []:
            # DVC names a queued, running or failed experiment's state; a finished one has no executor left.
            state = (experiment.get("executor") or {}).get("state")
            for revision in experiment["revs"]:
                name = revision["name"] or experiment["name"] or revision["rev"][:7]
                rows.append(_experiment(revision, f"{name} ({state})" if state else name, "experiment"))
    if not any(row.kind == "experiment" for row in rows):
        raise PipelineError(f"no DVC experiments of {rev or 'HEAD'} to compare: run some (dvc exp run -S key=value), "
                            "or name the commit they started from with --rev COMMIT")
    return rows


def _exp_show_json(root: Path, rev: str | None) -> list[dict[str, Any]]:
    """`dvc exp show --json`: DVC's machine-readable rows (its table is for people, and cut to the width)."""
    command = [sys.executable, "-m", "dvc", "exp", "show", "--json", *(["--rev", rev] if rev else [])]
    shown = subprocess.run(command, cwd=root, capture_output=True, text=True)
    if shown.returncode != 0:
        errors = [line.removeprefix("ERROR: ") for line in shown.stderr.splitlines() if line.startswith("ERROR")]
        detail = errors[-1] if errors else f"exit status {shown.returncode}"
        fix = "run it from the project's checkout" + (", with --rev naming one of its commits" if rev else "")
        raise PipelineError(f"dvc exp show failed in {root} ({detail}): {fix}")
    return json.loads(shown.stdout)


def _experiment(entry: dict[str, Any], name: str, kind: str) -> Experiment:
    data = entry.get("data") or {}
    params: dict[str, Any] = {}
    for params_file in (data.get("params") or {}).values():
        params.update(_flatten(params_file.get("data") or {}))
    metrics = data.get("metrics") or {}
    scores = {score: _metric(metrics, file, score.split(".")) for score, (file, _) in SCORES.items()}
    return Experiment(name, kind, entry["rev"], params, scores)


def _flatten(section: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested params as `dvc exp run -S` names them: {"train": {"epochs": 5}} -> {"train.epochs": 5}."""
    flat = {}
    for key, value in section.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _metric(metrics: dict[str, Any], file: Path, keys: list[str]) -> float | None:
    value: Any = (metrics.get(file.as_posix()) or {}).get("data")
    for key in keys:
        value = value.get(key) if isinstance(value, dict) else None
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def all_params(rows: list[Experiment]) -> list[str]:
    """Every param any row has, in params.yaml's order."""
    return list(dict.fromkeys(key for row in rows for key in row.params))


def differing_params(rows: list[Experiment]) -> list[str]:
    """The params whose values are not the same in every row."""
    return [key for key in all_params(rows)
            if len({json.dumps(row.params.get(key), sort_keys=True) for row in rows}) > 1]


def format_param(value: Any) -> str:
    """As `-S` takes it: skipgram, true, null, 0.001, ["king", "queen"] (JSON, but strings bare)."""
    return value if isinstance(value, str) else json.dumps(value)


def format_score(score: str, value: float | None) -> str:
    return "-" if value is None else format(value, SCORES[score][1])


def as_json(rows: list[Experiment], keys: list[str]) -> str:
    return json.dumps([{"name": row.name, "kind": row.kind, "rev": row.rev,
                        "params": {key: row.params.get(key) for key in keys}, "scores": row.scores}
                       for row in rows], indent=2)


def table_columns(rows: list[Experiment], keys: list[str]) -> list[Column]:
    """Name, scores, then params: the scores come first so that they stay in the first block."""
    return [Column.of("experiment", [row.name for row in rows], right=False),
            *(Column.of(score, [format_score(score, row.scores[score]) for row in rows], right=True)
              for score in SCORES),
            *(Column.of(key, [format_param(row.params.get(key)) for row in rows], right=False) for key in keys)]


def terminal_width() -> int:
    return max(shutil.get_terminal_size((DEFAULT_WIDTH, 24)).columns, MIN_WIDTH)


def render(columns: list[Column], width: int) -> list[str]:
    """The columns as lines of at most `width` characters: the first column (the names) begins every block,
    the others follow in order, as many per block as fit (as pandas prints a wide frame)."""
    names = _clip(columns[0], width // 3)
    room = width - names.width  # for the other columns, each with its gap
    blocks: list[list[Column]] = []
    used = room  # full: the first column opens a block
    for column in (_clip(column, room - len(GAP)) for column in columns[1:]):
        if used + len(GAP) + column.width > room:
            blocks.append([])
            used = 0
        blocks[-1].append(column)
        used += len(GAP) + column.width
    lines: list[str] = []
    for block in blocks:
        if lines:
            lines.append("")
        shown = [names, *block]
        lines.append(_line([column.top for column in shown], shown))
        lines.append(_line([column.name for column in shown], shown))
        lines.append(GAP.join("-" * column.width for column in shown))
        lines.extend(_line([column.cells[row] for column in shown], shown) for row in range(len(names.cells)))
    return lines


def _line(cells: list[str], columns: list[Column]) -> str:
    return GAP.join(cell.rjust(column.width) if column.right else cell.ljust(column.width)
                    for cell, column in zip(cells, columns, strict=True)).rstrip()


def _clip(column: Column, size: int) -> Column:
    """The column with every text longer than `size` cut to its end (a path's file name, a name's last part)."""
    def cut(text: str) -> str:
        return text if len(text) <= size else "…" + text[len(text) - size + 1:]

    return Column(cut(column.top), cut(column.name), [cut(cell) for cell in column.cells], column.right)


def curves(root: Path, rows: list[Experiment], keys: list[str]) -> list[Curve]:
    """Each row's per-epoch history, labelled with its name and the given params, the workspace's last; a row
    without one (queued, not yet trained, a commit before the history was kept) is named on stderr, left out."""
    found = []
    missing = []
    for row in rows:
        history = read_history(root, row)
        if history is None:
            missing.append(row.name)
            continue
        settings = ", ".join(f"{key}={format_param(row.params.get(key))}" for key in keys)
        found.append(Curve(f"{row.name}: {settings}" if settings else row.name, history, row.kind == "workspace"))
    if missing:
        print(f"no {layout.TRAIN_HISTORY_FILE} in {', '.join(missing)}: not drawn", file=sys.stderr)
    if not found:
        raise PipelineError(f"no row has a {layout.TRAIN_HISTORY_FILE} to draw: train one (dvc exp run)")
    return sorted(found, key=lambda curve: curve.dashed)  # stable: the rows' order, the workspace last


def read_history(root: Path, row: Experiment) -> dict[str, list[float]] | None:
    """The row's metrics/train_history.csv as columns: "epoch" and the CURVES it has; None where it has none."""
    text = _history_text(root, row)
    table = list(csv.DictReader(io.StringIO(text))) if text else []
    if not table or "loss" not in table[0]:
        return None
    return {name: [float(line[name]) for line in table] for name in ("epoch", *CURVES) if name in table[0]}


def _history_text(root: Path, row: Experiment) -> str | None:
    """The file in the workspace, else the one in the row's commit (each experiment commits it: dvc.yaml
    keeps it in git, `cache: false`)."""
    if row.kind == "workspace":
        path = root / layout.TRAIN_HISTORY_FILE
        return path.read_text(encoding="utf-8") if path.is_file() else None
    # "./" reads the path from the current folder, wherever the DVC project sits in its git repository.
    shown = subprocess.run(["git", "show", f"{row.rev}:./{layout.TRAIN_HISTORY_FILE.as_posix()}"], cwd=root,
                           capture_output=True, text=True)
    return shown.stdout if shown.returncode == 0 else None


def plot_curves(path: Path, drawn: list[Curve]) -> None:
    PLOT_WRITERS[path.suffix.lower()](path, drawn)
    print(f"loss curves of {len(drawn)} rows: {path}", file=sys.stderr)


def write_png(path: Path, drawn: list[Curve]) -> Figure:
    """One panel per CURVES entry, one labelled line per experiment, the legend below both. Returns the figure
    (closed), whose lines say what was drawn."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    figure, axes = plt.subplots(1, len(CURVES), figsize=(14, 6.5), layout="constrained", sharex=True)
    for axis, (curve, title) in zip(axes, CURVES.items(), strict=True):
        for index, line in enumerate(drawn):
            if curve in line.history:
                axis.plot(line.history["epoch"], line.history[curve], label=line.label, markersize=4,
                          marker=_marker(index)[0], color=COLOURS[index % len(COLOURS)],
                          linestyle="--" if line.dashed else "-")
        axis.set_title(title)
        axis.set_xlabel("epoch")
        axis.set_ylabel(curve)
        axis.xaxis.set_major_locator(MaxNLocator(integer=True))
        axis.grid(alpha=0.3)
    handles, labels = axes[0].get_legend_handles_labels()
    pairs = len(labels) > 4 and max(len(label) for label in labels) <= LEGEND_PAIR_CHARS
    figure.legend(handles, labels, loc="outside lower center", ncols=2 if pairs else 1, fontsize=10)
    with atomic_file(path) as tmp:
        figure.savefig(tmp, dpi=100, format="png")
    plt.close(figure)
    return figure


def write_html(path: Path, drawn: list[Curve]) -> None:
    """The same panels as zoomable plotly charts; clicking a legend entry hides that experiment in both."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    figure = make_subplots(rows=1, cols=len(CURVES), subplot_titles=list(CURVES.values()))
    for index, line in enumerate(drawn):
        for column, curve in enumerate(CURVES, start=1):
            if curve in line.history:
                figure.add_trace(go.Scatter(x=line.history["epoch"], y=line.history[curve], mode="lines+markers",
                                            name=line.label, legendgroup=line.label, showlegend=column == 1,
                                            marker={"symbol": _marker(index)[1]},
                                            line={"color": COLOURS[index % len(COLOURS)],
                                                  "dash": "dash" if line.dashed else "solid"}),
                                 row=1, col=column)
    figure.update_xaxes(title_text="epoch")
    figure.update_layout(title="loss per epoch", legend={"orientation": "h", "y": -0.2}, height=650)
    with atomic_file(path) as tmp:
        tmp.write_text(figure.to_html(include_plotlyjs=True, full_html=True, div_id="loss-curves"), encoding="utf-8")


def _marker(index: int) -> tuple[str, str]:
    return MARKERS[index // len(COLOURS) % len(MARKERS)]


PLOT_WRITERS: dict[str, Callable[[Path, list[Curve]], object]] = {".png": write_png, ".html": write_html}
