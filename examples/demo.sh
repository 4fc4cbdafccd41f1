#!/usr/bin/env bash
# The whole bertclf pipeline on the shipped demo data (3 classes x 32 support tickets),
# with the offline default encoder. Run through `make demo`.
set -euo pipefail
cd "$(dirname "$0")/.."
BERTCLF=".venv/bin/bertclf"
OUT="${DEMO_OUT:-demo-out}"
# Results (stdout) and logs (stderr) in the order they happen, also when both go to one file.
export PYTHONUNBUFFERED=1
rm -rf "$OUT"
mkdir -p "$OUT"

echo "== 1. analyze the data =="
"$BERTCLF" analyze examples/demo_data --out "$OUT/analysis"

echo "== 2. audit the labels: likely errors, conflicts, duplicates, test texts seen in training =="
"$BERTCLF" audit examples/demo_data --test examples/demo_test --out "$OUT/audit"

echo "== 3. train (validation split 0.2, held-out test set) =="
"$BERTCLF" train examples/demo_data --test examples/demo_test --out "$OUT/run" \
  --epochs 4 --seq-len 64 --batch-size 16 --no-progress

echo "== 4. evaluate the run on the held-out test set =="
"$BERTCLF" evaluate "$OUT/run" examples/demo_test

echo "== 5. predict new texts =="
"$BERTCLF" predict "$OUT/run" --input examples/new_tickets.txt

echo "== 6. export for TensorFlow Serving (op audit, parity check in a fresh process) =="
"$BERTCLF" export "$OUT/run" --to "$OUT/models" --name tickets

echo "== 7. serve it with TF Serving's REST API and call it =="
PORT="${DEMO_PORT:-8599}"
"$BERTCLF" serve "$OUT/models" --port "$PORT" &
SERVER=$!
trap 'kill $SERVER 2>/dev/null || true' EXIT
for _ in $(seq 1 120); do
  curl -sf "localhost:$PORT/v1/models/tickets" >/dev/null 2>&1 && break
  sleep 0.5
done
curl -s "localhost:$PORT/v1/models/tickets"; echo
curl -s -X POST "localhost:$PORT/v1/models/tickets:predict" \
  -d '{"instances": ["I was charged twice this month", "The app crashes when I log in"]}'; echo
echo "report: $OUT/run/report.html"
