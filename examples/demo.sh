#!/usr/bin/env bash
# The whole bertclf pipeline on the shipped demo data (3 classes x 32 support tickets),
# with the offline default encoder. Run through `make demo`.
set -euo pipefail
cd "$(dirname "$0")/.."
BERTCLF=".venv/bin/bertclf"
OUT="${DEMO_OUT:-demo-out}"
mkdir -p "$OUT"

echo "== 1. train (validation split 0.2, held-out test set) =="
"$BERTCLF" train examples/demo_data --test examples/demo_test --out "$OUT/run" --overwrite \
  --epochs 4 --seq-len 64 --batch-size 16 --lr 1e-4

echo "== 2. evaluate the run on the held-out test set =="
"$BERTCLF" evaluate "$OUT/run" examples/demo_test

echo "== 3. predict new texts =="
"$BERTCLF" predict "$OUT/run" --input examples/new_tickets.txt
