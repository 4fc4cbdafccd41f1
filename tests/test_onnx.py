"""`bertclf export --format onnx`: the serving graph, tokenizer inside, as one ONNX model that
ONNX Runtime runs without TensorFlow, with the run's outputs (tiny random BERT runs)."""

import json
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import onnx
import pytest

from bertclf import DataConfig, ModelConfig, RunConfig, TrainConfig
from bertclf.export.exporter import export
from bertclf.prediction.trained_run import load_run
from bertclf.training.fine_tuning import train

from conftest import one_error_line, run_script, write_folder

# Hard cases for the tokenizer: empty, case folding beyond lower-casing (ß, İ, ﬁ, …, ™,
# ´), CJK, emoji, a word of more bytes than WordPiece reads but fewer characters, a text
# longer than the window, control characters.
TEXTS = [
    "refund my invoice please",
    "",
    "The APP crash error!!",
    "Straße İstanbul ﬁne … ™ husband´s ＦＵＬＬ",
    "日本語のテキスト and 中文, 한국어!",
    "emoji 😀 test 👍🏽 ok",
    "дом" * 30,
    "please add export " * 40,
    "tab\tnew\nline\u00adsoft\u200bzero",
]

ONNX_OUTPUTS = """
import json, sys
from bertclf.prediction.onnx_model import OnnxModel
model = OnnxModel(sys.argv[1])
out = {k: v.tolist() for k, v in model.run(json.loads(sys.stdin.read())).items()}
print(json.dumps({"outputs": out, "tensorflow": "tensorflow" in sys.modules}))
"""


