import json

import keras
import pytest

from bertclf.config.data import DataConfig
from bertclf.data.datasets import check_source, load_splits, read_labelled
from bertclf.errors import DataError

from conftest import write_folder


def _keras_split(root, seed, val_split):
    train, val = keras.utils.text_dataset_from_directory(
        str(root),
        batch_size=None,
        validation_split=val_split,
        subset="both",
        seed=seed,
        verbose=False,
    )
    as_set = lambda ds: sorted((t.numpy().decode(), int(y)) for t, y in ds)  # noqa: E731
    return as_set(train), as_set(val), train.class_names


@pytest.mark.parametrize("seed,val_split", [(42, 0.2), (7, 0.3), (123, 0.25)])
def test_split_equals_keras(tmp_path, seed, val_split):
    root = write_folder(tmp_path / "d", per_class=15, seed=seed)
    # a nested file counts too, as in Keras
    (root / "bug" / "nested").mkdir()
    (root / "bug" / "nested" / "x.txt").write_text("nested crash report")
    splits = load_splits(DataConfig(str(root), val_split=val_split, split="keras"), seed)
    k_train, k_val, k_names = _keras_split(root, seed, val_split)
    ours = lambda ex: sorted(zip(ex.texts, ex.labels, strict=True))  # noqa: E731
    assert splits.label_names == k_names == ["billing", "bug", "feature"]
    assert ours(splits.train) == k_train
    assert ours(splits.val) == k_val


def test_non_utf8_and_empty_files_are_counted(tmp_path):
    root = write_folder(tmp_path / "d")
    (root / "bug" / "latin1.txt").write_bytes("caf\xe9 crash".encode("latin-1"))
    (root / "billing" / "empty.txt").write_text("  \n")
    splits = load_splits(DataConfig(str(root)), 42)
    both = splits.train.report.non_utf8 + splits.val.report.non_utf8
    empty = splits.train.report.empty + splits.val.report.empty
    assert [p.endswith("latin1.txt") for p in both] == [True]
    assert [p.endswith("empty.txt") for p in empty] == [True]
    texts = splits.train.texts + splits.val.texts
    assert "caf\ufffd crash" in texts
    assert len(texts) == 36 + 1  # the empty file is skipped


def test_bbc_style_non_utf8_file_reads(tmp_path):
    root = write_folder(tmp_path / "d")
    (root / "feature" / "199.txt").write_bytes(b"Title\n\nBody with \x96 dash")
    ex = read_labelled(root)
    assert any("\ufffd" in t for t in ex.texts)
    assert len(ex.report.non_utf8) == 1


def test_csv_and_jsonl(tmp_path):
    csv_file = tmp_path / "d.csv"
    csv_file.write_text('body,topic\n"hello, world",b\nsecond,a\nthird,b\nfourth,a\nfifth,b\n')
    splits = load_splits(
        DataConfig(
            str(csv_file), text_field="body", label_field="topic", val_split=0.2, split="keras"
        ),
        1,
    )
    assert splits.label_names == ["a", "b"]
    assert len(splits.train) == 4 and len(splits.val) == 1
    assert "hello, world" in splits.train.texts + splits.val.texts

    jsonl = tmp_path / "d.jsonl"
    jsonl.write_text("\n".join(json.dumps({"t": f"text {i}", "y": i % 3}) for i in range(10)))
    ex = read_labelled(jsonl, "t", "y")
    assert ex.label_names == ["0", "1", "2"]
    assert ex.labels[:4] == [0, 1, 2, 0]


def test_numeric_labels_sort_numerically(tmp_path):
    jsonl = tmp_path / "d.jsonl"
    jsonl.write_text(
        "\n".join(
            json.dumps({"text": f"t{i}", "label": y}) for i, y in enumerate([10, 2, 1, 2, 10])
        )
    )
    assert read_labelled(jsonl).label_names == ["1", "2", "10"]


def test_missing_column_names_it(tmp_path):
    csv_file = tmp_path / "d.csv"
    csv_file.write_text("text,category\nhi,a\n")
    with pytest.raises(DataError, match=r"no column 'label'.*--label-field"):
        load_splits(DataConfig(str(csv_file)), 42)
    jsonl = tmp_path / "d.jsonl"
    jsonl.write_text('{"body": "x", "label": "a"}\n')
    with pytest.raises(DataError, match=r"d.jsonl:1: no field 'text'"):
        read_labelled(jsonl)


