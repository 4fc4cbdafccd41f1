"""Multi-worker training: TF_CONFIG checks, two local workers against one, a missing
worker, and SIGTERM then a restart that resumes."""

import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest

from bertclf.errors import ConfigError
from bertclf.training.cluster import free_ports, local_argv, read_tf_config

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


# --long chunk at seq-len 8: most texts are 2-4 windows, pooled per text on each worker.
@pytest.mark.parametrize(
    "shape", [["--seq-len", "32"], ["--seq-len", "8", "--long", "chunk", "--max-chunks", "4"]]
)
def test_two_local_workers_train_what_one_worker_trains(tiny_data, tiny_encoder, tmp_path, shape):
    common = [
        str(tiny_data),
        "--model",
        tiny_encoder,
        *shape,
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
        "--contrastive",  # multi-worker runs skip the stage: so must the one-worker run
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
    if "chunk" not in shape:  # the resume path is the same for both shapes
        # Resumed with nothing left to train, so no later epoch beats the kept one: the
        # non-chief's fresh scratch folder then holds no kept weights (it exited 1 here).
        before = (tmp_path / "two" / "history.json").read_text()
        again = run_cli(
            "train",
            *common,
            "--out",
            str(tmp_path / "two"),
            "--local-workers",
            "2",
            "--resume",
            env=env,
            timeout=600,
        )
        assert again.returncode == 0, again.stderr[-3000:]
        assert (tmp_path / "two" / "history.json").read_text() == before  # the chief's, as it was
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
    assert config["model"]["long"] == ("chunk" if "chunk" in shape else "truncate")
    # Only the chief wrote a run; the other worker's scratch copy is gone.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "one", "tmp", "two"]
    assert [p for p in scratch.iterdir() if p.name.startswith("bertclf-worker")] == []


def _tf_config(ports, index):
    hosts = [f"127.0.0.1:{p}" for p in ports]
    return json.dumps({"cluster": {"worker": hosts}, "task": {"type": "worker", "index": index}})


def _start_worker(args, ports, index, log, timeout_env="300"):
    """One `bertclf train` worker of a loopback cluster, in its own process group."""
    env = {
        **os.environ,
        "TF_CONFIG": _tf_config(ports, index),
        "BERTCLF_PEER_TIMEOUT": timeout_env,
    }
    return subprocess.Popen(
        [sys.executable, "-m", "bertclf", "train", *args],
        env=env,
        stdout=log,
        stderr=log,
        start_new_session=True,
    )


def _stop(procs):
    for p in procs:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()


@pytest.mark.parametrize("index", [0, 1])
def test_a_missing_worker_is_one_line_not_a_hang(tiny_data, tmp_path, index):
    # A cluster of two where only worker `index` starts: it gives up after the deadline.
    out = tmp_path / "run"
    env = {
        "TF_CONFIG": _tf_config(free_ports(2), index),
        "BERTCLF_PEER_TIMEOUT": "3",
    }
    args = ["train", str(tiny_data), "--out", str(out), "--strategy", "multiworker"]
    line = one_error_line(run_cli(*args, env=env, timeout=120))
    assert "within 3 s (BERTCLF_PEER_TIMEOUT)" in line, line
    assert ("worker 1 (127.0.0.1:" in line) if index == 0 else ("worker 1: worker 0" in line)
    assert not out.exists()


def test_sigterm_checkpoints_every_worker_and_a_restart_resumes(tiny_data, tiny_encoder, tmp_path):
    out = tmp_path / "run"
    # 12 epochs: SIGTERM comes after the first, and preemption stops the cluster at the next
    # step both workers reach (a few steps), long before the last epoch.
    flags = "--seq-len 32 --epochs 12 --batch-size 8 --lr 1e-4 --precision fp32"
    args = [str(tiny_data), "--out", str(out), "--model", tiny_encoder, *flags.split()]
    args += ["--checkpoint-every", "3", "--no-progress"]
    logs = [tmp_path / f"worker{i}.log" for i in (0, 1)]
    ports, procs = free_ports(2), []
    try:
        with logs[0].open("w") as log0, logs[1].open("w") as log1:
            procs = [_start_worker(args, ports, i, log) for i, log in enumerate((log0, log1))]
            deadline = time.monotonic() + 240
            while not (out / "history.json").is_file():  # epoch 1 is done: training runs
                assert time.monotonic() < deadline and procs[0].poll() is None, logs[0].read_text()
                time.sleep(0.1)
            procs[1].send_signal(signal.SIGTERM)  # the non-chief: the chief learns of it
            codes = [p.wait(timeout=120) for p in procs]
        assert codes == [42, 42], [log.read_text()[-2000:] for log in logs]
        for log in logs:
            assert "bertclf: preempted: checkpoint saved" in log.read_text()
        epochs_done = len(json.loads((out / "history.json").read_text()))
        assert 1 <= epochs_done < 12
        saved = tf_latest_step(out)
        assert saved > 0

        with logs[0].open("w") as log0, logs[1].open("w") as log1:
            ports = free_ports(2)  # a new cluster, as a Job's restarted pods would be
            procs = [
                _start_worker([*args, "--resume"], ports, i, log)
                for i, log in enumerate((log0, log1))
            ]
            codes = [p.wait(timeout=300) for p in procs]
        assert codes == [0, 0], [log.read_text()[-2000:] for log in logs]
        # It resumed from the preemption checkpoint: step `saved`, counted over all epochs.
        said = re.search(r"--resume: continuing (.*?) \(kept", logs[0].read_text()).group(1)
        at = re.fullmatch(r"epoch (\d+) at step (\d+) of (\d+)", said)
        if at:
            epoch, step, per_epoch = map(int, at.groups())
            assert (epoch - 1) * per_epoch + step - 1 == saved, said
        else:
            assert said == f"after epoch {epochs_done} of 12", said
        history = json.loads((out / "history.json").read_text())
        assert [r["epoch"] for r in history] == list(range(1, 13))
    finally:
        _stop(procs)


def tf_latest_step(run_dir) -> int:
    """The step number of the run's last checkpoint (read without TensorFlow)."""
    state = (run_dir / "checkpoints" / "checkpoint").read_text()
    return int(state.split('model_checkpoint_path: "ckpt-')[1].split('"')[0])
