"""The command line: end to end on tiny data, and one-line errors with exit status 2."""

import json
import shutil
from pathlib import Path

import pytest

from bertclf.cli import main

from conftest import one_error_line, run_cli, run_script, write_folder


def cli_error(capsys, *argv) -> str:
    """Run the CLI in-process; assert exit 2 and exactly one stderr line; return it."""
    code = main(list(argv))
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2, err
    errors = [line for line in err if line.startswith("bertclf: error:")]
    assert len(errors) == 1 and errors[-1] == err[-1], err
    return errors[0]


@pytest.fixture()
def out(tmp_path) -> Path:
    return tmp_path / "run"


def train_args(data, out, encoder, *extra):
    return [
        "train",
        str(data),
        "--out",
        str(out),
        "--model",
        encoder,
        "--seq-len",
        "32",
        "--epochs",
        "1",
        "--batch-size",
        "8",
        "--no-progress",
        *extra,
    ]


@pytest.mark.parametrize(
    "extra,needle",
    [
        (["--seq-len", "4"], "--seq-len 4 is invalid: use a value in 8..512"),
        (["--seq-len", "513"], "--seq-len 513"),
        (["--batch-size", "0"], "--batch-size 0 is invalid"),
        (["--epochs", "0"], "--epochs 0 is invalid"),
        (["--clean", "shout"], "--clean 'shout'"),
    ],
)
def test_bad_settings(capsys, tiny_data, tiny_encoder, out, extra, needle):
    line = cli_error(capsys, *train_args(tiny_data, out, tiny_encoder), *extra)
    assert needle in line
    assert not out.exists()


def test_bad_data(capsys, tmp_path, tiny_encoder, out):
    line = cli_error(capsys, *train_args(tmp_path / "nope", out, tiny_encoder))
    assert "nope: no such" in line
    one = write_folder(tmp_path / "one", labels=["bug"])
    assert "at least two" in cli_error(capsys, *train_args(one, out, tiny_encoder))
    data = write_folder(tmp_path / "d")
    (data / "empty_class").mkdir()
    assert "empty_class: class folder has no .txt files" in cli_error(
        capsys, *train_args(data, out, tiny_encoder)
    )
    csv_file = tmp_path / "d.csv"
    csv_file.write_text("body,label\nhello,a\nbye,b\n")
    assert "no column 'text'" in cli_error(capsys, *train_args(csv_file, out, tiny_encoder))
    assert not out.exists()


def test_unseen_test_labels(capsys, tmp_path, tiny_encoder, out):
    train_dir = write_folder(tmp_path / "train", labels=["billing", "bug"])
    test_dir = write_folder(tmp_path / "test", per_class=1, labels=["feature", "bug"])
    line = cli_error(capsys, *train_args(train_dir, out, tiny_encoder), "--test", str(test_dir))
    assert "['feature'] do not occur in training" in line
    assert not out.exists()


def test_bad_models(capsys, tmp_path, tiny_data, out):
    assert "not a known name" in cli_error(capsys, *train_args(tiny_data, out, "bert-huge-xl"))
    not_bert = tmp_path / "gpt"
    not_bert.mkdir()
    (not_bert / "config.json").write_text('{"model_type": "gpt2"}')
    assert "not 'bert'" in cli_error(capsys, *train_args(tiny_data, out, str(not_bert)))
    assert not out.exists()


def test_usage_errors_are_one_line_exit_2(tiny_data):
    proc = run_cli("train", str(tiny_data), "--out", "x", "--epochs", "three")
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "bertclf train: error: argument --epochs: invalid int value: 'three' "
        "(see bertclf train --help)"
    ]


def test_train_evaluate_predict_end_to_end(capsys, tmp_path, tiny_data, tiny_encoder, out):
    # Training in a fresh process, as a user runs it; the rest in-process (same code path).
    proc = run_cli(*train_args(tiny_data, out, tiny_encoder, "--epochs", "2", "--lr", "1e-3"))
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "kept epoch" in proc.stdout and "baseline" in proc.stdout
    assert "not valid UTF-8" in proc.stderr  # the read report is logged at start

    assert "already exists" in cli_error(capsys, *train_args(tiny_data, out, tiny_encoder))

    assert main(["evaluate", str(out), str(tiny_data), "--json"]) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert metrics["examples"] == 36 and set(metrics["per_class"]) == {"billing", "bug", "feature"}

    texts = tmp_path / "texts.txt"
    texts.write_text("refund my invoice\n\nthe app crash error\n")
    jsonl = tmp_path / "texts.jsonl"
    jsonl.write_text('{"text": "refund my invoice"}\n{"text": "the app crash error"}\n')
    outputs = []
    for args in (
        ["--input", str(texts)],
        ["--input", str(jsonl)],
        ["refund my invoice", "the app crash error"],
    ):
        assert main(["predict", str(out), *args, "--json"]) == 0
        outputs.append([json.loads(line) for line in capsys.readouterr().out.splitlines()])
    # A one-text-per-line file's ids are its line numbers (the blank line counts); JSONL rows
    # without an id field and texts given as arguments have none. The rest is the same.
    assert [r.pop("id") for r in outputs[0]] == [1, 3]
    assert outputs[0] == outputs[1] == outputs[2]
    rows = outputs[0]
    assert [r["text"] for r in rows] == ["refund my invoice", "the app crash error"]
    for r in rows:
        assert list(r["probabilities"]) == ["billing", "bug", "feature"]
        assert r["label"] == max(r["probabilities"], key=r["probabilities"].get)

    assert main(["predict", str(out), "refund my invoice"]) == 0
    assert capsys.readouterr().out.split("\t")[0] in {"billing", "bug", "feature"}


