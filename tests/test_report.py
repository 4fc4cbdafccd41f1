"""Run report: figures, mistakes, self-contained HTML, rendered in headless Chromium."""

import base64
import io
import json
import os
import re
import shutil
import subprocess

import numpy as np
import pytest
from PIL import Image

from bertclf import DataConfig, ModelConfig, RunConfig, TrainConfig
from bertclf.training.fine_tuning import train

from conftest import run_cli, write_folder


@pytest.fixture(scope="module")
def run_with_test(tmp_path_factory, tiny_encoder):
    root = tmp_path_factory.mktemp("report")
    data, test = write_folder(root / "data"), write_folder(root / "test", per_class=4, seed=5)
    cfg = RunConfig(
        data=DataConfig(str(data), test=str(test)),
        out=str(root / "run"),
        model=ModelConfig(model=tiny_encoder, seq_len=32),
        train=TrainConfig(epochs=2, batch_size=8, lr=1e-3),
    )
    train(cfg, progress=False)
    return root / "run"


def test_training_writes_the_report(run_with_test):
    run = run_with_test
    for name in (
        "curves.png",
        "confusion_validation.png",
        "confusion_test.png",
        "reliability.png",
        "coverage.png",
        "ood_validation.png",
        "misclassified.jsonl",
        "explanations.jsonl",
        "report.html",
    ):
        assert (run / name).is_file(), name
    for name in ("curves.png", "confusion_validation.png"):
        with Image.open(run / name) as img:
            assert img.format == "PNG" and img.size[0] > 300 and img.size[1] > 250
    mistakes = [json.loads(line) for line in (run / "misclassified.jsonl").read_text().splitlines()]
    probs = [m["probability"] for m in mistakes]
    assert probs == sorted(probs, reverse=True)
    for m in mistakes:
        assert m["true"] != m["predicted"] and m["split"] in ("validation", "test")
    page = (run / "report.html").read_text()
    test_metrics = json.loads((run / "test_metrics.json").read_text())
    assert f"{test_metrics['accuracy']:.4f}" in page and "macro-F1" in page
    images = re.findall(r'src="data:image/png;base64,([^"]+)"', page)
    assert len(images) == 6  # curves, 2 confusion matrices; reliability, coverage, OOD
    for data in images:
        with Image.open(io.BytesIO(base64.b64decode(data))) as img:
            assert img.format == "PNG"
    assert 'src="http' not in page and "<script" not in page  # self-contained
    # Why the model said it: the explained texts (mistakes first), their words
    # highlighted, and the words that drive each class.
    explained = [json.loads(line) for line in (run / "explanations.jsonl").read_text().splitlines()]
    kinds = [e["kind"] for e in explained]
    assert kinds == sorted(kinds, key=lambda k: k != "mistake") and "correct" in kinds
    if mistakes:  # the most confident one is explained first
        assert explained[0]["true"] == mistakes[0]["true"]
        assert explained[0]["label"] == mistakes[0]["predicted"]
    assert "<h2>Why the model said it</h2>" in page and "rgba(46,160,67" in page
    assert "The words that most often drive each class" in page


def test_report_command_regenerates(run_with_test):
    (run_with_test / "report.html").unlink()
    proc = run_cli("report", str(run_with_test))
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (run_with_test / "report.html").is_file()


def chromium_binary():
    """Debian's chromium; installed here when missing and apt-get can (as root)."""
    found = shutil.which("chromium")
    if found is None and shutil.which("apt-get") and os.geteuid() == 0:
        subprocess.run(["apt-get", "update", "-qq"], capture_output=True, timeout=600)
        subprocess.run(
            ["apt-get", "install", "-y", "-qq", "chromium"], capture_output=True, timeout=900
        )
        found = shutil.which("chromium")
    return found


def screenshot(page, tmp_path, width: int) -> np.ndarray:
    """The page as headless Chromium draws it in a window `width` pixels wide: RGB ints."""
    chromium = chromium_binary()
    if chromium is None:
        # In CI (root, apt) chromium is always installable: a missing browser is a failure.
        assert not os.environ.get("CI"), "chromium could not be installed in CI"
        pytest.skip("chromium is not installed and cannot be installed here (needs root+apt)")
    shot = tmp_path / "report.png"
    subprocess.run(
        [
            chromium,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={tmp_path / 'profile'}",
            "--hide-scrollbars",
            f"--window-size={width},2600",
            f"--screenshot={shot}",
            page.as_uri(),
        ],
        capture_output=True,
        timeout=120,
        check=True,
    )
    return np.asarray(Image.open(shot).convert("RGB")).astype(int)


def test_report_renders_in_headless_chromium(run_with_test, tmp_path):
    pixels = screenshot(run_with_test / "report.html", tmp_path, 1100)
    r, g, b = pixels[..., 0], pixels[..., 1], pixels[..., 2]
    # The curves are drawn in matplotlib's red and blue, the confusion matrices in Blues:
    # such pixels appear only if the embedded images were decoded and displayed.
    dark_blue = (b > 90) & (r < 40) & (g < 80)
    curve_red = (r > 180) & (g < 60) & (b < 60)
    assert dark_blue.sum() > 500, dark_blue.sum()
    assert curve_red.sum() > 100, curve_red.sum()


def test_report_uses_a_wide_window_and_says_which_epoch_it_kept(run_with_test, tmp_path):
    pixels = screenshot(run_with_test / "report.html", tmp_path, 1600)
    r, g, b = pixels[..., 0], pixels[..., 1], pixels[..., 2]
    dark_blue = (b > 90) & (r < 40) & (g < 80)  # the confusion matrices' darkest cells
    rows = np.flatnonzero(dark_blue.any(axis=1))
    band = dark_blue[rows.min() : rows.max() + 1]
    # The validation and test matrices side by side: dark cells in both halves of one band.
    assert band[:, :800].sum() > 100 and band[:, 800:].sum() > 100
    curve_red = (r > 180) & (g < 60) & (b < 60)
    columns = np.flatnonzero(curve_red.any(axis=0))
    assert columns.max() - columns.min() > 600  # the curves across the page, not 40% of it
    page = (run_with_test / "report.html").read_text()
    assert "<th>best so far</th><th>kept</th>" in page
    assert page.count("<td>kept</td>") == 1
    for repr_ in ("<td>None</td>", "<td>[]</td>", "<td>()</td>", "site-packages"):
        assert repr_ not in page, repr_
    with Image.open(run_with_test / "curves.png") as img:
        assert img.size[0] > 2 * img.size[1]  # the panels side by side
