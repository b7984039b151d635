"""`python -m pipeline recipe NAME`: run the committed recipe recipes/NAME.yaml as the DVC experiment NAME.

    python -m pipeline recipe tutorial      # the TensorFlow tutorial's exact recipe
    python -m pipeline recipe tutorial -f   # options after the name go to dvc exp run (-f: run it again)

It prints, then runs, `dvc exp run --temp -n NAME -S ++key=value ...` with every value the recipe sets. The
experiment runs in a temporary copy of the repository: params.yaml (uncommitted edits included) and the
workspace's outputs stay as they are, whether it succeeds or fails. `dvc exp show` compares it with the
others; `dvc exp apply NAME` brings its outputs into the workspace.
"""

from __future__ import annotations

import argparse
import os
import shlex
from pathlib import Path
from typing import Any

from w2vpipe.errors import PipelineError
from w2vpipe.params import flatten, override, params_from_dict, read_params_file

RECIPES_DIR = Path("recipes")


def experiment_command(name: str) -> list[str]:
    """The `dvc exp run` command line that runs recipe `name` (checked against the params schema first)."""
    path = RECIPES_DIR / f"{name}.yaml"
    if not path.is_file():
        known = ", ".join(sorted(recipe.stem for recipe in RECIPES_DIR.glob("*.yaml"))) or "none here"
        raise PipelineError(f"{path} not found: name a recipe of {RECIPES_DIR}/ ({known}), from the project root")
    raw = read_params_file(path)
    try:
        values = flatten(params_from_dict(raw))
    except PipelineError as error:
        raise PipelineError(f"{path}: {error}") from None
    # Only the keys the recipe sets: the others (cluster.*, say) keep the checkout's values.
    keys = [f"{section}.{key}" for section, entries in raw.items() for key in entries or {}]
    return ["dvc", "exp", "run", "--temp", "-n", name,
            *(argument for key in keys for argument in ("-S", override(key, values[key])))]


def shell_line(command: list[str]) -> str:
    """`command` as one line a shell runs as it is, readably: Hydra's single quotes inside double ones."""
    def shown(argument: str) -> str:
        quoted = shlex.quote(argument)
        return f'"{argument}"' if quoted != argument and not set(argument) & set('"$`\\!') else quoted

    return " ".join(shown(argument) for argument in command)


def add_parser(commands: Any) -> None:
    parser = commands.add_parser("recipe", help="run a committed recipe (recipes/NAME.yaml) as a DVC experiment",
                                 description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("name", help="a recipe of recipes/, without .yaml (e.g. tutorial)")
    parser.add_argument("options", nargs=argparse.REMAINDER,
                        help="options for dvc exp run: -f replaces an experiment of the same name, --queue queues it")


def run(args: argparse.Namespace) -> None:
    command = experiment_command(args.name) + args.options
    print(shell_line(command), flush=True)
    # DVC takes this process over: its output, its Ctrl-C and its exit status are the command's.
    try:
        os.execvp(command[0], command)
    except FileNotFoundError:
        raise PipelineError("dvc not found: activate the project's environment (source .venv/bin/activate)") from None
