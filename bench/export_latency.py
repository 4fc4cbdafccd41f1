"""Benchmark: export the default encoder's BBC run; in-process latency and throughput.

    .venv/bin/python bench/export_latency.py [--run bench/out/bbc-mean]

Reports export time (build, save, op audit, fresh-process verification, publish),
SavedModel size, and the exported model called in-process: batch 1 on a 40-word
text (median of 60 calls) and batch 32 on BBC articles (median of 10 calls), next
to the trained Keras model on the same inputs, all in one process.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import time

sys.path.insert(0, str(__import__("pathlib").Path(__file__).parent))
from common import OUT, bbc_texts, forty_words, machine, pct, timed  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--run", default=str(OUT / "bbc-mean"))
    p.add_argument("--to", default=str(OUT / "exports"))
    a = p.parse_args()

    from bertclf.export.exporter import export
    from bertclf.prediction.exported_model import ExportedModel
    from bertclf.prediction.trained_run import load_run

    shutil.rmtree(a.to, ignore_errors=True)
    start = time.perf_counter()
    result = export(a.run, a.to, name="bbc")
    export_s = time.perf_counter() - start

    exported, trained = ExportedModel(result.path), load_run(a.run)
    one, batch = [forty_words()], bbc_texts(32)
    rows = {}
    for label, model in (("exported SavedModel", exported), ("trained Keras model", trained)):
        b1 = timed(lambda m=model: m.predict_proba(one), repeats=60, warmup=5)
        b32 = timed(lambda m=model: m.predict_proba(batch, batch_size=32), repeats=10, warmup=2)
        rows[label] = {
            "batch1_median_ms": 1000 * statistics.median(b1),
            "batch1_p90_ms": 1000 * pct(b1, 90),
            "batch32_median_s": statistics.median(b32),
            "batch32_texts_per_s": 32 / statistics.median(b32),
        }
    report = {
        **machine(),
        "export_seconds": round(export_s, 1),
        "savedmodel_mib": round(result.size_bytes / 2**20, 1),
        "non_core_ops": result.non_core_ops,
        "max_abs_diff": result.max_abs_diff,
        "calls": rows,
    }
    (OUT / "export_latency.json").write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
