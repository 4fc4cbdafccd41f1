"""`bertclf score`: an export over files on Apache Beam's DirectRunner, against `predict`.

Beam lives in its own venv (`make setup-beam`, which `make test` runs): it pins an older
protobuf than the core install. The core venv's `bertclf score` runs itself there, or says
how to make it.
"""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from bertclf.export.exporter import export

from conftest import TOPICS, make_texts, one_error_line, run_cli

ROOT = Path(__file__).resolve().parents[1]
BEAM_PYTHON = ROOT / ".venv-beam" / "bin" / "python"


def beam_cli(*args: str, timeout: float = 600):
    import subprocess

    if not BEAM_PYTHON.is_file():
        pytest.fail(f"{BEAM_PYTHON} missing: run 'make setup-beam' (make test does)")
    return subprocess.run(
        [str(BEAM_PYTHON), "-m", "bertclf", *args], capture_output=True, text=True, timeout=timeout
    )


@pytest.fixture(scope="module")
def setup(runs, tmp_path_factory):
    root = tmp_path_factory.mktemp("score")
    export(runs[0], root / "models", name="tickets", verify=False)
    inputs = root / "in"
    inputs.mkdir()
    texts = [t for label in TOPICS for t in make_texts(label, 70, 7)]  # 210 texts
    (inputs / "a.jsonl").write_text(
        "".join(json.dumps({"id": f"a{i}", "text": t}) + "\n" for i, t in enumerate(texts[:120]))
    )
    (inputs / "b.jsonl").write_text(
        "".join(json.dumps({"id": f"b{i}", "text": t}) + "\n" for i, t in enumerate(texts[120:]))
    )
    return root


def _records(paths) -> dict[str, dict]:
    return {r["id"]: r for p in paths for r in map(json.loads, p.read_text().splitlines())}


