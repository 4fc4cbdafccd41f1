"""Export: layout, signatures, parity in a fresh process, versions, atomicity, op audit."""

import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest

from bertclf import DataConfig, ModelConfig, RunConfig, TrainConfig, servable
from bertclf.config import export as export_targets
from bertclf.errors import ExportError, RunError
from bertclf.export import exporter as export_lib
from bertclf.export import savedmodel
from bertclf.export import verification as export_check
from bertclf.prediction.exported_model import ExportedModel
from bertclf.prediction.trained_run import load_run
from bertclf.training.fine_tuning import train

from conftest import run_cli

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def trained(tmp_path_factory, tiny_encoder):
    from conftest import write_folder

    root = tmp_path_factory.mktemp("export")
    data = write_folder(root / "data")
    cfg = RunConfig(
        data=DataConfig(str(data)),
        out=str(root / "tickets"),
        model=ModelConfig(model=tiny_encoder, seq_len=32, clean=("email",)),
        train=TrainConfig(epochs=2, batch_size=8, lr=1e-3, contrastive=0),
    )
    train(cfg, progress=False, report=False)  # exported: reports are test_report's
    return root / "tickets"


TEXTS = ["refund my invoice please", "the app crash error", "", "please add export " * 40]


def test_export_signatures_parity_and_metadata(trained, tmp_path):
    result = export_lib.export(trained, tmp_path / "models")
    assert result.path == tmp_path / "models" / "tickets" / "1" and result.version == 1
    assert result.max_abs_diff is not None and result.max_abs_diff <= 1e-5

    sigs = result.signatures
    serve, classify = sigs["serving_default"], sigs["classify"]
    assert serve["method_name"] == "tensorflow/serving/predict"
    assert serve["inputs"] == {
        "text": {"dtype": "DT_STRING", "shape": [-1], "name": "serving_default_text:0"}
    }
    assert {k: (v["dtype"], v["shape"]) for k, v in serve["outputs"].items()} == {
        "scores": ("DT_FLOAT", [-1, 3]),
        "classes": ("DT_STRING", [-1]),
        "class_ids": ("DT_INT32", [-1]),
        # A calibrated run's extra outputs (the names and shapes above are unchanged).
        "ood_score": ("DT_FLOAT", [-1]),
        "abstain": ("DT_BOOL", [-1]),
    }
    assert classify["method_name"] == "tensorflow/serving/classify"
    assert list(classify["inputs"]) == ["inputs"]
    assert {k: v["dtype"] for k, v in classify["outputs"].items()} == {
        "classes": "DT_STRING",
        "scores": "DT_FLOAT",
    }

    labels = ["billing", "bug", "feature"]
    assert (result.path / "assets" / "labels.txt").read_text().split() == labels
    meta = json.loads((result.path / "assets.extra" / "bertclf.json").read_text())
    assert "labels" not in meta and meta["version"] == 1  # assets/labels.txt is the one copy
    assert meta["op_audit"]["non_core_ops"] == result.non_core_ops
    assert "FastWordpieceTokenizeWithOffsets" in result.non_core_ops
    # Without verification the graph is read in this process (TF Text's ops registered
    # here too) against the core ops of a TensorFlow-only one: the same audit.
    here = export_check.read_graph(result.path)
    assert here["non_core_ops"] == result.non_core_ops and here["signatures"] == sigs

    # The exported graph and the trained model agree, and predict reads both the same way.
    exported = ExportedModel(tmp_path / "models" / "tickets")
    np.testing.assert_allclose(
        exported.predict_proba(TEXTS), load_run(trained).predict_proba(TEXTS), atol=1e-5
    )
    outputs = [
        run_cli("predict", str(p), *TEXTS, "--json").stdout
        for p in (trained, tmp_path / "models" / "tickets", result.path)
    ]
    assert outputs[0] and outputs[0] == outputs[1] == outputs[2]


