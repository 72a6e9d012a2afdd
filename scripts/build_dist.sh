#!/usr/bin/env bash
# Build what `ray up` ships to every node (cluster.yaml and orchestrator/cluster/local.yaml mount
# ./dist at ~/dlgsweep-dist):
#   dist/dlgsweep-<version>-py3-none-any.whl   this checkout as a wheel (tracked and untracked
#                                              files that git does not ignore)
#   dist/constraints.txt                       name==version of every package in the venv that
#                                              runs `ray up`; every node installs with
#                                              `pip install -c constraints.txt`, so each node,
#                                              the first or one added hours later, gets the same
#                                              Ray, torch, pyarrow, ... as this machine
#
# Usage: scripts/build_dist.sh [OUT_DIR]        (default: <repo>/dist, emptied first)
# Env:   PYTHON  the venv's python (default: $VIRTUAL_ENV/bin/python, else <repo>/.venv/bin/python)
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT="${1:-$REPO/dist}"
if [[ -n "${PYTHON:-}" ]]; then
  PY="$PYTHON"
elif [[ -n "${VIRTUAL_ENV:-}" ]]; then
  PY="$VIRTUAL_ENV/bin/python"
else
  PY="$REPO/.venv/bin/python"
fi
[[ -x "$PY" ]] || { echo "build_dist: $PY missing: set PYTHON to the venv's python" >&2; exit 1; }

SRC="$(mktemp -d "${TMPDIR:-/tmp}/dlgsweep-src.XXXXXX")"
trap 'rm -rf "$SRC"' EXIT
# Build from a clean copy: an in-tree build reuses build/lib, which keeps modules deleted since.
if git -C "$REPO" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
  git -C "$REPO" ls-files -z --cached --others --exclude-standard \
    | (cd "$REPO" && tar --null -T - --ignore-failed-read -cf - 2>/dev/null) \
    | tar -x -C "$SRC"
else
  tar -C "$REPO" --exclude=.venv --exclude=dist --exclude=build --exclude=results \
    --exclude=report --exclude='*.egg-info' -cf - . | tar -x -C "$SRC"
fi

rm -rf "$OUT"
mkdir -p "$OUT"
isolation=()
# offline-friendly: build with this venv's setuptools when it has one (else pip fetches it)
"$PY" -c 'import setuptools' 2>/dev/null && isolation=(--no-build-isolation)
"$PY" -m pip wheel -q --no-deps "${isolation[@]}" --wheel-dir "$OUT" "$SRC"

# The venv's exact versions; not the installers themselves, not dlgsweep (the wheel above).
"$PY" -m pip list --format=freeze --exclude-editable 2>/dev/null \
  | grep -E '^[A-Za-z0-9._-]+==' \
  | grep -viE '^(pip|setuptools|wheel|dlgsweep)==' >"$OUT/constraints.txt"
grep -qiE '^ray==' "$OUT/constraints.txt" \
  || { echo "build_dist: no ray in $PY's environment" >&2; exit 1; }

wheels=("$OUT"/dlgsweep-*.whl)
((${#wheels[@]} == 1)) || { echo "build_dist: expected one wheel in $OUT" >&2; exit 1; }
echo "built ${wheels[0]} and $OUT/constraints.txt" \
  "($(wc -l <"$OUT/constraints.txt") pins, $(grep -iE '^(ray|torch)==' "$OUT/constraints.txt" \
  | tr '\n' ' '))"
