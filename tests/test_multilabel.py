"""Multi-label classification end to end: input forms, loss, thresholds, export, serving."""

from __future__ import annotations

import csv
import hashlib
import json
import random
import shutil
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import f1_score

from bertclf.config.data import DataConfig
from bertclf.data.datasets import load_splits, read_labelled
from bertclf.data.labels import LabelFormat
from bertclf.errors import DataError
from bertclf.evaluation import thresholds
from test_serving import Server

from conftest import TOPICS, one_error_line, run_cli

NAMES = sorted(TOPICS)  # billing, bug, feature


def make_rows(n: int, seed: int) -> list[tuple[str, list[str]]]:
    """Texts mixing the words of 0, 1 or 2 topics; a text's labels are its topics."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        labels = sorted(rng.sample(NAMES, rng.choice([0, 1, 1, 2])))
        words = [w for label in labels for w in TOPICS[label].split()]
        body = [rng.choice(words) if words and rng.random() < 0.7 else "the" for _ in range(10)]
        rows.append((" ".join(body) + f" note {i}", labels))
    return rows


def write_jsonl(path: Path, rows) -> Path:
    path.write_text("".join(json.dumps({"text": t, "labels": y}) + "\n" for t, y in rows))
    return path


@pytest.fixture(scope="module")
def rows():
    return make_rows(60, 0)


# ------------------------------------------------------------------ data


def test_every_input_form_reads_to_the_same_label_matrix(rows, tmp_path):
    jsonl = write_jsonl(tmp_path / "a.jsonl", rows)
    with open(tmp_path / "b.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["text", "labels"])
        w.writerows([t, ",".join(y)] for t, y in rows)
    with open(tmp_path / "c.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["text", *NAMES])
        w.writerows([t, *(int(n in y) for n in NAMES)] for t, y in rows)
    (tmp_path / "names.txt").write_text("feature\nbilling\nbug\n")  # ids in another order
    ids = {"feature": "0", "billing": "1", "bug": "2"}
    lines = ["text\tlabels\tid"] + [
        f'"{t}\t{",".join(ids[n] for n in y)}\tx{i}' for i, (t, y) in enumerate(rows)
    ]  # a leading quote: TSV has no quoting, the quote is part of the text
    (tmp_path / "d.tsv").write_text("\n".join(lines) + "\n")

    ml = {"task": "multilabel"}
    forms = [
        DataConfig(str(jsonl), label_field="labels", **ml),
        DataConfig(str(tmp_path / "b.csv"), label_field="labels", label_sep=",", **ml),
        DataConfig(str(tmp_path / "c.csv"), label_fields=",".join(NAMES), **ml),
        DataConfig(
            str(tmp_path / "d.tsv"),
            label_field="labels",
            label_sep=",",
            label_names=str(tmp_path / "names.txt"),
            **ml,
        ),
    ]
    expected = [[int(n in y) for n in NAMES] for _, y in rows]
    for config in forms:
        ex = read_labelled(config.train, "text", LabelFormat.from_config(config))
        assert ex.multilabel and ex.label_names == NAMES
        assert ex.labels == expected, config
    tsv = read_labelled(forms[3].train, "text", LabelFormat.from_config(forms[3]))
    assert tsv.texts[0] == '"' + rows[0][0]
    # Texts with no label at all are kept, as all-zero rows.
    assert sum(1 for row in expected if not any(row)) > 0
    splits = load_splits(forms[0], seed=1)
    assert len(splits.train) + len(splits.val) == len(rows) and splits.split == "keras"


@pytest.mark.parametrize(
    "content, options, message",
    [
        ('{"text": "a", "labels": ["x", ""]}\n', {}, "empty label name"),
        ('{"text": "a", "labels": "x"}\n', {}, "not a list"),
        ('{"text": "a", "labels": ["7"]}\n', {"names": True}, "label id '7' is not in"),
    ],
)
def test_bad_multilabel_rows(tmp_path, content, options, message):
    path = tmp_path / "d.jsonl"
    path.write_text(content)
    names = tmp_path / "names.txt"
    names.write_text("x\ny\n")
    cfg = DataConfig(
        str(path),
        label_field="labels",
        task="multilabel",
        label_names=str(names) if options.get("names") else None,
    )
    with pytest.raises(DataError, match=message):
        read_labelled(path, "text", LabelFormat.from_config(cfg))


def test_label_fields_must_hold_0_or_1(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text("text,a,b\nhello,1,0\nworld,0,yes\n")
    cfg = DataConfig(str(path), task="multilabel", label_fields="a,b")
    with pytest.raises(
        DataError, match=r"d.csv:3: 'b' is 'yes'; --label-fields columns hold 0 or 1"
    ):
        read_labelled(path, "text", LabelFormat.from_config(cfg))


def test_a_list_label_in_single_label_mode_names_the_fix(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text('{"text": "a", "label": "x"}\n{"text": "b", "label": ["x", "y"]}\n')
    with pytest.raises(
        DataError, match=r"d.jsonl:2: .* is a list, .* train with --task multilabel"
    ):
        read_labelled(path)


def test_numeric_labels_with_many_values_warn(tmp_path, caplog):
    path = tmp_path / "d.csv"
    path.write_text("text,label\n" + "".join(f"t{i},{i * 0.5}\n" for i in range(30)))
    with caplog.at_level("WARNING"):
        load_splits(DataConfig(str(path), split="keras"), 1)
    assert "treated as a class, not as a value to regress" in caplog.text


# ------------------------------------------------------------------ loss and thresholds


def test_loss_is_the_mean_binary_cross_entropy_over_labels():
    import tensorflow as tf

    from bertclf.model.classifier import BertClassifier

    class Stub:  # per_example_loss reads only `head`
        head = "multilabel"

    labels = np.array([[1, 0, 1], [0, 0, 0]])
    logits = np.array([[2.0, -1.0, 0.5], [0.3, -2.0, 1.5]], np.float32)
    p = 1 / (1 + np.exp(-logits))
    by_hand = -(labels * np.log(p) + (1 - labels) * np.log(1 - p)).mean(axis=1)
    got = BertClassifier.per_example_loss(Stub(), tf.constant(labels), tf.constant(logits))
    np.testing.assert_allclose(got.numpy(), by_hand, rtol=1e-5)
    w = np.array([4.0, 1.0, 2.0], np.float32)
    weighted = -(w * labels * np.log(p) + (1 - labels) * np.log(1 - p)).mean(axis=1)
    got = BertClassifier.per_example_loss(Stub(), tf.constant(labels), tf.constant(logits), w)
    np.testing.assert_allclose(got.numpy(), weighted, rtol=1e-5)


def test_tuned_thresholds_maximise_each_labels_f1():
    rng = np.random.default_rng(0)
    labels = (rng.random((200, 4)) < [0.5, 0.1, 0.03, 0.0]).astype(int)
    # Label 1's positives score lowish (0.2-0.4): 0.5 would miss every one of them.
    probs = np.clip(
        labels * rng.uniform(0.2, 0.4, labels.shape) + rng.uniform(0, 0.25, labels.shape), 0, 1
    )
    cuts = thresholds.tune(labels, probs)

    def f1_at(j, cut):  # scikit-learn's F1 of label j at one cut, as the graph compares
        return f1_score(labels[:, j], probs[:, j].astype(np.float32) >= cut, zero_division=0)

    assert thresholds.support(labels)[0][2] < thresholds.MIN_SUPPORT <= labels[:, 1].sum()
    for j in range(2):
        best = max(f1_at(j, cut) for cut in thresholds.GRID)
        assert f1_at(j, cuts[j]) == pytest.approx(best)
    assert cuts[1] < 0.5
    assert cuts[2] == 0.5  # a handful of positives: too few to tune on
    assert cuts[3] == 0.5  # no positive to tune on
    assert (thresholds.decide("0.3", labels, probs) == np.float32(0.3)).all()


# ------------------------------------------------------------------ train, export, serve


@pytest.fixture(scope="module")
def ml_run(tmp_path_factory, tiny_encoder):
    from bertclf import DataConfig, ModelConfig, RunConfig, TrainConfig
    from bertclf.training.fine_tuning import train

    root = tmp_path_factory.mktemp("ml")
    data = write_jsonl(root / "train.jsonl", make_rows(80, 1))
    test = write_jsonl(root / "test.jsonl", make_rows(24, 2))
    cfg = RunConfig(
        data=DataConfig(str(data), test=str(test), label_field="labels", task="multilabel"),
        out=str(root / "run"),
        model=ModelConfig(model=tiny_encoder, seq_len=32),
        train=TrainConfig(epochs=3, batch_size=8, lr=1e-3, contrastive=0),
        seed=3,
    )
    result = train(cfg, progress=False)
    return root, result


def test_training_stores_thresholds_and_multilabel_metrics(ml_run):
    root, result = ml_run
    run = root / "run"
    stored = json.loads((run / "thresholds.json").read_text())
    assert stored["labels"] == NAMES and len(stored["thresholds"]) == 3
    assert stored["epoch"] == result.kept_epoch
    test = result.test_metrics
    for key in ("macro_f1", "micro_f1", "samples_f1", "hamming_loss", "accuracy"):
        assert 0.0 <= test[key] <= 1.0
    assert set(test["per_class"]) == set(NAMES)
    assert test["per_class"]["bug"]["threshold"] == stored["thresholds"][1]
    assert result.baseline["test"]["multilabel"] is True
    html = (run / "report.html").read_text()
    assert "per label" in html and "Hamming loss" in html


def test_thresholds_name_their_weights_and_a_mismatch_is_one_line(ml_run, tmp_path):
    run = ml_run[0] / "run"
    stored = json.loads((run / "thresholds.json").read_text())
    digest = hashlib.sha256((run / "best.weights.h5").read_bytes()).hexdigest()
    assert stored["weights_sha256"] == digest
    # What a run stopped between the two renames of a kept epoch leaves: the new
    # thresholds beside the previous epoch's weights.
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    (copy / "thresholds.json").write_text(json.dumps({**stored, "weights_sha256": "0" * 64}))
    # The digest is computed once per version of the weights file, and again after a rename.
    from bertclf.model import rundir

    before = rundir._digest.cache_info().misses
    rundir.check_trained(run), rundir.check_trained(run)
    assert rundir._digest.cache_info().misses == before + 1
    shutil.copy2(run / "best.weights.h5", tmp_path / "w2.h5")
    (tmp_path / "w2.h5").replace(run / "best.weights.h5")  # a new file: a new inode
    rundir.check_trained(run)
    assert rundir._digest.cache_info().misses == before + 2
    proc = run_cli("predict", str(copy), "refund invoice crash error", "--json")
    assert proc.returncode == 2
    line = one_error_line(proc)
    assert f"{copy / 'thresholds.json'}: tuned for other weights than best.weights.h5" in line
    assert f"keeping epoch {stored['epoch']}" in line and "--resume" in line


def test_export_parity_and_rest_shapes(ml_run, tmp_path):
    from bertclf.export.exporter import export
    from bertclf.prediction.exported_model import ExportedModel
    from bertclf.prediction.trained_run import load_run

    root, _ = ml_run
    result = export(root / "run", tmp_path, name="tags")  # verifies parity in a fresh process
    assert result.max_abs_diff is not None and result.max_abs_diff <= 1e-5
    outputs = result.signatures["serving_default"]["outputs"]
    assert outputs["predicted"]["dtype"] == "DT_INT32" and outputs["predicted"]["shape"] == [-1, 3]
    meta = json.loads((result.path / "assets.extra" / "bertclf.json").read_text())
    assert meta["task"] == "multilabel" and len(meta["thresholds"]) == 3
    texts = ["refund invoice crash error", "please add export option", ""]
    run, exported = load_run(root / "run"), ExportedModel(tmp_path / "tags")
    np.testing.assert_allclose(exported.predict_proba(texts), run.predict_proba(texts), atol=1e-5)
    assert [p["labels"] for p in exported.predict(texts)] == [
        p["labels"] for p in run.predict(texts)
    ]
    server = Server(tmp_path, "--poll", "0.2")
    try:
        server.wait_for("tags", 1)
        r = server.client.post("/v1/models/tags:predict", json={"instances": texts})
        assert r.status_code == 200, r.text
        predictions = r.json()["predictions"]
        assert len(predictions) == 3
        for p, expected in zip(predictions, run.predict(texts), strict=True):
            assert len(p["scores"]) == 3 and len(p["predicted"]) == 3
            chosen = [n for n, on in zip(NAMES, p["predicted"], strict=True) if on]
            assert chosen == expected["labels"]
        r = server.client.post(
            "/v1/models/tags:classify", json={"examples": [{"text": t} for t in texts]}
        )
        assert r.status_code == 200, r.text
        results = r.json()["results"]
        assert [[c[0] for c in row] for row in results] == [NAMES] * 3
    finally:
        server.stop()


def test_cli_predict_and_evaluate_a_multilabel_run(ml_run, tmp_path):
    root, _ = ml_run
    proc = run_cli("predict", str(root / "run"), "refund invoice crash error", "--json")
    assert proc.returncode == 0, proc.stderr
    row = json.loads(proc.stdout.splitlines()[0])
    keys = {"text", "labels", "probabilities", "abstain", "ood_score"}
    assert set(row) == keys and set(row["probabilities"]) == set(NAMES)
    proc = run_cli(
        "evaluate", str(root / "run"), str(root / "test.jsonl"), "--label-field", "labels"
    )
    assert proc.returncode == 0, proc.stderr
    assert "micro-F1" in proc.stdout and "Hamming loss" in proc.stdout
    # Without --label-field: the run's own fields ("labels" here), as it read its data.
    same = run_cli("evaluate", str(root / "run"), str(root / "test.jsonl"))
    assert same.returncode == 0, same.stderr
    assert same.stdout == proc.stdout
    # Single-label data for a multi-label run: one line, exit 2.
    single = tmp_path / "single.jsonl"
    single.write_text('{"text": "refund", "labels": "billing"}\n')
    proc = run_cli("evaluate", str(root / "run"), str(single), "--label-field", "labels")
    assert proc.returncode == 2
    assert "single.jsonl:1: 'labels' is 'billing', not a list" in one_error_line(proc)


def test_cli_bad_multilabel_arguments(tmp_path, tiny_data):
    data = write_jsonl(tmp_path / "d.jsonl", make_rows(20, 0))
    out = tmp_path / "run"
    cases = [
        (
            ["train", str(data), "--label-field", "labels"],
            "is a list, but single-label data has one label per text; train with --task multilabel",
        ),
        (
            [
                "train",
                str(data),
                "--task",
                "multilabel",
                "--label-field",
                "labels",
                "--thresholds",
                "1.5",
            ],
            "--thresholds '1.5' is invalid",
        ),
        (
            ["train", str(data), "--label-sep", ","],
            "--label-sep ',' is invalid: it needs --task multilabel",
        ),
        (
            ["train", str(tiny_data), "--task", "multilabel"],
            "class folders hold one label per text",
        ),
        (
            [
                "train",
                str(data),
                "--task",
                "multilabel",
                "--label-field",
                "labels",
                "--label-names",
                str(tmp_path / "none.txt"),
            ],
            "none.txt: no such file",
        ),
    ]
    for args, message in cases:
        proc = run_cli(*args, "--out", str(out))
        assert proc.returncode == 2, (args, proc.stderr)
        assert message in one_error_line(proc), args
        assert not out.exists()


def test_a_single_label_run_refuses_label_sets(runs, tmp_path):
    data = tmp_path / "sets.jsonl"
    data.write_text('{"text": "refund crash", "label": ["billing", "bug"]}\n')
    proc = run_cli("evaluate", str(runs[0]), str(data))
    assert proc.returncode == 2
    assert "sets.jsonl:1: label ['billing', 'bug'] is a list" in one_error_line(proc)


MIRRORED = """
import json, sys
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
from bertclf import DataConfig, ModelConfig, RunConfig, TrainConfig
from bertclf.training.fine_tuning import train

