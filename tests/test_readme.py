"""Every code block of the README runs as written (with the tiny encoder, for speed).

Python blocks run as they are but for one substitution: the test's tiny encoder in place
of the default MiniLM (each substitution must apply, so the README cannot drift away
from what is tested). Bash blocks run line by line in a scratch folder holding the
repository's `examples` and `.venv` (and, for the sections that start from the quick
tour's run and export, a copy of them); `make` lines (the suite itself, the demo) the
`docker` lines (no Docker engine here), and long-running servers are not run.
"""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BLOCKS = re.findall(r"^```(\w+)\n(.*?)^```", (ROOT / "README.md").read_text(), re.M | re.S)
SKIPPED_BASH = ("make ", "docker ", "curl ", "tensorboard ", "bertclf serve ")


def _scratch(tmp_path: Path) -> Path:
    for name in ("examples", ".venv", ".venv-beam"):
        (tmp_path / name).symlink_to(ROOT / name)
    return tmp_path


def _with_tiny_encoder(code: str, subs: dict[str, str]) -> str:
    for old, new in subs.items():
        assert old in code, f"the README no longer has {old!r}: update tests/test_readme.py"
        code = code.replace(old, new)
    return code


def test_every_block_is_python_bash_or_text():
    assert {lang for lang, _ in BLOCKS} <= {"python", "bash", "text"}
    assert any(lang == "python" for lang, _ in BLOCKS)


@pytest.mark.parametrize("index", [i for i, (lang, _) in enumerate(BLOCKS) if lang == "python"])
def test_python_block(index, tmp_path, tiny_encoder):
    code = _with_tiny_encoder(
        BLOCKS[index][1],
        {"ModelConfig(seq_len=64)": f"ModelConfig(model={tiny_encoder!r}, seq_len=64)"},
    )
    proc = subprocess.run(
        [sys.executable, "-c", code],
        cwd=_scratch(tmp_path),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]


def _commands(code: str) -> list[str]:
    """A bash block's commands (continuation lines joined), less comments and skipped ones."""
    commands = [ln.strip() for ln in code.replace("\\\n", " ").splitlines()]
    return [c for c in commands if c and not c.startswith(("#", *SKIPPED_BASH))]


RUNNABLE = [i for i, (lang, code) in enumerate(BLOCKS) if lang == "bash" and _commands(code)]


def test_bash_blocks_not_run_hold_only_skipped_commands():
    for lang, code in BLOCKS:
        if lang == "bash" and not _commands(code):
            assert any(s in code for s in SKIPPED_BASH), code
    assert RUNNABLE, "the README has no runnable bash block"


# The quick tour trains runs/tour and exports exports/tour; later sections start from
# them (as the README says), so the tour runs once and they get a copy of its outputs.
TOUR = next(i for i in RUNNABLE if "--out runs/tour" in BLOCKS[i][1])
FROM_TOUR = ("runs/tour", "exports/tour")


def _run_bash_block(index: int, folder: Path, tiny_encoder: str) -> subprocess.CompletedProcess:
    code = BLOCKS[index][1]
    if "bertclf train" in code:
        code = _with_tiny_encoder(code, {"--seq-len 64": f"--seq-len 64 --model {tiny_encoder}"})
    if "bertclf audit" in code:
        code = _with_tiny_encoder(
            code, {"--out runs/audit": f"--out runs/audit --model {tiny_encoder}"}
        )
    env = {k: v for k, v in os.environ.items() if k != "VIRTUAL_ENV"}
    return subprocess.run(
        ["bash", "-euo", "pipefail", "-c", "\n".join(_commands(code))],
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=900,
        env=env,
    )


@pytest.fixture(scope="module")
def tour(tmp_path_factory, tiny_encoder) -> tuple[Path, subprocess.CompletedProcess]:
    folder = _scratch(tmp_path_factory.mktemp("tour"))
    return folder, _run_bash_block(TOUR, folder, tiny_encoder)


@pytest.mark.parametrize("index", RUNNABLE)
def test_bash_block(index, tmp_path, tiny_encoder, request):
    code = BLOCKS[index][1]
    if index == TOUR:
        proc = request.getfixturevalue("tour")[1]
    else:
        folder = _scratch(tmp_path)
        if any(path in code for path in FROM_TOUR):
            tour_folder, done = request.getfixturevalue("tour")
            assert done.returncode == 0, f"the tour failed: see test_bash_block[{TOUR}]"
            for path in FROM_TOUR:
                shutil.copytree(tour_folder / path, folder / path)
        proc = _run_bash_block(index, folder, tiny_encoder)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    # What a user sees on stderr is bertclf's own lines: no TensorFlow start-up noise.
    noise = [ln for ln in proc.stderr.splitlines() if ln.strip() and not ln.startswith("bertclf")]
    assert not noise, noise[:5]
