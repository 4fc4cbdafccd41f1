import dataclasses

import pytest

from bertclf.config.data import DataConfig
from bertclf.config.model import ModelConfig, check_cut, parse_clean
from bertclf.config.run import RunConfig
from bertclf.config.train import TrainConfig
from bertclf.errors import ConfigError


@pytest.mark.parametrize("seq_len", [7, 513, 0])
def test_seq_len_range(seq_len):
    with pytest.raises(ConfigError, match="--seq-len"):
        ModelConfig(seq_len=seq_len)


@pytest.mark.parametrize("seq_len", [8, 512])
def test_seq_len_bounds_accepted(seq_len):
    assert ModelConfig(seq_len=seq_len).seq_len == seq_len


def test_batch_size_and_epochs():
    with pytest.raises(ConfigError, match="--batch-size 0"):
        TrainConfig(batch_size=0)
    with pytest.raises(ConfigError, match="--epochs 0"):
        TrainConfig(epochs=0)


def test_val_split_range():
    with pytest.raises(ConfigError, match="--val-split"):
        DataConfig("x", val_split=1.0)


def test_clean_is_canonical_and_validated():
    assert parse_clean("none") == ()
    assert ModelConfig(clean=parse_clean("lower,email")).clean == ("email", "lower")
    with pytest.raises(ConfigError, match="'shout'"):
        parse_clean("lower,shout")


def test_default_cut_is_head_tail_and_chunk_reads_from_the_start():
    # The resolved cut is what config.json records; an explicit choice wins, but under
    # chunk, whose windows read a text from its start, head_tail is waterfall.
    assert ModelConfig().truncate == "head_tail"
    assert ModelConfig(long="chunk").truncate == "waterfall"
    assert ModelConfig(truncate="waterfall").truncate == "waterfall"
    # Windows read a text from its start: a default config replaced to chunk uses them.
    assert dataclasses.replace(ModelConfig(), long="chunk").truncate == "waterfall"
    with pytest.raises(ConfigError, match="drop --truncate head_tail"):
        check_cut("chunk", "head_tail")  # as typed on the command line (test_cli_errors)
    check_cut("chunk", None)
    assert RunConfig.from_dict(RunConfig(DataConfig("d"), "o").to_dict()).model.truncate == (
        "head_tail"
    )


def test_round_trip():
    cfg = RunConfig(
        data=DataConfig("d", test="t"),
        out="o",
        model=ModelConfig(clean=("lower",)),
        train=TrainConfig(epochs=2),
        seed=7,
    )
    assert RunConfig.from_dict(cfg.to_dict()) == cfg
