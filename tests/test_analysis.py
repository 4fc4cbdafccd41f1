"""`bertclf analyze`: counts on generated data with known answers, and the BBC table."""

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from bertclf.evaluation.analysis import analyze, suggest_long, suggest_seq_len

from conftest import run_cli

BBC = Path(__file__).resolve().parents[2] / "shared" / "data" / "bbc"


@pytest.fixture()
def known(tmp_path):
    """billing: 2, 4, 6, 100 words; bug: 10, 1 words; plus a non-UTF-8 and an empty file."""
    root = tmp_path / "d"
    docs = {"billing": [2, 4, 6, 100], "bug": [10, 1]}
    for label, sizes in docs.items():
        (root / label).mkdir(parents=True)
        for i, n in enumerate(sizes):
            (root / label / f"{i}.txt").write_text(" ".join(["refund"] * n))
    (root / "bug" / "latin1.txt").write_bytes(b"crash \xe9 error")  # 3 words
    (root / "bug" / "empty.txt").write_text("")
    return root


def test_counts_on_known_data(known, tiny_encoder, tmp_path):
    out = tmp_path / "analysis"
    s = analyze(known, model=tiny_encoder, out=out).summary
    billing, bug = s["classes"]["billing"], s["classes"]["bug"]
    assert billing["documents"] == 4 and bug["documents"] == 3 and s["documents"] == 7
    assert billing["words"] == {"max": 100, "mean": 28.0, "median": 5.0}
    assert bug["words"] == {"max": 10, "mean": pytest.approx(14 / 3), "median": 3.0}
    # every word is one WordPiece token in the tiny vocabulary; [CLS] and [SEP] add two
    # ("\xe9" decodes to U+FFFD, an unknown token)
    assert billing["tokens"]["max"] == 102
    assert billing["tokens"]["truncated_share"] == {"64": 0.25, "128": 0.0, "256": 0.0, "512": 0.0}
    assert s["overall"]["tokens"]["p50"] == 6.0  # [4, 6, 8, 102, 12, 3, 5] -> 6
    assert [Path(p).name for p in s["non_utf8_files"]] == ["latin1.txt"]
    assert [Path(p).name for p in s["empty_files"]] == ["empty.txt"]
    # 6 of 7 documents fit 64 tokens (< 90%); all fit 128
    assert s["suggested"] == {"seq_len": 128, "coverage": 1.0}
    assert json.loads((out / "summary.json").read_text()) == json.loads(json.dumps(s))
    for name, min_size in (("word_counts.png", (600, 250)), ("token_counts.png", (500, 250))):
        with Image.open(out / name) as img:
            img.verify()
        with Image.open(out / name) as img:
            assert img.format == "PNG" and img.size[0] >= min_size[0]
            assert img.size[1] >= min_size[1]


def test_suggestion_rule():
    assert suggest_seq_len(np.array([10] * 90 + [600] * 10)) == {"seq_len": 64, "coverage": 0.9}
    assert suggest_seq_len(np.array([100] * 89 + [200] * 11))["seq_len"] == 256
    tail = suggest_seq_len(np.array([600] * 5 + [10] * 5))
    assert tail["seq_len"] == 512 and tail["coverage"] == 0.5 and "note" in tail


@pytest.mark.skipif(not BBC.is_dir(), reason="needs ../shared/data/bbc beside the checkout")
def test_bbc_matches_the_notebook_table():
    proc = run_cli("analyze", str(BBC))
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = {line.split()[0]: line.split() for line in proc.stdout.splitlines()[2:8]}
    # The BBC notebook: documents, most words, average words (rounded) per topic.
    notebook = {
        "business": (510, 891, 329),
        "entertainment": (386, 3482, 331),
        "tech": (401, 2969, 503),
        "sport": (511, 1662, 329),
        "politics": (417, 4432, 454),
    }
    for topic, (docs, most, mean) in notebook.items():
        row = rows[topic]
        assert (int(row[1]), int(row[2]), round(float(row[3]))) == (docs, most, mean), topic
    assert int(rows["(all)"][1]) == 2225 and int(rows["(all)"][2]) == 4432
    assert "not UTF-8: 1" in proc.stdout


def test_long_documents_suggest_chunk_with_the_windows_they_need():
    assert suggest_long(np.array([100] * 95 + [600] * 5)) is None  # 512 keeps 95% whole
    # 126 tokens a window (--seq-len 128): 600 tokens need 5 windows, 2,000 need 16 (cut
    # at 8), 100 need 1.
    long = suggest_long(np.array([600] * 5 + [2000] * 2 + [100] * 3))
    assert long["long"] == "chunk" and long["seq_len"] == 128 and long["max_chunks"] == 8
    assert long["windows_mean"] == pytest.approx((5 * 5 + 2 * 8 + 3 * 1) / 10)
    assert long["cut_share"] == pytest.approx(0.2)