def test_folder_errors(tmp_path):
    with pytest.raises(DataError, match="no such"):
        load_splits(DataConfig(str(tmp_path / "missing")), 42)
    one = write_folder(tmp_path / "one", labels=["bug"])
    with pytest.raises(DataError, match="at least two"):
        load_splits(DataConfig(str(one)), 42)
    root = write_folder(tmp_path / "d")
    (root / "zzz").mkdir()
    (root / "zzz" / "notes.md").write_text("not a txt")
    with pytest.raises(DataError, match=r"zzz: class folder has no \.txt files"):
        load_splits(DataConfig(str(root)), 42)


def test_test_labels_must_occur_in_training(tmp_path):
    train = write_folder(tmp_path / "train", labels=["billing", "bug"])
    test = write_folder(tmp_path / "test", per_class=2, labels=["billing", "feature"])
    with pytest.raises(DataError, match=r"labels \['feature'\] do not occur in training"):
        load_splits(DataConfig(str(train), test=str(test)), 42)


def test_test_set_uses_training_label_order(tmp_path):
    train = write_folder(tmp_path / "train")
    test = write_folder(tmp_path / "test", per_class=2, labels=["feature"])
    (test / "bug").mkdir()
    (test / "bug" / "1.txt").write_text("crash")
    splits = load_splits(DataConfig(str(train), test=str(test)), 42)
    names = splits.label_names
    assert [names[y] for y in splits.test.labels] == ["bug", "feature", "feature"]


def test_excel_byte_order_mark_is_not_part_of_the_header(tmp_path):
    csv_file = tmp_path / "excel.csv"
    csv_file.write_bytes("\ufefftext,label\nhello,a\nbye,b\nagain,a\n".encode())
    check_source(csv_file, "text", "label")
    ex = read_labelled(csv_file)
    assert ex.texts == ["hello", "bye", "again"] and ex.label_names == ["a", "b"]
    jsonl = tmp_path / "bom.jsonl"
    jsonl.write_bytes('\ufeff{"text": "x", "label": "a"}\n'.encode())
    assert read_labelled(jsonl).texts == ["x"]


def test_a_label_spanning_lines_is_refused_at_read_time(tmp_path):
    csv_file = tmp_path / "d.csv"
    csv_file.write_text('text,label\nhello,a\nbye,"two\nlines"\n')
    with pytest.raises(DataError, match=r"d.csv:3: label 'two\\nlines' spans several lines"):
        read_labelled(csv_file)


def test_check_source_reads_only_headers(tmp_path):
    csv_file = tmp_path / "d.csv"
    csv_file.write_text("body,label\nhi,a\n")
    with pytest.raises(DataError, match=r"no column 'text'.*--text-field"):
        check_source(csv_file, "text", "label")
    check_source(csv_file, "body", "label")
    with pytest.raises(DataError, match="no such file or folder"):
        check_source(tmp_path / "missing", "text", "label")
    (tmp_path / "d.txt").write_text("x")
    with pytest.raises(DataError, match="unknown file type '.txt'"):
        check_source(tmp_path / "d.txt", "text", "label")


def test_stratified_split_keeps_class_shares_within_one_example(tmp_path):
    from collections import Counter

    from bertclf.data.splitting import resolve_split

    counts = {"billing": 40, "bug": 13, "feature": 7}  # imbalanced, one small class
    root = tmp_path / "d"
    for label, n in counts.items():
        write_folder(root, per_class=n, labels=[label])
    for seed in (1, 2, 3):
        splits = load_splits(DataConfig(str(root), val_split=0.25), seed)
        assert splits.split == "stratified"  # auto: 0.25 x 7 < 20 validation examples
        val = Counter(splits.val.labels)
        train = Counter(splits.train.labels)
        for i, label in enumerate(splits.label_names):
            assert abs(val[i] - 0.25 * counts[label]) <= 1, (seed, label, val[i])
            assert val[i] + train[i] == counts[label]
    # The same call with --split keras is Keras' random split, and auto picks it for
    # classes that leave at least 20 validation examples each.
    assert load_splits(DataConfig(str(root), val_split=0.25, split="keras"), 1).split == "keras"
    assert resolve_split("auto", [0] * 100 + [1] * 100, 0.2) == "keras"
    assert resolve_split("auto", [0] * 100 + [1] * 99, 0.2) == "stratified"