def test_tf_serving_warmup_records_replay_on_both_signatures(trained, tmp_path):
    import tensorflow as tf

    result = export_lib.export(trained, tmp_path / "m", verify=False)
    requests = servable.read_warmup(result.path)  # parsed as TF Serving's PredictionLog protos
    assert [(r.signature, r.method) for r in requests] == [
        ("serving_default", "tensorflow/serving/predict"),
        ("classify", "tensorflow/serving/classify"),
    ]
    seq_len = load_run(trained).preprocessor.sequence_length
    for r in requests:  # a short text and one over the window: both trimmed widths
        assert r.texts[0] == b"warm up" and len(r.texts[1].split()) == seq_len
    model = tf.saved_model.load(str(result.path))
    assert servable.replay_warmup(model, result.path) == 2
    assert servable.read_warmup(tmp_path) == []  # an export without records: nothing to replay


def test_versions_and_names(trained, tmp_path):
    base = tmp_path / "m"
    (base / "tickets" / ".9.pid1.x.tmp").mkdir(parents=True)  # non-numeric: ignored
    (base / "tickets" / "notes").mkdir()
    assert export_lib.export(trained, base, verify=False).version == 1
    assert export_lib.export(trained, base, version=5, verify=False).version == 5
    assert export_lib.export(trained, base, verify=False).version == 6
    with pytest.raises(ExportError, match=r"tickets/5 already exists and is never overwritten"):
        export_lib.export(trained, base, version=5, verify=False)
    with pytest.raises(ExportError, match=r"'bad name!' has characters outside"):
        export_lib.export(trained, base, name="bad name!")
    assert servable.versions(base / "tickets") == [1, 5, 6]
    assert not (base / "bad name!").exists()


def test_bad_inputs(trained, tmp_path, tiny_data):
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("x")
    with pytest.raises(ExportError, match="cannot create"):
        export_lib.export(trained, not_a_dir)
    unfinished = tmp_path / "unfinished"
    shutil.copytree(trained, unfinished)
    (unfinished / "best.weights.h5").unlink()
    with pytest.raises(RunError, match=r"no best.weights.h5"):
        export_lib.export(unfinished, tmp_path / "m")
    assert not (tmp_path / "m").exists()
    with pytest.raises(ExportError, match="--target 'tfserving-1.0' is unknown"):
        export_lib.export(trained, tmp_path / "m", target="tfserving-1.0")


def test_failure_mid_export_leaves_nothing(trained, tmp_path, monkeypatch):
    def boom(path):
        raise RuntimeError("disk full")

    monkeypatch.setattr(savedmodel, "mark_classify_method", boom)
    with pytest.raises(RuntimeError, match="disk full"):
        export_lib.export(trained, tmp_path / "m")
    assert not (tmp_path / "m").exists()  # nor the folders the export made


KILL_DURING_EXPORT = """
import os, signal
from bertclf.export import exporter, savedmodel
def die(path):
    os.kill(os.getpid(), signal.SIGKILL)
savedmodel.mark_classify_method = die
exporter.export({run!r}, {base!r})
"""


def test_killed_export_publishes_no_version_and_is_cleaned_up(trained, tmp_path):
    base = tmp_path / "m"
    proc = subprocess.run(
        [sys.executable, "-c", KILL_DURING_EXPORT.format(run=str(trained), base=str(base))],
        capture_output=True,
        timeout=300,
    )
    assert proc.returncode == -9
    left = [p.name for p in (base / "tickets").iterdir()]
    assert len(left) == 1 and left[0].startswith(".1.pid")  # hidden: TF Serving ignores it
    export_lib.export(trained, base, verify=False)
    assert sorted(p.name for p in (base / "tickets").iterdir()) == ["1"]


def test_op_audit_refuses_round_robin_for_tf_serving_2_19(trained, tmp_path):
    rr = tmp_path / "rr"
    shutil.copytree(trained, rr)
    meta = json.loads((rr / "config.json").read_text())
    meta["config"]["model"]["truncate"] = "round_robin"  # keras-hub's default packer
    (rr / "config.json").write_text(json.dumps(meta))
    with pytest.raises(ExportError, match=r"op audit: .*'TFText>RoundRobinTrim'.*Op type not"):
        export_lib.export(rr, tmp_path / "m", verify=False)
    assert not (tmp_path / "m").exists()  # refused: nothing left, not even the folders
    ok = export_lib.export(rr, tmp_path / "m", target="tensorflow-2.21", verify=False)
    assert "TFText>RoundRobinTrim" in ok.non_core_ops


