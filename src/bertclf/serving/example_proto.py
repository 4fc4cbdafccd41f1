"""The `text` feature of a serialized tf.Example, read without TensorFlow.

TF Serving's classify signature and a :predict call on it take serialized tf.Examples.
The HTTP layer checks each one here, so that a bad example fails its own request
instead of the batched ParseExample of everyone's, without importing TensorFlow's
generated protobuf classes (which load TensorFlow) into the request path. The
reader covers the protobuf wire format's varint, fixed and length-delimited fields.
"""

from __future__ import annotations

from bertclf import servable
from bertclf.serving.errors import InvalidArgument


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= len(buf) or shift > 63:
            raise ValueError("truncated varint")
        byte = buf[pos]
        value |= (byte & 0x7F) << shift
        pos, shift = pos + 1, shift + 7
        if byte < 0x80:
            return value, pos


def _fields(buf: bytes) -> list[tuple[int, bytes | int]]:
    """(field number, value) of a protobuf message: a small wire-format reader."""
    out, pos = [], 0
    while pos < len(buf):
        key, pos = _varint(buf, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(buf, pos)
        elif wire in (1, 5):
            size = 8 if wire == 1 else 4
            value, pos = buf[pos : pos + size], pos + size
        elif wire == 2:
            size, pos = _varint(buf, pos)
            value, pos = buf[pos : pos + size], pos + size
        else:
            raise ValueError(f"wire type {wire}")
        if pos > len(buf) or number == 0:
            raise ValueError("truncated field")
        out.append((number, value))
    return out


def text_of_example(serialized: bytes, index: int) -> bytes:
    """The one `text` value of a serialized tf.Example (Example.features.feature["text"]).

    tf.Example: features=1 -> Features: feature=1 (map entries: key=1, value=2) ->
    Feature: bytes_list=1 -> BytesList: value=1 (repeated).
    """
    try:
        texts = []
        for number, features in _fields(serialized):
            for entry_no, entry in _fields(features) if number == 1 else ():
                item = dict(_fields(entry)) if entry_no == 1 else {}
                if item.get(1) == servable.TEXT_INPUT.encode():
                    lists = dict(_fields(item.get(2, b"")))
                    texts = [v for n, v in _fields(lists.get(1, b"")) if n == 1]
    except (ValueError, TypeError):
        texts = None
    if texts is None or len(texts) != 1:
        raise InvalidArgument(
            f"Failed to process element: {index}: not a serialized tf.Example with exactly "
            f"one bytes value in feature '{servable.TEXT_INPUT}' (the classify signature's input)"
        )
    return texts[0]
