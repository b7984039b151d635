"""`python -m pipeline compare` on a small project with two real DVC experiments: each row's differing
param and scores (checked against the experiment's own commit), a 100-column terminal, the loss curves."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest

from conftest import REPO_ROOT, make_project_copy, run, tool_env
from pipeline import compare

# Small and fast: 2,000 lines, 1,000 words, 16 dimensions, one copy of the tables, a tiny word map.
SMALL = {"vectorize.vocab_size": 1000, "train.embedding_dim": 16, "export.map_words": 30,
         "cluster.workers": 1, "corpus.sha256": None}
# The committed baseline says 3 epochs; the experiments train 1 and 2: train.epochs is the only param that differs.
EXPERIMENTS = {"one-epoch": 1, "two-epochs": 2}
EVALUATION_SCORES = ("wordsim353.spearman", "simlex999.spearman", "analogies.accuracy")
# How the table rounds each score (analogies as a percentage).
TABLE_FORMATS = {"wordsim353.spearman": ".3f", "simlex999.spearman": ".3f", "analogies.accuracy": ".1%",
                 "val_loss": ".6g"}
WIDTH = 100


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory, shakespeare: Path) -> Path:
    corpus = tmp_path_factory.mktemp("corpus") / "small.txt"
    with shakespeare.open(encoding="utf-8") as source:
        corpus.write_text("".join(line for _, line in zip(range(2000), source, strict=False)), encoding="utf-8")
    root = make_project_copy(tmp_path_factory.mktemp("compare") / "project",
                             {**SMALL, "corpus.url": str(corpus), "train.epochs": 3})
    for name, epochs in EXPERIMENTS.items():
        run(["dvc", "exp", "run", "-n", name, "-S", f"train.epochs={epochs}"], root)
    return root


def experiment_revs(root: Path) -> dict[str, str]:
    """Each experiment's commit, from git's refs (not from `dvc exp show`, which compare itself reads)."""
    refs = run(["git", "for-each-ref", "refs/exps", "--format=%(refname:lstrip=-1) %(objectname)"], root).stdout
    revs = {name: rev for name, rev in (line.split() for line in refs.splitlines()) if name in EXPERIMENTS}
    assert set(revs) == set(EXPERIMENTS)  # besides them, DVC keeps its own refs there (EXEC_HEAD...)
    return revs


def committed(root: Path, rev: str, path: str) -> str:
    return run(["git", "show", f"{rev}:{path}"], root).stdout


def committed_scores(root: Path, rev: str) -> dict[str, float]:
    evaluation = json.loads(committed(root, rev, "metrics/evaluate.json"))
    scores = {name: evaluation[name.split(".")[0]][name.split(".")[1]] for name in EVALUATION_SCORES}
    return {**scores, "val_loss": json.loads(committed(root, rev, "metrics/train.json"))["val_loss"]}


def compare_command(*arguments: str) -> list[str]:
    return ["python", "-m", "pipeline", "compare", *arguments]


def test_each_experiment_has_a_row_with_its_param_and_scores_in_100_columns(project: Path) -> None:
    output = run(compare_command(), project, tool_env(COLUMNS=str(WIDTH))).stdout
    lines = output.splitlines()
    assert max(len(line) for line in lines) <= WIDTH, output
    # Scores first, then only the param that differs across the rows; dotted names on two lines.
    assert lines[0].split() == ["wordsim353", "simlex999", "analogies", "train"]
    assert lines[1].split() == ["experiment", "spearman", "spearman", "accuracy", "val_loss", "epochs"]
    rows = {line.split()[0]: line.split()[1:] for line in lines[3:]}
    assert set(rows) == {"workspace", "main", *EXPERIMENTS}
    for name, rev in experiment_revs(project).items():
        scores = committed_scores(project, rev)
        assert rows[name] == [*(format(scores[score], spec) for score, spec in TABLE_FORMATS.items()),
                              str(EXPERIMENTS[name])]


def test_json_gives_each_experiment_its_scores_in_full(project: Path) -> None:
    shown = json.loads(run(compare_command("--json"), project).stdout)
    by_name = {row["name"]: row for row in shown}
    for name, rev in experiment_revs(project).items():
        assert by_name[name]["rev"] == rev and by_name[name]["kind"] == "experiment"
        assert by_name[name]["scores"] == committed_scores(project, rev)
        assert by_name[name]["params"] == {"train.epochs": EXPERIMENTS[name]}


def test_plot_draws_one_labelled_loss_curve_per_experiment(project: Path, tmp_path: Path) -> None:
    picture = tmp_path / "curves.png"
    run(compare_command("--plot", str(picture)), project)
    assert picture.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    # What the command drew, drawn again in process: one line per row in each panel, from each commit's history.
    rows = compare.load_experiments(project)
    figure = compare.write_png(tmp_path / "again.png", compare.curves(project, rows, compare.differing_params(rows)))
    revs = experiment_revs(project)
    for axis, curve in zip(figure.axes, ("loss", "val_loss"), strict=True):
        lines = {line.get_label(): line for line in axis.get_lines()}
        assert set(lines) == {"workspace: train.epochs=2", "main: train.epochs=3", "one-epoch: train.epochs=1",
                              "two-epochs: train.epochs=2"}
        for name, epochs in EXPERIMENTS.items():
            history = list(csv.DictReader(io.StringIO(committed(project, revs[name], "metrics/train_history.csv"))))
            drawn = lines[f"{name}: train.epochs={epochs}"]
            assert list(drawn.get_xdata()) == list(range(epochs))
            assert list(drawn.get_ydata()) == [float(row[curve]) for row in history]


def test_plot_html_is_a_page_that_opens_offline(project: Path, tmp_path: Path) -> None:
    page = tmp_path / "curves.html"
    run(compare_command("--plot", str(page)), project)
    html = page.read_text(encoding="utf-8")
    assert "one-epoch: train.epochs=1" in html and "two-epochs: train.epochs=2" in html
    assert '<script src="http' not in html and "plotly.js v" in html  # plotly itself inside, no CDN


def test_dvc_exp_show_can_fit_the_scores_alone_in_100_columns(project: Path) -> None:
    """The README's plain-DVC command: names and the three scores (no room for params: DVC's headers are long)."""
    output = run(["dvc", "exp", "show", "--no-pager", "--drop", "^(?!Experiment$)", "--keep",
                  r"(wordsim353|simlex999)\.spearman$|analogies\.accuracy$"], project,
                 tool_env(COLUMNS=str(WIDTH))).stdout
    assert max(len(line) for line in output.splitlines()) <= WIDTH, output
    for name, rev in experiment_revs(project).items():
        (row,) = [line for line in output.splitlines() if f"[{name}]" in line]
        scores = committed_scores(project, rev)
        # DVC's own rounding: 5 significant digits.
        assert row.split()[-3:] == [f"{scores[score]:.5g}" for score in EVALUATION_SCORES], row


def test_outside_a_dvc_project_and_without_experiments_one_line_says_what_to_do(tmp_path: Path) -> None:
    env = tool_env(PYTHONPATH=str(REPO_ROOT))
    outside = run(compare_command(), tmp_path, env, check=False)
    assert outside.returncode == 2 and outside.stdout == ""
    assert outside.stderr.startswith("error: dvc exp show failed in") and "not inside of a DVC repository" in \
        outside.stderr and outside.stderr.count("\n") == 1
    fresh = make_project_copy(tmp_path / "fresh")
    none_yet = run(compare_command(), fresh, env, check=False)
    assert none_yet.returncode == 2
    assert none_yet.stderr == ("error: no DVC experiments of HEAD to compare: run some (dvc exp run -S key=value), "
                               "or name the commit they started from with --rev COMMIT\n")
    bad_plot = run(compare_command("--plot", "curves.svg"), fresh, env, check=False)
    assert bad_plot.stderr == "error: --plot curves.svg: name a .png or .html file\n"
