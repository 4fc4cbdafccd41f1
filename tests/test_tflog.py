"""TensorFlow's start-up noise is filtered off fd 2; everything else passes through."""

import subprocess
import sys

from bertclf.tflog import is_noise

NOISE = [
    "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR",
    "I0000 00:00:1795622742.454165    2528 cudart_stub.cc:31] Could not find cuda drivers on "
    "your machine, GPU will not be used.",
    "E0000 00:00:1795622748.800355    2528 cuda_platform.cc:52] failed call to cuInit: "
    "INTERNAL: CUDA error: Failed call to cuInit: UNKNOWN ERROR (303)",
    "W0000 00:00:1795623303.058514    4039 loop_optimizer.cc:934] Skipping loop optimization "
    "for Merge node with control input: packer_1/RaggedConcat/assert_equal_3",
    "E0000 00:00:1795623303.058514    4039 mkl_util.h:934] oneDNN supports DT_INT64 only on "
    "platforms with AVX-512. Falling back to the default Eigen-based implementation",
    "To enable the following instructions: AVX2 FMA, in other operations, rebuild TensorFlow "
    "with the appropriate compiler flags.",
]
KEPT = [
    "bertclf: error: /tmp/x: no such file",
    "E0000 00:00:1795623303.058514    4039 op_kernel.cc:1800] OP_REQUIRES failed at "
    "save_restore_v2_ops.cc:257 : DATA_LOSS: file is too short",
    "W0000 00:00:1795623303.058514    4039 allocator.cc:100] Allocation exceeds 10% of memory",
    "Traceback (most recent call last):",
]


def test_known_noise_is_dropped_and_real_messages_are_kept():
    assert all(is_noise(line) for line in NOISE)
    assert not any(is_noise(line) for line in KEPT)


FILTERED = """
import os, sys
from bertclf.tflog import filter_stderr
f = filter_stderr()
for line in {lines!r}:
    os.write(2, (line + "\\n").encode())  # as C++ code writes: straight to fd 2
sys.stderr.write("progress 1/2\\rprogress 2/2\\n")
f.close()
os.write(2, b"after close\\n")
"""


def test_filter_on_a_real_file_descriptor():
    proc = subprocess.run(
        [sys.executable, "-c", FILTERED.format(lines=NOISE + KEPT)],
        capture_output=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    expected = "\n".join(KEPT) + "\nprogress 1/2\rprogress 2/2\nafter close\n"
    assert proc.stderr.decode() == expected  # bytes: a \r must reach the terminal as \r