def test_packages(trained, tmp_path):
    result = export_lib.export(
        trained, tmp_path / "m", zip_archive=True, sagemaker=True, verify=False
    )
    zip_path, tar_path = result.packages
    with zipfile.ZipFile(zip_path) as z:
        names = z.namelist()
    assert "tickets/1/saved_model.pb" in names and "tickets/1/assets/labels.txt" in names
    with tarfile.open(tar_path) as t:
        members = t.getnames()
    assert tar_path.name == "tickets-1.model.tar.gz"
    assert "1/saved_model.pb" in members and "1/variables/variables.index" in members


def test_cli_export_prints_signatures_and_errors(trained, tmp_path):
    proc = run_cli("export", str(trained), "--to", str(tmp_path / "m"), "--name", "demo")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "signatures: " in proc.stdout and "serving_default (text -> " in proc.stdout
    assert "signature_def" not in proc.stdout  # the full dump is for -v
    assert re.search(r"exported: .*demo/1 \(version 1, [\d.]+ MiB", proc.stdout)
    # -v prints them whole; without verification they are read in the exporting process.
    verbose = run_cli(
        "export", str(trained), "--to", str(tmp_path / "m"), "--name", "v", "-v", "--no-verify"
    )
    assert "Method name is: tensorflow/serving/classify" in verbose.stdout
    assert "verified in a fresh process" not in verbose.stdout
    again = run_cli(
        "export", str(trained), "--to", str(tmp_path / "m"), "--name", "demo", "--version", "1"
    )
    assert again.returncode == 2
    assert again.stderr.strip().splitlines()[-1].startswith("bertclf: error: ")


def test_deploy_files_match_the_audit(trained, tmp_path):
    from google.protobuf import text_format
    from tensorflow_serving.config import model_server_config_pb2

    dockerfile = (ROOT / "deploy" / "Dockerfile").read_text()
    tag = re.search(r"^FROM tensorflow/serving:(\S+)$", dockerfile, re.M).group(1)
    assert tag == export_targets.TARGETS[export_targets.DEFAULT_TARGET][0] == "2.19.1"
    config = text_format.Parse(
        (ROOT / "deploy" / "models.config").read_text(), model_server_config_pb2.ModelServerConfig()
    )
    for model in config.model_config_list.config:
        assert model.base_path == f"/models/{model.name}" and model.model_platform == "tensorflow"
    result = export_lib.export(trained, tmp_path / "m", verify=False)
    deploy_md = (ROOT / "deploy" / "DEPLOY.md").read_text()
    block = deploy_md.split("<!-- op-audit-list -->")[1].split("<!-- /op-audit-list -->")[0]
    assert re.findall(r"`([^`]+)`", block) == result.non_core_ops
    assert "2.19.1" in deploy_md


LOAD_AS_NOBODY = """
import json, os, sys
from pathlib import Path
import tensorflow as tf
import tensorflow_text  # noqa: F401  (imported as root: the modules live where nobody can read)
from bertclf import servable
os.setgroups([])
os.setgid(65534)
os.setuid(65534)  # from here on the kernel checks the export's modes as user nobody
model = tf.saved_model.load(sys.argv[1])
scores = model.signatures["serving_default"](text=tf.constant(["refund my invoice"]))["scores"]
labels = servable.read_labels(Path(sys.argv[1]))
print(json.dumps({"uid": os.getuid(), "labels": labels, "rows": scores.numpy().tolist()}))
"""


def _modes(root: Path) -> set[tuple[str, int]]:
    return {("d" if p.is_dir() else "f", p.stat().st_mode & 0o777) for p in root.rglob("*")}


def _assert_archives_readable(zip_path: Path, tar_path: Path) -> None:
    """Both archives, and every file and folder in them, readable by another user."""
    for archive in (zip_path, tar_path):
        assert archive.stat().st_mode & 0o777 == 0o644
    with zipfile.ZipFile(zip_path) as z:
        assert {(i.external_attr >> 16) & 0o777 for i in z.infolist() if not i.is_dir()} == {0o644}
    with tarfile.open(tar_path) as t:
        assert {m.mode for m in t.getmembers() if m.isfile()} == {0o644}
        assert {m.mode for m in t.getmembers() if m.isdir()} <= {0o755}


def _assert_no_local_paths(export_dir: Path, *local_dirs: Path) -> None:
    for path in export_dir.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            for local in map(str, local_dirs):
                assert local.encode() not in data, (path, local)