def test_score_on_the_direct_runner_equals_predict(setup):
    model, out = setup / "models" / "tickets", setup / "out" / "scores"
    proc = beam_cli(
        "score",
        str(model),
        "--input",
        str(setup / "in" / "*.jsonl"),
        "--output",
        str(out),
        "--batch-size",
        "16",
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    shards = sorted(out.parent.glob("scores-*-of-*.jsonl"))
    assert shards, proc.stdout
    scored = _records(shards)
    expected = {}
    for name in ("a.jsonl", "b.jsonl"):
        pred = run_cli("predict", str(model), "--input", str(setup / "in" / name), "--json")
        assert pred.returncode == 0, pred.stderr
        expected |= {r["id"]: r for r in map(json.loads, pred.stdout.splitlines())}
    assert len(scored) == len(expected) == 210
    for key, want in expected.items():
        got = scored[key]
        assert (got["text"], got["label"]) == (want["text"], want["label"]), key
        np.testing.assert_allclose(
            list(got["probabilities"].values()), list(want["probabilities"].values()), atol=1e-5
        )
        # A calibrated run's export: the same abstain flag and OOD score as predict's.
        assert got["abstain"] == want["abstain"], key
        # (rel 1e-4, the export check's: batches padded to other widths round otherwise)
        assert got["ood_score"] == pytest.approx(want["ood_score"], rel=1e-4), key
    # Beam wrote through its temporary files and renamed them: nothing else is left.
    assert sorted(p.name for p in out.parent.iterdir()) == [p.name for p in shards]


def test_score_bad_inputs(setup):
    model = str(setup / "models" / "tickets")
    existing = setup / "taken"
    existing.mkdir()
    (existing / "scores-00000-of-00001.jsonl").write_text("{}\n")
    cases = [
        (
            ["--input", str(setup / "nothing*.csv"), "--output", str(setup / "o1" / "s")],
            "no file matches",
        ),
        (
            ["--input", str(setup / "in" / "*.jsonl"), "--output", str(existing / "scores")],
            "already start with it",
        ),
        (
            [
                "--input",
                str(setup / "in" / "*.jsonl"),
                "--output",
                str(setup / "o2"),
                "--batch-size",
                "0",
            ],
            "--batch-size 0 is invalid",
        ),
    ]
    for args, message in cases:
        proc = beam_cli("score", model, *args)
        assert proc.returncode == 2, (args, proc.stderr[-2000:])
        assert message in one_error_line(proc), args
    assert (existing / "scores-00000-of-00001.jsonl").read_text() == "{}\n"
    assert not (setup / "o1").exists()
    proc = beam_cli("score", str(setup / "in"), "--input", "x", "--output", "y")
    assert proc.returncode == 2 and "no exported model" in one_error_line(proc)


def test_overwrite_keeps_the_old_output_until_the_new_is_written(setup):
    model, out = str(setup / "models" / "tickets"), setup / "again"
    out.mkdir()
    stale = out / "scores-00003-of-00007.jsonl"  # an earlier run, with another shard count
    stale.write_text("old\n")
    # Its time is ahead of this clock, as a file from another machine's clock can be: which
    # shards are old must not be judged by file times.
    os.utime(stale, (time.time() + 3600, time.time() + 3600))
    notes = out / "scores-notes.txt"  # not a shard: never touched
    notes.write_text("mine\n")
    args = ["--input", str(setup / "in" / "*.jsonl"), "--output", str(out / "scores")]
    # A run that fails (no such text field: one line, before the pipeline) leaves the
    # old output as it was.
    failed = beam_cli("score", model, *args, "--text-field", "body", "--overwrite")
    expected = "a.jsonl:1: no field 'body' (fields: ['id', 'text']); set --text-field"
    assert expected in one_error_line(failed)
    assert stale.read_text() == "old\n" and notes.read_text() == "mine\n"
    # A run that fails inside the pipeline (a later row has no text) leaves it too, and
    # nothing of its own.
    bad = setup / "bad"
    bad.mkdir()
    rows = [{"id": "ok", "text": "the match ended in a draw"}] * 3 + [{"id": "no text"}]
    (bad / "c.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    broken = beam_cli("score", model, "--input", str(bad / "*.jsonl"), *args[2:], "--overwrite")
    assert broken.returncode == 2, broken.stderr[-3000:]
    assert "c.jsonl:4: this row has no 'text'; add it" in one_error_line(broken)
    assert sorted(out.iterdir()) == [stale, notes] and stale.read_text() == "old\n"
    broken = beam_cli(
        "score", model, "--input", str(bad / "*.jsonl"), "--output", str(setup / "new" / "d" / "s")
    )
    assert broken.returncode == 2 and not (setup / "new").exists()  # folders it made: gone
    proc = beam_cli("score", model, *args, "--overwrite")
    assert proc.returncode == 0, proc.stderr[-3000:]
    new = sorted(out.glob("scores-*-of-*.jsonl"))
    assert new and stale not in new and notes.is_file()
    assert len(_records(new)) == 210
    assert sorted(out.iterdir()) == sorted([*new, notes])  # nothing staged is left behind


def test_score_from_the_core_venv_runs_in_beams_or_says_how_to_make_it(setup, tmp_path):
    assert "apache_beam" not in sys.modules
    model = str(setup / "models" / "tickets")
    # .venv-beam beside .venv: the same command runs there, its error on the user's stderr.
    proc = run_cli("score", model, "--input", str(tmp_path / "none-*.txt"), "--output", "y")
    assert one_error_line(proc).endswith("no file matches; check the pattern")
    # A core venv with no .venv-beam beside it (the same venv, reached through a link).
    alone = tmp_path / "alone"
    alone.mkdir()
    (alone / ".venv").symlink_to(Path(sys.prefix))
    python = alone / ".venv" / "bin" / "python"
    proc = subprocess.run(
        [str(python), "-m", "bertclf", "score", model, "--input", "x", "--output", "y"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert one_error_line(proc) == (
        "bertclf: error: bertclf score needs Apache Beam, which pins an older protobuf than "
        "this environment's: run 'make setup-beam' (it makes .venv-beam beside .venv; bertclf "
        "score then runs there by itself), or install 'bertclf[beam]' into an environment of "
        "its own"
    )
