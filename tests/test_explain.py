"""Explanations: integrated gradients on the token embeddings, summed to whole words.

A tiny run whose label is decided by one keyword (`alarm` when a text holds "crash",
else `calm`), explained in this process, through `bertclf predict --explain` on the run
and on its export (fresh processes, as a user runs them), and by the served model.
"""

from __future__ import annotations

import json
import random

import numpy as np
import pytest
import tensorflow as tf

from bertclf.model.attribution import IntegratedGradients, gauss_legendre

from conftest import FILLER, TOPICS, one_error_line, run_script

KEYWORD = "crash"
WORDS = FILLER + TOPICS["billing"].split()  # no "crash" among them


def keyword_texts(n: int, seed: int) -> list[tuple[str, str]]:
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        words = [rng.choice(WORDS) for _ in range(rng.randint(5, 10))]
        label = "alarm" if i % 2 else "calm"
        if label == "alarm":
            words.insert(rng.randrange(len(words) + 1), KEYWORD)
        rows.append((" ".join(words), label))
    return rows


@pytest.fixture(scope="module")
def keyword_run(tmp_path_factory, tiny_encoder):
    from bertclf import DataConfig, ModelConfig, RunConfig, TrainConfig
    from bertclf.prediction.trained_run import load_run
    from bertclf.training.fine_tuning import train

    root = tmp_path_factory.mktemp("keyword")
    data = root / "data.jsonl"
    data.write_text(
        "".join(json.dumps({"text": t, "label": y}) + "\n" for t, y in keyword_texts(240, 0))
    )
    cfg = RunConfig(
        data=DataConfig(str(data)),
        out=str(root / "run"),
        model=ModelConfig(model=tiny_encoder, seq_len=32),
        train=TrainConfig(epochs=10, batch_size=8, lr=3e-3, contrastive=0),
        seed=1,
    )
    train(cfg, progress=False, report=False)  # explained here; the report's: test_report
    return load_run(root / "run")


def test_the_encoder_from_embeddings_is_the_backbone(keyword_run):
    model = keyword_run.model
    features = keyword_run.preprocessor(tf.constant(["pay the invoice now", "a crash"]))
    direct = model.backbone(features)["sequence_output"]
    embeddings = model.token_embeddings(features["token_ids"])
    rebuilt = model.encode_embeddings({**features, "token_embeddings": embeddings})
    np.testing.assert_allclose(rebuilt["sequence_output"], direct, atol=1e-5)


def test_words_keep_their_spelling_and_their_pieces_are_the_texts_tokens(keyword_run):
    ig = keyword_run.explainer
    texts = ["The INVOICE, refunded!  twice", "Crème brûlée: 3.5 kg, a-b", "", "日本 ok"]
    words, ids, word_ids = ig.words(tf.constant(texts))
    assert [w.decode() for w in words[0].numpy()] == [
        "The",
        "INVOICE",
        ",",
        "refunded",
        "!",
        "twice",
    ]
    assert [w.decode() for w in words[1].numpy()][:3] == ["Crème", "brûlée", ":"]
    whole = keyword_run.preprocessor.tokenize(tf.constant(texts))  # eager: lists
    assert ids.to_list() == [
        list(row) for row in whole
    ]  # the words, tokenized one by one, are the text
    # "refunded" is several WordPiece pieces in the tiny vocabulary, one word here.
    pieces = [j for j in word_ids[0].numpy() if j == 3]
    assert len(pieces) > 1


def test_the_keyword_comes_first_and_the_weights_add_up(keyword_run):
    texts = [t for t, y in keyword_texts(40, 5) if y == "alarm"][:8]
    assert [r["label"] for r in keyword_run.predict(texts)] == ["alarm"] * len(texts)
    rows = keyword_run.explain(texts)
    for text, row in zip(texts, rows, strict=True):
        words = [w for w, _ in row["explanation"]]
        assert words == text.split()  # whole words, in text order
        top = max(row["explanation"], key=lambda p: p[1])[0]
        assert top == KEYWORD, row
        total = sum(w for _, w in row["explanation"])
        # Completeness: the weights sum to the log-odds gained over the baseline (1%:
        # what 32 steps leave, BENCHMARKS.md).
        assert total == pytest.approx(
            row["log_odds"] - row["baseline_log_odds"], rel=0.01, abs=0.05
        )
        assert row["score"] == pytest.approx(
            keyword_run.predict([text])[0]["probability"], abs=1e-5
        )