def test_export_follows_umask_and_loads_as_another_user(trained, tmp_path, caplog):
    # The run was written with this process' umask: its files are not private.
    mask = os.umask(0o022)
    os.umask(mask)
    assert _modes(trained) <= {("f", 0o666 & ~mask), ("d", 0o777 & ~mask)}

    # A run copied elsewhere (its data path no longer resolves) still verifies on real
    # validation texts: the ones it stores.
    moved = tmp_path / "elsewhere" / "tickets"
    shutil.copytree(trained, moved)
    run = load_run(moved)
    n = len(run.sample_texts())
    assert n == 6  # the whole validation split: 2 of each class's 12 (stratified, 0.2)
    assert export_check.sample_texts(run)[:n] == run.sample_texts()

    shared = Path(tempfile.mkdtemp(prefix="bertclf-umask-"))
    os.chmod(shared, 0o755)  # mkdtemp is 0700: let another user reach the base path
    try:
        old = os.umask(0o022)
        try:
            with caplog.at_level("WARNING"):
                result = export_lib.export(
                    moved, shared / "models", zip_archive=True, sagemaker=True
                )
        finally:
            os.umask(old)
        assert result.max_abs_diff <= 1e-5 and "built-in texts" not in caplog.text
        assert _modes(result.path) == {("f", 0o644), ("d", 0o755)}
        assert (result.path.stat().st_mode & 0o777) == 0o755
        _assert_archives_readable(*result.packages)
        # No local absolute path anywhere in the export (graph, metadata, assets).
        _assert_no_local_paths(result.path, trained.parent, tmp_path, shared, Path.home())

        if os.geteuid() != 0:
            pytest.skip("loading as user nobody needs root to switch users")
        proc = subprocess.run(
            [sys.executable, "-c", LOAD_AS_NOBODY, str(result.path)],
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert proc.returncode == 0, proc.stderr[-2000:]
        out = json.loads(proc.stdout.strip().splitlines()[-1])
        assert out["uid"] == 65534 and out["labels"] == ["billing", "bug", "feature"]
        np.testing.assert_allclose(
            out["rows"], load_run(trained).predict_proba(["refund my invoice"]), atol=1e-5
        )
    finally:
        shutil.rmtree(shared, ignore_errors=True)


def test_a_version_taken_meanwhile_moves_this_export_to_the_next(trained, tmp_path, monkeypatch):
    base = tmp_path / "m"
    # Leftovers of a killed export (its pid is gone) go; a live process' file stays.
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    ).stdout.strip()
    (base / "tickets").mkdir(parents=True)
    stale_zip = base / f".tickets.zip.pid{dead}.abc.tmp.zip"
    stale_zip.write_bytes(b"half a zip")
    stale_version = base / "tickets" / f".1.pid{dead}.xyz.tmp"
    stale_version.mkdir()
    mine = base / f".other.pid{os.getpid()}.abc.tmp"
    mine.write_text("in progress")
    write = export_lib.write_version

    def and_a_concurrent_export_publishes_1(run, tmp):
        write(run, tmp)
        shutil.copytree(tmp, base / "tickets" / "1")  # the other export won the race

    monkeypatch.setattr(export_lib, "write_version", and_a_concurrent_export_publishes_1)
    result = export_lib.export(trained, base, verify=False)
    assert not stale_zip.exists() and not stale_version.exists() and mine.exists()
    assert result.version == 2 and result.path == base / "tickets" / "2"
    meta = json.loads((result.path / "assets.extra" / "bertclf.json").read_text())
    assert meta["version"] == 2
    assert sorted(p.name for p in (base / "tickets").iterdir()) == ["1", "2"]
    # An explicit --version that another export takes meanwhile: one error, nothing left.
    monkeypatch.setattr(
        export_lib,
        "write_version",
        lambda run, tmp: (write(run, tmp), shutil.copytree(tmp, base / "tickets" / "7")),
    )
    with pytest.raises(ExportError, match=r"tickets/7 was published by another export"):
        export_lib.export(trained, base, version=7, verify=False)
    assert sorted(p.name for p in (base / "tickets").iterdir()) == ["1", "2", "7"]


PARENT = """
import os, subprocess, sys, time
child = subprocess.Popen(
    [sys.executable, "-m", "bertclf.export.fresh_check", sys.argv[1], str(os.getpid())],
    stdin=subprocess.PIPE,
)
print(child.pid, flush=True)
time.sleep(120)
"""