def test_resume_from_cli_without_data(tmp_path, tiny_data, tiny_encoder, out):
    assert main(train_args(tiny_data, out, tiny_encoder)) == 0
    # Simulate a run that stopped after epoch 1 of 2: resume finishes it.
    config = json.loads((out / "config.json").read_text())
    config["config"]["train"]["epochs"] = 2
    (out / "config.json").write_text(json.dumps(config))
    assert main(["train", "--out", str(out), "--resume", "--no-progress"]) == 0
    history = json.loads((out / "history.json").read_text())
    assert [r["epoch"] for r in history] == [1, 2]


def test_predict_and_evaluate_errors(capsys, tmp_path, tiny_data):
    assert "neither a bertclf run" in cli_error(capsys, "predict", str(tmp_path), "hi")
    typo = cli_error(capsys, "predict", str(tmp_path / "runs" / "tuor"), "hi")
    assert "tuor: no such run or export" in typo
    run = tmp_path / "r"
    run.mkdir()
    (run / "config.json").write_text("{}")
    assert "config.json: damaged" in cli_error(capsys, "evaluate", str(run), str(tiny_data))
    shutil.rmtree(run)


def test_models_command(capsys):
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert "minilm-l6" in out and "small_bert/bert_en_uncased_L-4_H-512_A-8" in out


ORDERS = {
    "train": (
        ["train", "DATA", "--out", "RUN", "--epochs", "2", "--clean", "lower"],
        ["train", "--epochs", "2", "--out", "RUN", "DATA", "--clean", "lower"],
    ),
    "evaluate": (["evaluate", "RUN", "DATA", "--json"], ["evaluate", "--json", "RUN", "DATA"]),
    "predict": (
        ["predict", "RUN", "one text", "--json", "two"],
        ["predict", "--json", "RUN", "one text", "two"],
    ),
    "export": (
        ["export", "RUN", "--to", "BASE", "--zip"],
        ["export", "--zip", "--to", "BASE", "RUN"],
    ),
    "analyze": (["analyze", "DATA", "--out", "A"], ["analyze", "--out", "A", "DATA"]),
    "report": (["report", "RUN", "--test", "T"], ["report", "--test", "T", "RUN"]),
    "serve": (["serve", "BASE", "--port", "9"], ["serve", "--port", "9", "BASE"]),
    "models": (["models", "-q"], ["-q", "models"]),
}


@pytest.mark.parametrize("command", sorted(ORDERS))
def test_options_anywhere(command):
    from bertclf.cli.parser import parse_args

    a, b = (vars(parse_args(argv)) for argv in ORDERS[command])
    for raw in ("argv", "full_argv"):  # the raw arguments (train --local-workers, score)
        a.pop(raw), b.pop(raw)
    assert a == b
    if command == "predict":
        assert a["texts"] == ["one text", "two"] and a["json"] is True


def test_every_flag_has_help_and_shows_its_default():
    from bertclf.cli.parser import build_parser

    _, commands = build_parser()
    for name, parser in commands.items():
        for action in parser._actions:
            if action.option_strings and action.dest != "help":
                assert action.help, (name, action.option_strings)
                has_value = action.nargs != 0 and action.default not in (None, ())
                if has_value:
                    assert "(default: %(default)s)" in action.help, (name, action.dest)
    train_help = commands["train"].format_help()
    for shown in ("at least 3", "(default: 0.0001)", "(default: none)", "(default: minilm-l6)"):
        assert shown in train_help


def test_underscore_spellings_and_a_typo_named():
    from bertclf.cli.parser import parse_args

    a = parse_args(["train", "d", "--out", "o", "--seq_len", "64", "--batch_size=8"])
    assert (a.seq_len, a.batch_size) == (64, 8)
    proc = run_script("train", "d", "--out", "o", "--epocs", "3")
    assert "unrecognized arguments: --epocs 3; did you mean --epochs?" in one_error_line(proc)


def test_train_help_groups_every_option_and_each_command_has_an_example():
    import dataclasses

    from bertclf.cli.parser import TRAIN_GROUPS, build_parser
    from bertclf.config import DataConfig, ModelConfig, TrainConfig

    grouped = [(cls, name) for _, parts in TRAIN_GROUPS for cls, names in parts for name in names]
    every = [
        (c, f.name) for c in (DataConfig, ModelConfig, TrainConfig) for f in dataclasses.fields(c)
    ]
    assert sorted(grouped, key=str) == sorted(every, key=str)  # each once, none left out
    _, commands = build_parser()
    train_help = commands["train"].format_help()
    for title, _ in TRAIN_GROUPS:
        assert f"\n{title}:\n" in train_help
    for name, parser in commands.items():
        assert f"example: bertclf {name}" in parser.format_help(), name
    baseline = commands["baseline"].format_help()
    assert "optional with --resume" not in baseline and "kept weights" not in baseline