def onnx_outputs(export_dir: Path, texts: list[str]) -> dict:
    """The ONNX model's outputs, computed in a process that never imports TensorFlow."""
    done = subprocess.run(
        [sys.executable, "-c", ONNX_OUTPUTS, str(export_dir)],
        input=json.dumps(texts),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["tensorflow"] is False
    return result["outputs"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory, tiny_encoder) -> dict[str, Path]:
    """A calibrated single-label run, a multi-label run and a --long chunk run."""
    root = tmp_path_factory.mktemp("onnx")
    single = write_folder(root / "single", per_class=40)  # 24 validation texts: calibrated
    rows = []
    for label, texts in (("billing", "invoice refund"), ("bug", "crash error")):
        for i in range(30):
            both = ["billing", "bug"] if i % 5 == 0 else [label]
            rows.append({"text": f"{texts} ticket {i} please", "labels": both})
    tags = root / "tags.jsonl"
    tags.write_text("".join(json.dumps(r) + "\n" for r in rows))
    settings = TrainConfig(epochs=2, batch_size=8, lr=1e-3, contrastive=0)
    made = {}
    for kind, data, model in (
        ("single", DataConfig(str(single)), ModelConfig(model=tiny_encoder, seq_len=32)),
        (
            "multilabel",
            DataConfig(str(tags), task="multilabel", label_field="labels"),
            ModelConfig(model=tiny_encoder, seq_len=32),
        ),
        (
            "chunk",
            DataConfig(str(single)),
            ModelConfig(model=tiny_encoder, seq_len=16, long="chunk", max_chunks=4),
        ),
    ):
        made[kind] = root / "runs" / kind / "run"  # not inside a data folder: a class
        train(
            RunConfig(data=data, out=str(made[kind]), model=model, train=settings),
            progress=False,
            report=False,  # exported, not studied: tests/test_report.py tests reports
        )
    return made


@pytest.mark.parametrize("kind", ["single", "multilabel", "chunk"])
def test_the_onnx_export_gives_the_runs_outputs_without_tensorflow(runs, kind, tmp_path):
    result = export(runs[kind], tmp_path / "models", name="m", format="onnx")
    assert result.max_abs_diff is not None and result.max_abs_diff <= 1e-4
    version = tmp_path / "models" / "m" / "1"
    assert sorted(p.name for p in version.iterdir()) == ["assets", "assets.extra", "model.onnx"]
    meta = json.loads((version / "assets.extra" / "bertclf.json").read_text())
    assert meta["format"] == "onnx" and meta["explain"] is None
    assert "ai.onnx.contrib:WordpieceTokenizer" in meta["op_audit"]["custom_ops"]
    # Every layer norm (the embeddings' and two a layer) is one fused node; the layer's
    # GELU is in the tanh form ONNX Runtime fuses; the split is BasicTokenizer.
    nodes = onnx.load(str(version / "model.onnx")).graph.node
    ops = [n.op_type for n in nodes]
    assert ops.count("LayerNormalization") == 3 and "GlobalAveragePool" not in ops
    assert ops.count("Tanh") == 1
    assert not [n for n in nodes if n.op_type == "Sigmoid" and "feedforward" in n.name]
    assert (
        "BasicTokenizer" in ops
        and "ai.onnx.contrib:BasicTokenizer" in meta["op_audit"]["custom_ops"]
    )
    # No local path of this machine inside the export.
    for path in version.rglob("*"):
        if path.is_file():
            assert str(tmp_path).encode() not in path.read_bytes(), path

    run = load_run(runs[kind], "fp32")  # an ONNX model computes in float32
    expected = run.outputs(TEXTS)
    got = onnx_outputs(version, TEXTS)
    np.testing.assert_allclose(got["scores"], expected["scores"], atol=1e-4)
    if kind == "multilabel":
        assert got["predicted"] == (expected["scores"] >= run.thresholds).astype(int).tolist()
    else:
        best = expected["scores"].argmax(axis=1)
        assert got["classes"] == [run.label_names[i] for i in best]
        assert got["class_ids"] == best.tolist()
    if kind == "single":  # calibrated: the extra outputs come through too
        assert got["abstain"] == expected["abstain"].tolist()
        np.testing.assert_allclose(got["ood_score"], expected["ood_score"], rtol=1e-4, atol=1e-4)
    # Batches with no word at all, and no text at all.
    for batch in ([""], ["   ", "\t"]):
        np.testing.assert_allclose(
            onnx_outputs(version, batch)["scores"], run.outputs(batch)["scores"], atol=1e-4
        )
    assert onnx_outputs(version, [])["scores"] == []
    # In this process TensorFlow was imported first: the ONNX model reads texts the same.
    from bertclf.prediction.onnx_model import OnnxModel

    here = OnnxModel(version).run(TEXTS)
    np.testing.assert_allclose(here["scores"], got["scores"], atol=1e-6)


def test_cli_exports_onnx_and_predict_reads_it(runs, tmp_path):
    base = tmp_path / "models"
    done = run_script("export", str(runs["single"]), "--to", str(base), "--format", "onnx")
    assert done.returncode == 0, done.stderr[-2000:]
    assert "custom ops: " in done.stdout and "verified in a fresh process" in done.stdout
    verbose = run_script(
        "export", str(runs["single"]), "--to", str(base), "--format", "onnx", "--no-verify", "-v"
    )
    assert verbose.returncode == 0 and "signature_def['serving_default']" in verbose.stdout
    predicted = run_script("predict", str(base / "run"), *TEXTS[:4], "--json")
    assert predicted.returncode == 0, predicted.stderr[-2000:]
    rows = [json.loads(line) for line in predicted.stdout.splitlines()]
    scores = load_run(runs["single"], "fp32").predict_proba(TEXTS[:4])
    for row, expected in zip(rows, scores, strict=True):
        np.testing.assert_allclose(list(row["probabilities"].values()), expected, atol=1e-4)
        assert "ood_score" in row and "abstain" in row

    unknown = run_script(
        "export", str(runs["single"]), "--to", str(tmp_path / "x"), "--format", "tflite"
    )
    assert "--format" in one_error_line(unknown) and "tflite" in one_error_line(unknown)
    sagemaker = run_script(
        "export",
        str(runs["single"]),
        "--to",
        str(tmp_path / "x"),
        "--format",
        "onnx",
        "--sagemaker",
    )
    assert "--sagemaker" in one_error_line(sagemaker)
    assert not (tmp_path / "x").exists()
    explain = run_script("predict", str(base / "run"), "refund", "--explain")
    assert "does not explain" in one_error_line(explain)


def test_an_op_the_converter_cannot_translate_is_named(tiny_encoder):
    import keras_hub
    import tensorflow as tf

    from bertclf.errors import ExportError
    from bertclf.export.onnx import text_function_to_onnx

    @tf.function
    def hashed(text):  # no ONNX form: tf2onnx logs it and leaves it in the graph
        bucket = tf.strings.to_hash_bucket_strong(text, 7, [1, 2])
        return {"scores": tf.cast(bucket, tf.float32)}

    tokenizer = keras_hub.models.BertTokenizer.from_preset(tiny_encoder)
    with pytest.raises(ExportError, match=r"StringToHashBucketStrong; .*--format savedmodel"):
        text_function_to_onnx(hashed, tokenizer)


def test_the_int8_guard_refuses_a_costly_or_slow_model():
    from bertclf.export.quantization import MAX_F1_DROP, QuantizationCheck

    def check(f1_int8: float, ms_int8: float) -> QuantizationCheck:
        return QuantizationCheck(24, 0.9, f1_int8, 2.0, ms_int8, 96)

    costly = check(0.9 - MAX_F1_DROP - 0.001, 1.0).refusal()
    assert "falls by 0.0110" in costly and "0.8890 against 0.9000 float32" in costly
    assert "1.00 ms against 2.00 ms" in costly and "export without --quantize" in costly
    slow = check(0.9, 2.0).refusal()  # as slow is not faster
    assert "not faster" in slow and "2.00 ms against 2.00 ms" in slow
    assert check(0.9 - MAX_F1_DROP + 0.001, 1.99).refusal() is None
    assert check(0.95, 1.0).refusal() is None  # int8 may also score higher


def test_cli_quantizes_only_with_its_numbers(runs, tmp_path):
    base = tmp_path / "models"
    quantize = ("--format", "onnx", "--quantize", "int8", "--quiet")  # quiet: no progress lines
    done = run_script("export", str(runs["single"]), "--to", str(base), *quantize)
    if done.returncode == 0:  # kept: int8 weights, the guard's numbers in the metadata
        version = base / "run" / "1"
        meta = json.loads((version / "assets.extra" / "bertclf.json").read_text())
        q = meta["quantization"]
        assert q["macro_f1_float32"] - q["macro_f1_int8"] <= q["max_macro_f1_drop"]
        assert q["p50_ms_int8"] < q["p50_ms_float32"] and q["texts"] == 24
        ops = {n.op_type for n in onnx.load(str(version / "model.onnx")).graph.node}
        assert "DynamicQuantizeLinear" in ops and "int8: validation macro-F1" in done.stdout
        assert len(list(version.parent.iterdir())) == 1  # no float32 copy left beside it
    else:  # refused: one line with the numbers, nothing published
        line = one_error_line(done)
        assert "--quantize int8: " in line and " ms" in line and "float32" in line
        assert not base.exists()  # not even the folders it made
    savedmodel = run_script("export", str(runs["single"]), "--to", str(base), "--quantize", "int8")
    assert "add --format onnx" in one_error_line(savedmodel)
    moved = tmp_path / "moved"  # a run whose data is gone: refused before any work
    shutil.copytree(runs["single"], moved)
    config = json.loads((moved / "config.json").read_text())
    config["config"]["data"]["train"] = str(tmp_path / "gone")
    (moved / "config.json").write_text(json.dumps(config))
    gone = run_script(
        "export", str(moved), "--to", str(tmp_path / "y"), "--format", "onnx", "--quantize", "int8"
    )
    line = one_error_line(gone)
    assert "gone" in line and "drop --quantize" in line
    assert not any((tmp_path / "y").glob("*/[0-9]*"))


KILL_DURING_ONNX_EXPORT = """
import os, signal
from bertclf.export import exporter
def die(*args):
    os.kill(os.getpid(), signal.SIGKILL)
exporter.verify_onnx_version = die
exporter.export({run!r}, {base!r}, format="onnx")
"""


def test_a_killed_onnx_export_publishes_nothing(runs, tmp_path):
    base = tmp_path / "m"
    script = KILL_DURING_ONNX_EXPORT.format(run=str(runs["single"]), base=str(base))
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=300)
    assert proc.returncode == -9
    left = [p.name for p in (base / "run").iterdir()]
    assert len(left) == 1 and left[0].startswith(".1.pid")  # hidden, never a version
    assert not any((base / "run" / left[0] / "assets.extra").glob("*.json"))
    # The next export removes the dead one's leftover, as for SavedModels.
    export(runs["single"], base, format="onnx", verify=False)
    assert sorted(p.name for p in (base / "run").iterdir()) == ["1"]