def test_the_verifier_dies_with_the_export(trained, tmp_path):
    parent = subprocess.Popen(
        [sys.executable, "-c", PARENT, str(tmp_path)], stdout=subprocess.PIPE, text=True
    )
    child = int(parent.stdout.readline())
    time.sleep(1.0)
    parent.kill()
    parent.wait()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and _alive(child):
        time.sleep(0.2)
    assert not _alive(child)


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"  # a zombie has exited
    except FileNotFoundError:
        return False


def test_inference_on_an_export_does_not_load_the_training_side(trained, tmp_path):
    result = export_lib.export(trained, tmp_path / "m", verify=False)
    script = (
        "import sys; from bertclf.prediction.predict import load_predictor; "
        f"p = load_predictor({str(result.path)!r}); p.predict(['refund my invoice']); "
        "print(sorted(m for m in ('keras_hub', 'bertclf.training', 'bertclf.run') "
        "if m in sys.modules))"
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip().splitlines()[-1] == "[]"


def test_signatures_trim_each_batch_to_its_longest_text(trained, tmp_path):
    """Padding to the batch's longest text gives the probabilities of padding to --seq-len."""
    import tensorflow as tf

    from bertclf.model.preprocessing import inference_features

    run = load_run(trained)
    pre = run.preprocessor
    # Short texts are cut to a few columns; over-long ones keep the whole window.
    assert inference_features(pre, tf.constant(["refund", ""]))["token_ids"].shape[1] == 4
    assert inference_features(pre, tf.constant(TEXTS))["token_ids"].shape[1] == pre.sequence_length
    full = run.model.probabilities(run.model(pre(tf.constant(TEXTS)), training=False)).numpy()
    trimmed = run.predict_proba(TEXTS)
    np.testing.assert_allclose(trimmed, full, atol=1e-5)
    short = TEXTS[:2]  # a batch of short texts only: its own, narrower width
    np.testing.assert_allclose(run.predict_proba(short), full[:2], atol=1e-5)

    result = export_lib.export(trained, tmp_path / "m")
    model = tf.saved_model.load(str(result.path))
    serve, classify = model.signatures["serving_default"], model.signatures["classify"]
    for batch, expected in ((TEXTS, full), (short, full[:2])):
        got = serve(text=tf.constant(batch))["scores"].numpy()
        np.testing.assert_allclose(got, expected, atol=1e-5)
        examples = [servable.text_example(t.encode()) for t in batch]
        via_classify = classify(inputs=tf.constant(examples))["scores"].numpy()
        np.testing.assert_allclose(via_classify, got, atol=1e-6)
    empties = serve(text=tf.constant(["", "", ""]))["scores"].numpy()
    np.testing.assert_allclose(empties.sum(axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(empties, np.repeat(full[2:3], 3, axis=0), atol=1e-5)
    assert serve(text=tf.constant([], tf.string))["scores"].shape == (0, 3)


def test_a_bf16_run_exports_with_float32_compute(tmp_path, tiny_encoder):
    from conftest import one_error_line, write_folder

    data = write_folder(tmp_path / "data")
    cfg = RunConfig(
        data=DataConfig(str(data)),
        out=str(tmp_path / "bf16run"),
        model=ModelConfig(model=tiny_encoder, seq_len=32),
        train=TrainConfig(epochs=1, batch_size=8, lr=1e-3, precision="bf16", contrastive=0),
    )
    train(cfg, progress=False, report=False)  # exported: reports are test_report's
    run = tmp_path / "bf16run"
    as_trained = export_lib.export(run, tmp_path / "m", name="a")
    fp32 = export_lib.export(run, tmp_path / "m", name="b", precision="fp32")
    dtypes = [
        json.loads((r.path / "assets.extra" / "bertclf.json").read_text())["compute_dtype"]
        for r in (as_trained, fp32)
    ]
    assert dtypes == ["bfloat16", "float32"]
    # Each is verified against the run loaded the same way; they differ by bf16 rounding.
    assert fp32.max_abs_diff <= 1e-5 and as_trained.max_abs_diff <= 1e-5
    np.testing.assert_allclose(
        ExportedModel(fp32.path).predict_proba(TEXTS),
        load_run(run, "fp32").predict_proba(TEXTS),
        atol=1e-5,
    )
    np.testing.assert_allclose(
        ExportedModel(fp32.path).predict_proba(TEXTS),
        ExportedModel(as_trained.path).predict_proba(TEXTS),
        atol=0.05,
    )

    bad = run_cli("export", str(run), "--to", str(tmp_path / "x"), "--precision", "fp64")
    assert bad.returncode == 2
    assert "--precision" in one_error_line(bad) and "fp64" in one_error_line(bad)
    assert not (tmp_path / "x").exists()


def test_head_tail_exports_for_tf_serving_2_19_with_parity(tmp_path, tiny_encoder):
    from conftest import write_folder

    data = write_folder(tmp_path / "data")
    cfg = RunConfig(
        data=DataConfig(str(data)),
        out=str(tmp_path / "ht"),
        model=ModelConfig(model=tiny_encoder, seq_len=16, truncate="head_tail"),
        train=TrainConfig(epochs=1, batch_size=8, lr=1e-3, contrastive=0),
    )
    train(cfg, progress=False, report=False)  # exported: reports are test_report's
    result = export_lib.export(tmp_path / "ht", tmp_path / "m")  # audits tfserving-2.19
    assert result.max_abs_diff <= 1e-5
    allowed = export_targets.TARGETS["tfserving-2.19"][1]
    assert set(result.non_core_ops) <= allowed
    # A long text's end reaches the model: changing only its last word changes the scores.
    long_a = "refund my invoice please " * 20 + "crash"
    long_b = "refund my invoice please " * 20 + "export"
    scores = ExportedModel(result.path).predict_proba([long_a, long_b])
    assert np.abs(scores[0] - scores[1]).max() > 0


@pytest.mark.parametrize("pool", ["mean", "max"])
def test_chunk_exports_with_parity_and_reads_the_whole_text(tmp_path, tiny_encoder, pool):
    import tensorflow as tf

    from bertclf.model.preprocessing import TextPreprocessor, inference_features

    from conftest import write_folder

    data = write_folder(tmp_path / "data")
    model_cfg = ModelConfig(
        model=tiny_encoder, seq_len=16, long="chunk", max_chunks=6, chunk_pool=pool
    )
    cfg = RunConfig(
        data=DataConfig(str(data)),
        out=str(tmp_path / "chunk"),
        model=model_cfg,
        train=TrainConfig(epochs=1, batch_size=8, lr=1e-3, contrastive=0),
    )
    train(cfg, progress=False, report=False)  # exported: reports are test_report's
    result = export_lib.export(tmp_path / "chunk", tmp_path / "m")  # audits tfserving-2.19
    assert result.max_abs_diff <= 1e-5
    assert set(result.non_core_ops) <= export_targets.TARGETS["tfserving-2.19"][1]
    long_a = "refund my invoice please " * 15 + "crash"
    long_b = "refund my invoice please " * 15 + "export"
    batch = ["short one", long_a, "", long_b, "the app crashes on export"]
    run, exported = load_run(tmp_path / "chunk"), ExportedModel(result.path)
    served = exported.predict_proba(batch)
    np.testing.assert_allclose(served, run.predict_proba(batch), atol=1e-5)
    assert np.abs(served[1] - served[3]).max() > 0  # the last word, past window 1, counts
    # A text shorter than one window: the probabilities of the same weights without --long.
    pre = run.preprocessor
    plain = TextPreprocessor(pre.tokenizer, pre.sequence_length, clean=pre.clean)
    short = ["short one", "", "the app crashes on export"]
    logits = run.model(inference_features(plain, tf.constant(short)))
    np.testing.assert_allclose(
        run.model.probabilities(logits).numpy(), served[[0, 2, 4]], atol=1e-5
    )
    assert (
        json.loads((tmp_path / "chunk" / "config.json").read_text())["config"]["model"]["stride"]
        == 14
    )


def test_a_model_that_fails_in_the_fresh_process_is_one_named_error(tmp_path):
    broken = tmp_path / "v"
    broken.mkdir()
    (broken / "saved_model.pb").write_bytes(b"not a SavedModel")
    with pytest.raises(ExportError, match=r"/v: the model failed to load in a fresh process \("):
        export_check.check_in_fresh_process(broken, ["a text"])
