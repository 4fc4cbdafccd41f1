"""`auto` settings: what they resolve to on the hardware at hand, and their warnings."""

from __future__ import annotations

import logging

import pytest

from bertclf.training import hardware


def test_auto_precision_follows_native_bf16(monkeypatch):
    for native, expected in ((True, "bf16"), (False, "fp32")):
        monkeypatch.setattr(hardware, "native_bf16", lambda n=native: n)
        assert hardware.resolve_precision("auto") == expected
    assert hardware.resolve_precision("fp32") == "fp32"  # explicit choices are kept


def test_bf16_without_native_support_is_warned_about(monkeypatch, caplog):
    monkeypatch.setattr(hardware, "native_bf16", lambda: False)
    with caplog.at_level(logging.WARNING, logger="bertclf.training.hardware"):
        assert hardware.resolve_precision("bf16") == "bf16"
    assert "no native bf16" in caplog.text


def test_native_bf16_asks_the_gpus_when_there_are_any(monkeypatch):
    monkeypatch.setattr(hardware, "cpu_has_bf16", lambda: True)
    monkeypatch.setattr(hardware, "gpu_has_bf16", lambda: False)  # e.g. a T4 or V100
    monkeypatch.setattr(hardware, "gpus", lambda: ["GPU:0"])
    assert not hardware.native_bf16()
    monkeypatch.setattr(hardware, "gpus", lambda: [])
    assert hardware.native_bf16()


@pytest.mark.parametrize(
    ("choice", "strategy", "has_gpu", "expected"),
    [
        ("auto", "default", False, "off"),
        ("auto", "default", True, "on"),
        ("on", "default", False, "on"),
        ("on", "mirrored", True, "off"),
        ("off", "default", True, "off"),
    ],
)
def test_jit_resolution(monkeypatch, choice, strategy, has_gpu, expected):
    monkeypatch.setattr(hardware, "gpus", lambda: ["GPU:0"] if has_gpu else [])
    assert hardware.resolve_jit(choice, strategy) == expected


def test_bucketing_is_on_unless_turned_off():
    assert [hardware.resolve_bucketing(c) for c in ("auto", "on", "off")] == ["on", "on", "off"]
