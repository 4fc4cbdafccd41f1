"""`bertclf predict --input`: formats by extension, streaming, --output files."""

import csv
import io
import json

import pytest

from bertclf.config.predict import PredictConfig
from bertclf.data.tables import check_input, read_rows
from bertclf.errors import ConfigError, DataError
from bertclf.prediction.predict import check_output, predict_input, predict_rows
from bertclf.prediction.predictor import Predictor

TEXTS = ["refund my, invoice", 'the "app" crash', "new\nline text"]
TSV = ["refund my, invoice", '"app" crash "', "one line"]


def write_inputs(tmp_path):
    files = {}
    with open(tmp_path / "in.csv", "w", newline="", encoding="utf-8-sig") as f:  # Excel's BOM
        w = csv.writer(f)
        w.writerow(["id", "text", "label"])
        w.writerows([i, t, "x"] for i, t in enumerate(TEXTS))
    files["csv"] = tmp_path / "in.csv"
    # TSV (IANA text/tab-separated-values) has no quoting: a quote is part of the text.
    (tmp_path / "in.tsv").write_text(
        "id\tbody\n" + "".join(f"{i}\t{t}\n" for i, t in enumerate(TSV))
    )
    files["tsv"] = tmp_path / "in.tsv"
    files["jsonl"] = tmp_path / "in.jsonl"
    files["jsonl"].write_text(
        "\n".join(json.dumps({"id": i, "text": t}) for i, t in enumerate(TEXTS)) + "\n\n"
    )
    files["txt"] = tmp_path / "in.txt"
    files["txt"].write_text("first line\n\n  second line \n")
    return files


def test_formats_by_extension(tmp_path):
    files = write_inputs(tmp_path)
    rows = list(read_rows(files["csv"], "text", "id"))
    assert [r.text for r in rows] == TEXTS and [r.id for r in rows] == ["0", "1", "2"]
    assert [r.text for r in read_rows(files["tsv"], "body", "id")] == TSV
    assert [(r.text, r.id) for r in read_rows(files["jsonl"], "text", "id")] == [
        (t, i) for i, t in enumerate(TEXTS)
    ]
    assert [(r.text, r.id) for r in read_rows(files["txt"], "text", "id")] == [
        ("first line", 1),
        ("  second line ", 3),  # the line number: blank lines count
    ]
    with pytest.raises(DataError, match=r"in.tsv: no column 'text'.*--text-field"):
        check_input(files["tsv"], "text")
    with pytest.raises(DataError, match="no such file"):
        check_input(tmp_path / "nope.csv", "text")


class Echo(Predictor):
    """A predictor over a fixed rule (the text's length): tests the streaming, not a model."""

    label_names = ["short", "long"]

    def __init__(self):
        self.batches = []

    def _scores(self, texts):
        import numpy as np

        self.batches.append(len(texts))
        p = np.array([[1.0, 0.0] if len(t) < 12 else [0.0, 1.0] for t in texts], np.float32)
        return p


def test_rows_are_scored_in_batches(tmp_path):
    many = tmp_path / "many.txt"
    many.write_text("".join(f"text number {i}\n" for i in range(1000)))
    predictor = Echo()
    out = list(predict_rows(predictor, read_rows(many, "text", "id"), batch_size=64))
    assert len(out) == 1000 and max(predictor.batches) == 64
    assert out[0][1]["label"] == "long"


def test_output_refuses_to_overwrite(tmp_path):
    target = tmp_path / "out.csv"
    check_output(target, overwrite=False)
    target.write_text("mine")
    with pytest.raises(DataError, match="already exists; pass --overwrite"):
        check_output(target, overwrite=False)
    check_output(target, overwrite=True)
    with pytest.raises(DataError, match="is a folder"):
        check_output(tmp_path, overwrite=True)
    with pytest.raises(ConfigError, match="no texts"):
        PredictConfig(model="m")


def test_predict_files_with_a_real_run(tmp_path, runs):
    from bertclf.prediction.trained_run import load_run

    run = runs[0]
    files = write_inputs(tmp_path)
    expected = load_run(run).predict(TEXTS)
    results = {}
    for kind, field, suffix in (("jsonl", "text", "jsonl"), ("csv", "text", "csv")):
        output = tmp_path / f"out-{kind}.{suffix}"
        config = PredictConfig(
            model=str(run), input=str(files[kind]), text_field=field, output=str(output)
        )
        assert predict_input(config) == 3
        results[kind, suffix] = output
    rows = [json.loads(ln) for ln in results["jsonl", "jsonl"].read_text().splitlines()]
    assert [r["id"] for r in rows] == [0, 1, 2] and [r["text"] for r in rows] == TEXTS
    for row, want in zip(rows, expected, strict=True):
        assert row["label"] == want["label"]
        assert row["probabilities"] == pytest.approx(want["probabilities"], abs=1e-6)
    with open(results["csv", "csv"], newline="") as f:
        table = list(csv.DictReader(f))
    assert list(table[0]) == [
        "id",
        "text",
        "label",
        "probability",
        *(f"p_{n}" for n in ("billing", "bug", "feature")),
        "abstain",  # a calibrated run's
        "ood_score",
    ]
    assert [r["text"] for r in table] == TEXTS
    assert [r["label"] for r in table] == [w["label"] for w in expected]
    # Command-line texts and a file together, as a table on stdout.
    out = io.StringIO()
    config = PredictConfig(model=str(run), texts=("hello",), input=str(files["txt"]))
    assert predict_input(config, out=out) == 3
    assert [ln.split("\t")[-1] for ln in out.getvalue().splitlines()] == [
        "hello",
        "first line",
        "second line",
    ]
