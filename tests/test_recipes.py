"""The committed recipes (recipes/*.yaml): complete for every stage, valid, and run by the README's command
as a DVC experiment that leaves params.yaml and the workspace as they were."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import REPO_ROOT, make_project_copy, tool_env
from pipeline.recipes import experiment_command, shell_line
from w2vpipe.errors import PipelineError
from w2vpipe.params import load_params, read_params_file

RECIPES = sorted((REPO_ROOT / "recipes").glob("*.yaml"))


def sections_the_stages_read() -> set[str]:
    """The params.yaml sections dvc.yaml's stages name (`train`, or a key of it: `train.architecture`)."""
    stages = yaml.safe_load((REPO_ROOT / "dvc.yaml").read_text())["stages"]
    names: set[str] = set()
    for stage in stages.values():
        for entry in stage.get("params", []):
            # A mapping names keys of another file, unless that file is params.yaml.
            keys = [entry] if isinstance(entry, str) else entry.get("params.yaml", [])
            names.update(key.split(".")[0] for key in keys)
    return names


def readme_recipe_command() -> str:
    """The one line of README.md's shell blocks that runs the tutorial's recipe."""
    blocks = re.findall(r"```bash\n(.*?)```", (REPO_ROOT / "README.md").read_text(), re.DOTALL)
    lines = [line for block in blocks for line in block.splitlines() if "recipe" in line and "tutorial" in line]
    assert len(lines) == 1, f"README.md should run the tutorial's recipe in one line, not {lines}"
    return lines[0]


def run_readme_command(project: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", "-c", readme_recipe_command()], cwd=project, env=tool_env(**env),
                          capture_output=True, text=True, timeout=600)


def git_status(project: Path) -> str:
    return subprocess.run(["git", "status", "--porcelain"], cwd=project, capture_output=True, text=True,
                          check=True).stdout


@pytest.mark.parametrize("recipe", RECIPES, ids=[path.stem for path in RECIPES])
def test_every_recipe_sets_every_param_the_stages_read(recipe: Path) -> None:
    """So the experiment is the recipe whatever params.yaml holds (a section missing made export fail)."""
    raw = read_params_file(recipe)
    load_params(recipe)  # raises on a value the schema refuses
    defaults = read_params_file(REPO_ROOT / "params.yaml")
    sections = sections_the_stages_read()
    assert {"corpus", "train", "export", "evaluate"} <= sections
    for section in sections:
        assert section in raw, f"{recipe.name} has no {section} section"
        assert set(defaults[section]) <= set(raw[section]), f"{recipe.name} leaves out {section} keys"


def test_a_recipe_becomes_dvc_exp_run_with_exactly_the_keys_it_sets(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "recipes").mkdir()
    (tmp_path / "recipes" / "short.yaml").write_text("train:\n  epochs: 5\n  optimizer: adam\n"
                                                     "evaluate:\n  probe_words: [king, o'er]\n")
    (tmp_path / "recipes" / "broken.yaml").write_text("train:\n  epochs: 0\n")
    monkeypatch.chdir(tmp_path)
    command = experiment_command("short")
    assert command == [
        "dvc", "exp", "run", "--temp", "-n", "short", "-S", "++train.epochs=5", "-S", "++train.optimizer='adam'",
        "-S", "++evaluate.probe_words=['king','o\\'er']"]
    line = shell_line(command)  # what it prints before running it
    assert shlex.split(line) == command and "-S \"++train.optimizer='adam'\"" in line
    with pytest.raises(PipelineError, match=r"^recipes/broken.yaml: param train.epochs=0 is invalid: it must be at "
                                            r"least 1"):
        experiment_command("broken")
    with pytest.raises(PipelineError, match=r"^recipes/nope.yaml not found: name a recipe of recipes/ \(broken, "
                                            r"short\), from the project root$"):
        experiment_command("nope")


def test_the_readme_command_runs_the_tutorial_recipe_as_an_experiment(tmp_path: Path) -> None:
    project = make_project_copy(tmp_path / "project")
    params_before = (project / "params.yaml").read_bytes()
    result = run_readme_command(project)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert (project / "params.yaml").read_bytes() == params_before
    assert git_status(project) == ""  # nor any other file of the workspace
    shown = json.loads(subprocess.run(["dvc", "exp", "show", "--json"], cwd=project, env=tool_env(),
                                      capture_output=True, text=True, check=True).stdout)
    experiments = {revision["name"]: revision for commit in shown for experiment in commit["experiments"] or []
                   for revision in experiment["revs"]}
    assert "tutorial" in experiments, list(experiments)
    ran = experiments["tutorial"]["data"]["params"]["params.yaml"]["data"]
    recipe = read_params_file(REPO_ROOT / "recipes" / "tutorial.yaml")
    assert {section: {key: ran[section][key] for key in values} for section, values in recipe.items()} == recipe


def test_the_readme_command_leaves_params_yaml_alone_when_the_run_fails(tmp_path: Path) -> None:
    project = make_project_copy(tmp_path / "project")
    params_before = (project / "params.yaml").read_bytes()
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    (mirror / "shakespeare.txt").write_text("not the corpus\n")  # the download stage fails its checksum
    result = run_readme_command(project, W2V_CORPUS_MIRROR=str(mirror))
    assert result.returncode != 0 and "checksum mismatch" in result.stdout + result.stderr
    assert (project / "params.yaml").read_bytes() == params_before
    assert git_status(project) == ""


def test_options_after_the_recipe_name_go_to_dvc_exp_run(tmp_path: Path) -> None:
    project = make_project_copy(tmp_path / "project")
    result = subprocess.run([sys.executable, "-m", "pipeline", "recipe", "tutorial", "--queue"], cwd=project,
                            env=tool_env(), capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    printed = result.stdout.splitlines()[0]
    assert printed.startswith("dvc exp run --temp -n tutorial -S ") and printed.endswith(" --queue")
    queue = subprocess.run(["dvc", "queue", "status"], cwd=project, env=tool_env(), capture_output=True, text=True,
                           check=True).stdout
    assert re.search(r"\btutorial\b.*\bQueued\b", queue), queue
    assert git_status(project) == ""
