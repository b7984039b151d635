#!/usr/bin/env bash
# The image's entry point: `python -m pipeline repro`, with everything worth keeping in /out (a host
# folder mounted there): exports/ and metrics/ (copied when the run succeeds), dvc.lock and params.yaml
# (what made them), mlflow.db and mlartifacts/ (the MLflow store), dvc-cache/ (DVC's cache: a later run
# restores what it has instead of recomputing it), state/ (checkpoints of a training that was stopped).
#   docker run --rm -v "$HOME/w2vpipe-out:/out" w2vpipe [--set section.key=value ...] [--force]
#   --set     a params.yaml value for this run (repeatable), checked like params.yaml itself
#   --force   rerun every stage (dvc repro --force)
# Any other first argument runs as a command instead (docker run -it w2vpipe bash). W2V_OUT moves /out;
# MLFLOW_TRACKING_URI, if set, replaces the store in /out.
set -euo pipefail

die() { echo "error: $*" >&2; exit 2; }

overrides=()
force=()
while [ $# -gt 0 ]; do
    case "$1" in
        --set) [ $# -ge 2 ] || die "--set needs section.key=value (e.g. --set train.epochs=5)"
               overrides+=("$2"); shift 2 ;;
        --set=*) overrides+=("${1#--set=}"); shift ;;
        --force) force=(--force); shift ;;
        -h|--help) sed -n '2,/^set -e/{/^set -e/d;s/^# \{0,1\}//;p}' "$0"; exit 0 ;;
        -*) die "unknown option $1 (--set section.key=value, --force, --help)" ;;
        *) exec "$@" ;;
    esac
done

out="${W2V_OUT:-/out}"
if ! { mkdir -p "$out" && touch "$out/.w2vpipe-write-test" && rm -f "$out/.w2vpipe-write-test"; } 2>/dev/null; then
    die "$out is not writable by uid $(id -u) (gid $(id -g)): run with --user \"\$(id -u):\$(id -g)\" to write as the owner of the folder mounted there"
fi

# Run in the image's checkout; another user (docker run --user) runs in a copy it owns: git refuses a
# repository owned by someone else, and the checkout is writable by its owner only.
project=/app
if [ ! -O "$project" ]; then
    project="${TMPDIR:-/tmp}/w2vpipe"
    rm -rf "$project" && cp -R /app "$project"
fi
cd "$project"
if [ ! -w "${HOME:-/}" ]; then  # a uid the image does not know has HOME=/
    export HOME="${TMPDIR:-/tmp}/w2vpipe-home" && mkdir -p "$HOME"
fi

if [ ${#overrides[@]} -gt 0 ]; then
    python docker/set_params.py "${overrides[@]}"
fi
dvc cache dir --local "$out/dvc-cache"
# The pipeline's own state (checkpoints of an unfinished training, tracking waiting for its store)
# outlives the container too: a run that was stopped resumes in the next one.
if [ ! -e .w2v ]; then
    mkdir -p "$out/state" && ln -s "$out/state" .w2v
fi
if [ -z "${MLFLOW_TRACKING_URI:-}" ]; then
    export MLFLOW_TRACKING_URI="sqlite:///$out/mlflow.db"
    if [ ! -e "$out/mlflow.db" ]; then
        # The store's experiment as the pipeline makes it, with its artifacts beside the store (the
        # pipeline puts them beside the project, DVC_ROOT, which the container does not keep).
        DVC_ROOT="$out" python -c 'from pipeline import tracking; tracking.experiment_id(tracking.mlflow_client())'
    fi
fi

# `docker stop` signals this script, the container's PID 1: pass it on to the run's `python -m pipeline`
# processes (the repro and the stage it runs), which unwind: the MLflow run ends KILLED, the training's
# checkpoints stay in state/. This script waits for every process: the container ends with it.
stopping=
signalled=()
# shellcheck disable=SC2317  # (run by the trap)
stop() {
    trap '' TERM INT
    stopping=1
    local process arguments
    for process in /proc/[0-9]*; do
        mapfile -d '' -t arguments 2>/dev/null <"$process/cmdline" || continue
        if [ "${arguments[*]:1:2}" = "-m pipeline" ] && kill -TERM "${process#/proc/}" 2>/dev/null; then
            signalled+=("${process#/proc/}")
        fi
    done
}
trap stop TERM INT
python -m pipeline repro "${force[@]}" &
status=0
wait "$!" || status=$?
if [ -n "$stopping" ]; then
    status=143
    for pid in "${signalled[@]}"; do
        while read -r _ _ state _ 2>/dev/null <"/proc/$pid/stat" && [ "$state" != Z ]; do sleep 0.2; done
    done
fi
if [ "$status" = 0 ]; then
    for folder in exports metrics; do
        rm -rf "$out/$folder.tmp" && cp -R "$folder" "$out/$folder.tmp"
        rm -rf "${out:?}/$folder" && mv "$out/$folder.tmp" "$out/$folder"
    done
    cp dvc.lock params.yaml "$out/"
    echo "results in $out: exports/ metrics/ dvc.lock params.yaml mlflow.db mlartifacts/ dvc-cache/ state/"
fi
exit "$status"
