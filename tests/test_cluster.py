"""Multi-worker training: TF_CONFIG checks, and two local workers against one."""

import json
import os

import pytest

from bertclf.cluster import local_argv, read_tf_config
from bertclf.errors import ConfigError

from conftest import one_error_line, run_cli


def test_tf_config_is_read_and_checked():
    task = read_tf_config(
        json.dumps({"cluster": {"worker": ["a:1", "b:2"]}, "task": {"type": "worker", "index": 1}})
    )
    assert task.workers == 2 and not task.is_chief
    chief = read_tf_config(
        json.dumps(
            {
                "cluster": {"chief": ["c:1"], "worker": ["a:1"]},
                "task": {"type": "chief", "index": 0},
            }
        )
    )
    assert chief.is_chief and chief.workers == 2
    assert read_tf_config("") is None
    for raw, message in [
        ("{not json", "TF_CONFIG is not valid JSON"),
        ('{"cluster": {"worker": ["a:1"]}}', 'TF_CONFIG needs "cluster" and "task"'),
        (
            '{"cluster": {"worker": ["a:1"]}, "task": {"type": "ps", "index": 0}}',
            "is not in its cluster",
        ),
        (
            '{"cluster": {"worker": ["a:1"]}, "task": {"type": "worker", "index": 3}}',
            "outside 'worker'",
        ),
    ]:
        with pytest.raises(ConfigError, match=message):
            read_tf_config(raw)
    assert local_argv(["d", "--local-workers", "2", "--strategy=default", "--out", "o"]) == [
        "d",
        "--out",
        "o",
    ]


def test_bad_cluster_arguments_fail_before_any_work(tiny_data, tmp_path):
    out = tmp_path / "run"
    cases = [
        ({"TF_CONFIG": "{oops"}, [], "TF_CONFIG is not valid JSON"),
        ({}, ["--local-workers", "0"], "--local-workers 0 is invalid: use 1 or more"),
        ({}, ["--strategy", "multiworker"], "--strategy multiworker needs TF_CONFIG"),
    ]
    for env, args, message in cases:
        proc = run_cli("train", str(tiny_data), "--out", str(out), *args, env={**os.environ, **env})
        assert proc.returncode == 2, (args, proc.stderr)
        assert message in one_error_line(proc)
        assert not out.exists()


def test_two_local_workers_train_what_one_worker_trains(tiny_data, tiny_encoder, tmp_path):
    common = [
        str(tiny_data),
        "--model",
        tiny_encoder,
        "--seq-len",
        "32",
        "--epochs",
        "2",
        "--batch-size",
        "8",
        "--lr",
        "1e-3",
        "--precision",
        "fp32",
        "--dropout",
        "0",
        "--no-progress",
    ]
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    env = {**os.environ, "TMPDIR": str(scratch)}
    two = run_cli(
        "train",
        *common,
        "--out",
        str(tmp_path / "two"),
        "--local-workers",
        "2",
        env=env,
        timeout=600,
    )
    assert two.returncode == 0, two.stderr[-3000:]
    one = run_cli("train", *common, "--out", str(tmp_path / "one"), timeout=600)
    assert one.returncode == 0, one.stderr[-3000:]
    h2 = json.loads((tmp_path / "two" / "history.json").read_text())
    h1 = json.loads((tmp_path / "one" / "history.json").read_text())
    # The global batch of 8 split over two workers, gradients summed: the same model.
    for a, b in zip(h2, h1, strict=True):
        for key in ("train_loss", "val_loss", "val_macro_f1"):
            assert a[key] == pytest.approx(b[key], abs=1e-5), key
    config = json.loads((tmp_path / "two" / "config.json").read_text())["config"]
    assert config["train"]["strategy"] == "multiworker"
    # Only the chief wrote a run; the other worker's scratch copy is gone.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "one", "tmp", "two"]
    assert [p for p in scratch.iterdir() if p.name.startswith("bertclf-worker")] == []
