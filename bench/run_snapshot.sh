#!/usr/bin/env bash
# Run a benchmark from a snapshot of HEAD, so that editing the tree meanwhile cannot
# change the code under measurement (autograph re-reads source files when it traces).
#   bash bench/run_snapshot.sh bench/serve_load.py --max-wait-ms 0 2
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
snap="$(mktemp -d /tmp/bertclf-snap.XXXXXX)"
git -C "$repo" archive HEAD src bench | tar -x -C "$snap"
script="$1"; shift
BERTCLF_REPO="$repo" PYTHONPATH="$snap/src" "$repo/.venv/bin/python" "$snap/$script" "$@"