def test_serve_swaps_a_savedmodel_version_for_an_onnx_one_without_failures(runs, tmp_path):
    from test_serving import Server

    base = tmp_path / "models"
    export(runs["single"], base, name="m", verify=False)  # version 1: a SavedModel
    server = Server(base, "--poll", "0.2")
    results, stop = [], threading.Event()

    def client_loop():
        with httpx.Client(base_url=server.url, timeout=30) as client:
            while not stop.is_set():
                try:
                    r = client.post("/v1/models/m:predict", json={"instances": TEXTS[:1]})
                    results.append(r.status_code)
                except Exception as e:  # noqa: BLE001 - recorded, and fails the test below
                    results.append(type(e).__name__)

    try:
        server.wait_for("m", 1)
        thread = threading.Thread(target=client_loop)
        thread.start()
        try:
            time.sleep(0.5)
            export(runs["single"], base, name="m", format="onnx", verify=False)  # version 2
            server.wait_for("m", 2, timeout=60)
            time.sleep(0.5)
        finally:
            stop.set()
            thread.join()
        assert results and all(code == 200 for code in results), results[:5]
        answer = server.client.post("/v1/models/m:predict", json={"instances": TEXTS})
        assert answer.status_code == 200, answer.text
        expected = onnx_outputs(base / "m" / "2", TEXTS)
        served = [row["scores"] for row in answer.json()["predictions"]]
        np.testing.assert_allclose(served, expected["scores"], atol=1e-6)
        assert [row["classes"] for row in answer.json()["predictions"]] == expected["classes"]
        meta = server.client.get("/v1/models/m/versions/2/metadata").json()
        outputs = meta["metadata"]["signature_def"]["signature_def"]["serving_default"]["outputs"]
        assert {"scores", "classes", "ood_score", "abstain"} <= set(outputs)
        classify = server.client.post("/v1/models/m:classify", json={"examples": [{"text": "x"}]})
        assert classify.status_code == 400  # an ONNX version has serving_default only
        # A corrupt model.onnx in version 3: its error in the status, version 2 keeps serving.
        good, bad = base / "m" / "2", base / "m" / "3"
        shutil.copytree(good, bad, ignore=shutil.ignore_patterns("model.onnx"))
        (bad / "model.onnx").write_bytes((good / "model.onnx").read_bytes()[:4096])

        def version_3():
            rows = server.client.get("/v1/models/m").json()["model_version_status"]
            return {row["version"]: row for row in rows}.get("3", {})

        deadline = time.monotonic() + 60
        while version_3().get("state") != "END" and time.monotonic() < deadline:
            time.sleep(0.2)
        status = version_3()
        assert status["state"] == "END", status
        assert status["status"]["error_code"] != "OK" and status["status"]["error_message"]
        again = server.client.post("/v1/models/m:predict", json={"instances": TEXTS})
        assert again.status_code == 200 and again.json() == answer.json()
    finally:
        server.stop()


def test_score_runs_an_onnx_export_on_beam(runs, tmp_path):
    from test_scoring import beam_cli

    export(runs["single"], tmp_path / "models", name="m", format="onnx", verify=False)
    texts = TEXTS[:4]
    (tmp_path / "in.jsonl").write_text("".join(json.dumps({"text": t}) + "\n" for t in texts))
    done = beam_cli(
        "score",
        str(tmp_path / "models" / "m"),
        "--input",
        str(tmp_path / "in.jsonl"),
        "--output",
        str(tmp_path / "out" / "scores"),
    )
    assert done.returncode == 0, done.stderr[-3000:]
    [shard] = (tmp_path / "out").glob("scores-*-of-*.jsonl")
    rows = [json.loads(line) for line in shard.read_text().splitlines()]
    expected = onnx_outputs(tmp_path / "models" / "m" / "1", texts)["scores"]
    by_text = {row["text"]: list(row["probabilities"].values()) for row in rows}
    np.testing.assert_allclose([by_text[t] for t in texts], expected, atol=1e-6)
