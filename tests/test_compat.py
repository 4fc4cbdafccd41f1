"""Runs and exports made before the subpackages still load and give the same probabilities.

tests/fixtures/legacy holds a tiny run of each kind and its export, made by the code of
commit d0861ad (the flat layout), with the probabilities they gave then.
"""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from conftest import run_script

LEGACY = Path(__file__).parent / "fixtures" / "legacy"
EXPECTED = json.loads((LEGACY / "expected.json").read_text())


@pytest.mark.parametrize("kind", ["single", "multilabel"])
def test_an_old_run_and_its_export_predict_as_they_did(kind):
    from bertclf import load_run
    from bertclf.prediction.exported_model import ExportedModel

    texts = EXPECTED["texts"]
    run = load_run(LEGACY / f"run_{kind}")
    np.testing.assert_allclose(run.predict_proba(texts), EXPECTED[f"run_{kind}"], atol=1e-6)

    def decided(rows):  # the label (single) or the label set (multi-label) of each text
        return [r.get("label", r.get("labels")) for r in rows]

    assert decided(run.predict(texts)) == decided(EXPECTED[f"run_{kind}_predict"])
    export = ExportedModel(LEGACY / "exports" / f"tiny_{kind}")
    np.testing.assert_allclose(export.predict_proba(texts), EXPECTED[f"export_{kind}"], atol=1e-6)


def test_an_old_run_exports_and_is_evaluated_by_todays_cli(tmp_path):
    run = tmp_path / "run"
    shutil.copytree(LEGACY / "run_single", run)
    data = tmp_path / "data"
    for label, text in (("billing", "refund my card"), ("bug", "it crashes"), ("feature", "add")):
        (data / label).mkdir(parents=True)
        (data / label / "1.txt").write_text(text)
    done = run_script("evaluate", str(run), str(data), "--json")
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout)["examples"] == 3
    said = [line for line in done.stderr.splitlines() if "before calibration" in line]
    assert len(said) == 1, done.stderr  # one line says what the old run lacks
    done = run_script("export", str(run), "--to", str(tmp_path / "m"), "--name", "old")
    assert done.returncode == 0, done.stderr[-2000:]
    assert "verified in a fresh process" in done.stdout
    meta = json.loads((tmp_path / "m" / "old" / "1" / "assets.extra" / "bertclf.json").read_text())
    assert meta["calibration"] is None  # no calibration, no new outputs: as before
    assert set(meta["signatures"]["serving_default"]["outputs"]) == {
        "scores",
        "classes",
        "class_ids",
    }
    done = run_script("predict", str(run), "refund my card", "--json")
    assert set(json.loads(done.stdout)) == {"text", "label", "probability", "probabilities"}