def test_every_explained_label_and_the_quadrature(keyword_run):
    nodes, weights = gauss_legendre(16)
    assert weights.sum() == pytest.approx(1.0) and (nodes > 0).all() and (nodes < 1).all()
    run = keyword_run
    # Thresholds of 0: every label is "predicted", so every label is explained.
    ig = IntegratedGradients(run.preprocessor, run.model, run.explainer.temperature, np.zeros(2))
    out = {
        k: v.numpy() for k, v in tf.function(ig.explain)(tf.constant(["a crash", "pay"])).items()
    }
    assert out["explained"].all()
    # A batch of empty texts: no words, nothing to share, no error.
    assert [r["explanation"] for r in run.explain(["", " "])] == [[], []]
    totals = out["weights"].sum(-1)  # [b, L]
    np.testing.assert_allclose(
        totals, out["log_odds"] - out["baseline_log_odds"], rtol=0.01, atol=0.05
    )


def test_predict_explain_on_the_run_and_its_export(keyword_run, tmp_path):
    # One WordPiece a word in the tiny vocabulary: 51 tokens, over the 30 a window holds.
    long_text = " ".join(["invoice"] * 20 + [KEYWORD] + ["refund"] * 30)
    texts = ["a crash in the invoice", "", long_text]
    export = tmp_path / "exports"
    done = run_script("export", str(keyword_run.path), "--to", str(export), "--name", "kw")
    assert done.returncode == 0, done.stderr[-2000:]
    meta = json.loads((export / "kw" / "1" / "assets.extra" / "bertclf.json").read_text())
    assert meta["explain"]["signature"] == "explain" and meta["explain"]["steps"] >= 8
    results = {}
    for model in (str(keyword_run.path), str(export / "kw")):
        done = run_script("predict", model, *texts, "--explain", "--json")
        assert done.returncode == 0, done.stderr[-2000:]
        results[model] = [json.loads(line) for line in done.stdout.splitlines()]
    ran, exported = results.values()
    for a, b in zip(ran, exported, strict=True):
        assert a["label"] == b["label"]
        assert [w for w, _ in a["explanation"]] == [w for w, _ in b["explanation"]]
        np.testing.assert_allclose(
            [x for _, x in a["explanation"]], [x for _, x in b["explanation"]], atol=1e-4
        )
    assert ran[1]["explanation"] == []  # an empty text: an empty explanation, no error
    # head_tail read the first 7 and the last 23 words of 51: words 8-28 were not read.
    assert ran[2]["not_read"] == [[8, 28]]
    assert len(ran[2]["explanation"]) == 51 - 21
    table = run_script("predict", str(keyword_run.path), "a crash in the invoice", "--explain")
    assert f"why alarm: {KEYWORD} +" in table.stdout


def test_explain_to_csv_is_refused(keyword_run, tmp_path):
    out = tmp_path / "out.csv"
    line = one_error_line(
        run_script("predict", str(keyword_run.path), "a crash", "--explain", "--output", str(out))
    )
    assert "--explain" in line and "out.csv" in line and ".jsonl" in line
    assert not out.exists()


def test_chunked_runs_explain_every_window_they_read(tmp_path, tiny_encoder):
    from bertclf import DataConfig, ModelConfig, RunConfig, TrainConfig
    from bertclf.prediction.trained_run import load_run
    from bertclf.training.fine_tuning import train

    data = tmp_path / "data.jsonl"
    rows = keyword_texts(120, 0)
    data.write_text("".join(json.dumps({"text": t, "label": y}) + "\n" for t, y in rows))
    train(
        RunConfig(
            data=DataConfig(str(data)),
            out=str(tmp_path / "run"),
            # --long chunk: 3 windows of 14 tokens, 42 tokens read a text.
            model=ModelConfig(model=tiny_encoder, seq_len=16, long="chunk", max_chunks=3),
            train=TrainConfig(epochs=3, batch_size=8, lr=3e-3, contrastive=0),
            seed=1,
        ),
        progress=False,
        report=False,
    )
    run = load_run(tmp_path / "run")
    texts = [" ".join(["invoice"] * 20 + [KEYWORD] + ["refund"] * 30), "a crash in the invoice"]
    for row, prediction in zip(run.explain(texts), run.predict(texts), strict=True):
        assert row["label"] == prediction["label"]
        assert row["score"] == pytest.approx(prediction["probability"], abs=1e-5)
        total = sum(w for _, w in row["explanation"])
        assert total == pytest.approx(
            row["log_odds"] - row["baseline_log_odds"], rel=0.01, abs=0.05
        )
    long_row = run.explain(texts[:1])[0]
    assert len(long_row["explanation"]) == 42 and long_row["not_read"] == [[43, 51]]
