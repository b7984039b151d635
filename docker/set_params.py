"""Set params.yaml values for one containerized run: `python docker/set_params.py train.epochs=2 ...`.

The values are read and checked as the pipeline reads params.yaml (`w2vpipe.params`: YAML 1.2 scalars,
the schema's keys and ranges), so a bad one stops here with one line; params.yaml keeps its comments.
"""

from __future__ import annotations

import sys
from pathlib import Path

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedSeq

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))  # the checkout's library

from w2vpipe.errors import PipelineError  # noqa: E402
from w2vpipe.params import (  # noqa: E402
    apply_overrides,
    params_from_dict,
    parse_overrides,
    read_params_file,
    yaml_value,
)

PARAMS_FILE = Path("params.yaml")


def main(assignments: list[str]) -> int:
    try:
        overrides = parse_overrides(assignments)
        params_from_dict(apply_overrides(read_params_file(PARAMS_FILE), overrides))
    except PipelineError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    yaml = YAML()  # round trip: comments and layout kept, as params.yaml writes them
    yaml.width = 4096
    yaml.representer.add_representer(type(None), lambda dumper, _: dumper.represent_scalar("tag:yaml.org,2002:null",
                                                                                            "null"))
    document = yaml.load(PARAMS_FILE)
    for key, value in overrides.items():
        section, _, name = key.partition(".")
        if document.get(section) is None:
            document[section] = {}
        if isinstance(value, list):
            value = CommentedSeq(value)
            value.fa.set_flow_style()
        document[section][name] = value
    yaml.dump(document, PARAMS_FILE)
    print("params.yaml: " + ", ".join(f"{key}={yaml_value(value)}" for key, value in overrides.items()), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