out = {{}}
for strategy in ("mirrored", "default"):
    cfg = RunConfig(
        data=DataConfig({data!r}, label_field="labels", task="multilabel"),
        out={out!r} + strategy,
        model=ModelConfig(model={encoder!r}, seq_len=32, dropout=0.0),
        train=TrainConfig(epochs=2, batch_size=8, lr=1e-3, strategy=strategy, precision="fp32"),
        seed=5,
    )
    r = train(cfg, progress=False, report=False)
    thresholds = json.load(open({out!r} + strategy + "/thresholds.json"))["thresholds"]
    out[strategy] = {{"replicas": r.replicas, "history": r.history, "thresholds": thresholds}}
print(json.dumps(out))
"""


def test_multilabel_under_the_mirrored_strategy(tmp_path, tiny_encoder):
    import subprocess
    import sys

    data = write_jsonl(tmp_path / "d.jsonl", make_rows(41, 4))  # a short last batch too
    script = MIRRORED.format(data=str(data), out=str(tmp_path / "run-"), encoder=tiny_encoder)
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    assert res["mirrored"]["replicas"] == 2
    # The validation probabilities gathered from two replicas, in order: same metrics.
    for a, b in zip(res["mirrored"]["history"], res["default"]["history"], strict=True):
        assert a["val_loss"] == pytest.approx(b["val_loss"], abs=1e-4)
        assert a["val_macro_f1"] == pytest.approx(b["val_macro_f1"], abs=1e-6)
    assert res["mirrored"]["thresholds"] == res["default"]["thresholds"]
