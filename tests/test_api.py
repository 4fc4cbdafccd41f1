"""The Python API as a user meets it in a fresh interpreter: quiet, informative, no bars
in a redirected stderr."""

import subprocess
import sys

import pytest

from conftest import write_folder

SCRIPT = """
from bertclf import DataConfig, ModelConfig, RunConfig, TrainConfig, train
config = RunConfig(
    data=DataConfig({data!r}),
    out={out!r},
    model=ModelConfig(model={encoder!r}, seq_len=32),
    train=TrainConfig(epochs=2, batch_size=8, contrastive=0),
)
train(config, verbose={verbose})
print("done")
"""


@pytest.mark.parametrize("verbose", [True, False])
def test_train_from_python_is_quiet_and_says_what_it_did(tmp_path, tiny_encoder, verbose):
    data = write_folder(tmp_path / "data")
    code = SCRIPT.format(
        data=str(data), out=str(tmp_path / "run"), encoder=tiny_encoder, verbose=verbose
    )
    # stderr is a pipe here, as when a user redirects it: no progress frames either.
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    lines = [ln for ln in done.stderr.splitlines() if ln.strip()]
    assert "\r" not in done.stderr
    # TensorFlow's start-up lines (cuInit, oneDNN) are filtered; bertclf's own stay (a
    # warning goes through whatever handler the process has, so its format may differ).
    noise = [ln for ln in lines if "bertclf" not in ln]
    assert not noise, noise[:5]
    said = "\n".join(lines)
    if verbose:
        assert "epoch 2/2" in said and "baseline, TF-IDF" in said and "kept epoch" in said
    else:
        assert "epoch 2/2" not in said
