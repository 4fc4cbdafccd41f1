"""`bertclf audit` and `train --exclude`: label issues, conflicts, duplicates, leakage.

Tiny data made here; the engines run for real (TF-IDF, and the tiny random BERT's
sentence vectors for the encoder engine), cleanlab ranks.
"""

import csv
import json
import os

import numpy as np
import pytest

from bertclf.audit.auditor import audit
from bertclf.audit.duplicates import normalize, quick_checks
from bertclf.config.audit import AuditConfig
from bertclf.config.data import DataConfig
from bertclf.data.datasets import load_splits, user_sources

from conftest import TOPICS, make_texts, one_error_line, run_script, write_folder


def rows(path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def flipped_folder(root, flips: dict[str, str], per_class: int = 30):
    """A separable 3-class folder plus, for each `flips` entry (billing/003.txt -> bug),
    a text made of its class's own words filed under another class: a wrong label."""
    write_folder(root, per_class=per_class)
    for source, label in flips.items():
        true = source.split("/")[0]
        text = " ".join(TOPICS[true].split()[i % 10] for i in range(int(source[-7:-4]), 40, 3))
        (root / label / f"flip_{os.path.basename(source)}").write_text(text)
    return root


def test_flipped_labels_on_a_separable_set_are_ranked_first(tmp_path):
    flips = {"billing/003.txt": "bug", "bug/007.txt": "feature", "feature/011.txt": "billing"}
    data = flipped_folder(tmp_path / "data", flips)
    out = tmp_path / "audit"
    summary = audit(AuditConfig(DataConfig(str(data)), out=str(out), engine="tfidf"))
    issues = rows(out / "label_issues.csv")
    assert len(issues) == summary["counts"]["label_issues"] >= 3
    expected = {
        f"{label}/flip_{os.path.basename(s)}": s.split("/")[0] for s, label in flips.items()
    }
    top = {r["source"]: r["suggested"] for r in issues[:3]}
    assert top == expected  # the three flips first, each with its true class suggested
    scores = [float(r["score"]) for r in issues]
    assert scores == sorted(scores)
    assert {r["given"] for r in issues[:3]} == set(flips.values())
    page = (out / "audit.html").read_text()
    assert "flip_003.txt" in page and "What to do next" in page
    modes = {p.name: p.stat().st_mode & 0o777 for p in out.iterdir()}
    assert set(modes.values()) == {0o644} and out.stat().st_mode & 0o777 == 0o755


def test_conflicts_duplicates_and_leakage(tmp_path):
    data = write_folder(tmp_path / "data", per_class=10)
    same = (data / "billing" / "002.txt").read_text()
    (data / "bug" / "900.txt").write_text(same.upper() + " !!")  # same text, other label
    (data / "billing" / "901.txt").write_text(same)  # an exact duplicate, same label
    long = " ".join(make_texts("feature", 4, 11))  # about 40 words
    (data / "feature" / "903.txt").write_text(long)
    (data / "feature" / "902.txt").write_text(long.replace("ticket", "tickets", 1))  # near
    test = write_folder(tmp_path / "test", per_class=3, seed=7)
    copied = (data / "bug" / "005.txt").read_text()
    (test / "bug" / "leak.txt").write_text(copied.title().replace(" ", ",  ") + ".")
    out = tmp_path / "audit"
    summary = audit(
        AuditConfig(DataConfig(str(data), test=str(test)), out=str(out), engine="tfidf")
    )
    conflicts = rows(out / "conflicts.csv")
    assert {(r["source"], r["label"]) for r in conflicts} == {
        ("billing/002.txt", "billing"),
        ("billing/901.txt", "billing"),
        ("bug/900.txt", "bug"),
    }
    assert len({r["group"] for r in conflicts}) == 1
    repeats = {r["source"]: r for r in rows(out / "duplicates.csv")}
    assert repeats["billing/901.txt"]["duplicate_of"] == "billing/002.txt"
    assert float(repeats["billing/901.txt"]["similarity"]) == 1.0
    assert repeats["feature/903.txt"]["duplicate_of"] == "feature/902.txt"
    assert 0.9 <= float(repeats["feature/903.txt"]["similarity"]) < 1.0
    leaks = rows(out / "leakage.csv")
    found = {r["test_source"]: r for r in leaks}
    assert (found["bug/leak.txt"]["split"], found["bug/leak.txt"]["train_source"]) == (
        "test",
        "bug/005.txt",
    )
    assert float(found["bug/leak.txt"]["similarity"]) == 1.0
    # (the toy texts draw from a 10-word pool each, so others may be near one another)
    assert all(float(r["similarity"]) >= 0.8 for r in leaks)
    assert summary["counts"]["leaked"] == {"test": len(leaks)}
    assert summary["counts"]["conflict_groups"] == 1


def test_a_table_names_its_texts_by_data_row_and_multilabel_data_runs(tmp_path, tiny_encoder):
    # Row 2's text spans two lines: sources are data rows, not line numbers.
    path = tmp_path / "tickets.jsonl"
    texts = [t for label in ("billing", "bug") for t in make_texts(label, 12, 3)]
    labels = [["billing"]] * 12 + [["bug"]] * 12
    labels[1], labels[20] = ["bug", "urgent"], ["billing"]
    lines = [json.dumps({"text": t, "label": lab}) for t, lab in zip(texts, labels, strict=True)]
    lines.insert(3, "")  # a blank line is not a data row
    path.write_text("\n".join(lines) + "\n")
    data = DataConfig(str(path), task="multilabel")
    out = tmp_path / "audit"
    summary = audit(AuditConfig(data, out=str(out), engine="encoder", model=tiny_encoder))
    assert summary["multilabel"] and summary["labels"] == ["billing", "bug", "urgent"]
    issues = rows(out / "label_issues.csv")
    assert all(r["source"].isdigit() and 1 <= int(r["source"]) <= 24 for r in issues)
    by_row = {r["source"]: r for r in issues}
    if "21" in by_row:  # row 21 is the 20th text after the blank line: "billing"
        assert by_row["21"]["given"] == "billing"
    csv_path = tmp_path / "t.csv"
    csv_path.write_text('text,label\n"one\ntwo lines",a\nthree,b\nfour,a\n')
    examples = load_splits(DataConfig(str(csv_path), val_split=0.5, split="keras"), 0)
    every = [*examples.train.sources, *examples.val.sources]
    assert sorted(user_sources(csv_path, every)) == ["1", "2", "3"]


def test_same_text_checks_normalise_case_spacing_and_punctuation():
    assert normalize("  Refund,  PLEASE!! ") == normalize("refund please") == "refund please"
    checks = quick_checks(
        ["Refund please", "refund, please!", "other text"],
        ["billing", "bug", "bug"],
        {"validation": ["OTHER  text."], "test": ["new text"]},
    )
    assert (checks.conflicts, checks.conflict_texts) == (1, 2)
    assert checks.leaked == {"validation": 1, "test": 0} and checks.found()


def test_exclude_drops_exactly_the_listed_texts(tmp_path):
    data = write_folder(tmp_path / "data", per_class=10)
    listed = tmp_path / "checked.csv"  # label_issues.csv's columns, cut by a person
    listed.write_text(
        "source,given,suggested,score,confident,text\nbug/003.txt,bug,billing,0.1,1,x\n"
    )
    plain = tmp_path / "plain.txt"
    plain.write_text("feature/000.txt\nbilling/009.txt\n")
    whole = load_splits(DataConfig(str(data)), 0)
    everything = set(whole.train.sources + whole.val.sources)
    for file, dropped in (
        (listed, {"bug/003.txt"}),
        (plain, {"feature/000.txt", "billing/009.txt"}),
    ):
        splits = load_splits(DataConfig(str(data), exclude=str(file)), 0)
        kept = set(splits.train.sources + splits.val.sources)
        assert {os.path.relpath(s, data) for s in everything - kept} == dropped
        assert set(splits.excluded) == dropped
    table = tmp_path / "t.csv"
    table.write_text("text,label\n" + "".join(f"text {i},{'ab'[i % 2]}\n" for i in range(20)))
    rows_file = tmp_path / "rows.txt"
    rows_file.write_text("1\n7\n")
    splits = load_splits(DataConfig(str(table), exclude=str(rows_file)), 0)
    texts = set(splits.train.texts + splits.val.texts)
    assert len(texts) == 18 and "text 0" not in texts and "text 6" not in texts


# ------------------------------------------------------------------ bad input, as a user sees it


def test_bad_input_is_one_line_and_writes_nothing(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    one_class = tmp_path / "one.csv"
    one_class.write_text("text,label\nhello there,a\nanother one,a\n")
    data = write_folder(tmp_path / "data", per_class=6)
    a_file = tmp_path / "file.txt"
    a_file.write_text("x")
    bad_exclude = tmp_path / "exclude.txt"
    bad_exclude.write_text("bug/000.txt\nbug/999.txt\nnope.txt\n")
    cases = [
        (["audit", str(empty), "--out", str(tmp_path / "o1")], "class sub-folder"),
        (["audit", str(one_class), "--out", str(tmp_path / "o2")], "at least two labels"),
        (["audit", str(data), "--out", str(a_file)], "is a file"),
        (["audit", str(data), "--out", str(tmp_path / "o3"), "--engine", "bert"], "--engine"),
        (["audit", str(data), "--out", str(tmp_path / "o5"), "--model", "./no/enc"], "--model"),
        (
            ["train", str(data), "--out", str(tmp_path / "o6"), "--exclude", str(tmp_path / "x")],
            "no such file",
        ),
        (
            ["train", str(data), "--out", str(tmp_path / "o4"), "--exclude", str(bad_exclude)],
            "2 source(s) name no text",
        ),
    ]
    for argv, words in cases:
        line = one_error_line(run_script(*argv))
        assert words in line, (argv, line)
    assert "'bug/999.txt'" in line  # the first unknown source is shown
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["empty", "one.csv", "data", "file.txt", "exclude.txt"]
    )


def test_an_audit_never_replaces_a_folder_without_overwrite(tmp_path):
    data = write_folder(tmp_path / "data", per_class=8)
    out = tmp_path / "audit"
    out.mkdir()
    (out / "mine.txt").write_text("keep me")
    line = one_error_line(run_script("audit", str(data), "--out", str(out)))
    assert "--overwrite" in line and (out / "mine.txt").read_text() == "keep me"
    done = run_script(
        "audit", str(data), "--out", str(out), "--engine", "tfidf", "--overwrite", "--json"
    )
    assert done.returncode == 0, done.stderr[-2000:]
    summary = json.loads(done.stdout)
    assert summary["texts"] == 24 and not (out / "mine.txt").exists()
    assert json.loads((out / "summary.json").read_text())["counts"] == summary["counts"]


@pytest.mark.parametrize("engine", ["both"])
def test_the_default_engine_runs_on_the_tiny_encoder(tmp_path, tiny_encoder, engine):
    data = flipped_folder(tmp_path / "data", {"bug/004.txt": "feature"}, per_class=12)
    out = tmp_path / "audit"
    summary = audit(AuditConfig(DataConfig(str(data)), out=str(out), model=tiny_encoder))
    assert summary["engine"]["name"] == engine == AuditConfig.__dataclass_fields__["engine"].default
    assert summary["seconds"]["label_issues"] > 0
    assert (
        (out / "label_issues.csv")
        .read_text()
        .startswith("source,given,suggested,score,confident,text")
    )


def test_the_audit_page_renders_in_headless_chromium(tmp_path):
    from test_report import screenshot

    flips = {"billing/003.txt": "bug", "bug/007.txt": "feature"}
    data = flipped_folder(tmp_path / "data", flips)
    out = tmp_path / "audit"
    audit(AuditConfig(DataConfig(str(data)), out=str(out), engine="tfidf"))
    pixels = screenshot(out / "audit.html", tmp_path, 1200)
    header = (pixels == 243).all(axis=-1)  # the tables' header cells (#f3f3f3)
    rows = np.flatnonzero(header.any(axis=1))
    # Header rows of at least three tables (counts, issues, and the rest), drawn apart.
    assert header.sum() > 3000 and rows.max() - rows.min() > 300
    assert (pixels < 60).all(axis=-1).sum() > 2000  # text was drawn


def test_the_finetune_engine_scores_each_fold_with_the_run_train_exclude_makes(
    tmp_path, tiny_encoder
):
    from bertclf.audit import label_issues as li
    from bertclf.config.model import ModelConfig
    from bertclf.config.run import RunConfig
    from bertclf.data.datasets import read_labelled
    from bertclf.prediction.trained_run import load_run
    from bertclf.training.cross_fitting import fine_tuned_out_of_fold
    from bertclf.training.fine_tuning import train

    data = write_folder(tmp_path / "data", per_class=8, labels=["billing", "bug"])
    examples = read_labelled(data)
    sources = user_sources(data, examples.sources)
    oof = fine_tuned_out_of_fold(DataConfig(str(data)), examples, sources, tiny_encoder, seed=0)
    assert oof.probs.shape == (16, 2) and oof.folds == 5 and oof.engine == "finetune"
    np.testing.assert_allclose(oof.probs.sum(axis=1), 1.0, atol=1e-5)

    # Fold 1's texts were scored by the model `bertclf train DATA --exclude FOLD1` makes.
    _, held = li.split_folds(np.asarray(examples.labels), False, 0, 5)[0]
    exclude = tmp_path / "fold1.txt"
    exclude.write_text("".join(f"{sources[i]}\n" for i in held))
    run = RunConfig(
        data=DataConfig(str(data), exclude=str(exclude)),
        out=str(tmp_path / "fold1"),
        model=ModelConfig(model=tiny_encoder, seq_len=64),  # all the tiny encoder reads
        seed=0,
    )
    train(run, progress=False, verbose=False, report=False)  # as the audit's folds train
    assert sorted(json.loads((tmp_path / "fold1" / "config.json").read_text())["excluded"]) == (
        sorted(sources[i] for i in held)
    )
    by_hand = load_run(tmp_path / "fold1").predict_proba([examples.texts[i] for i in held])
    np.testing.assert_allclose(oof.probs[held], by_hand, atol=1e-5)

    # The audit hands the engine the data, the texts and their sources, and writes its ranking.
    seen = []

    def engine(*args):
        seen.append(args)
        return oof

    out = tmp_path / "audit"
    config = AuditConfig(DataConfig(str(data)), out=str(out), engine="finetune", model=tiny_encoder)
    summary = audit(config, fine_tune=engine)
    [(given_data, given_examples, given_sources, model, seed, _)] = seen
    assert given_data.train == str(data) and given_sources == sources and model == tiny_encoder
    assert given_examples.texts == examples.texts and seed == 0
    assert summary["engine"] == {"name": "finetune", "folds": 5, "C": None}
    expected = li.rank_issues(np.asarray(examples.labels), oof.probs, False)
    assert [r["source"] for r in rows(out / "label_issues.csv")] == [
        sources[i.index] for i in expected
    ]
    with pytest.raises(Exception, match="--engine finetune: pass fine_tune="):
        audit(AuditConfig(DataConfig(str(data)), out=str(tmp_path / "x"), engine="finetune"))
    assert not (tmp_path / "x").exists()
