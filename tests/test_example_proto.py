"""The tf.Example reader of the serving path against TensorFlow's own protobufs."""

import pytest
from tensorflow.core.example import example_pb2, feature_pb2

from bertclf import servable
from bertclf.serving.errors import InvalidArgument
from bertclf.serving.protocol import text_of_example


def _example(**features: feature_pb2.Feature) -> bytes:
    return example_pb2.Example(features=feature_pb2.Features(feature=features)).SerializeToString()


def _bytes(*values: bytes) -> feature_pb2.Feature:
    return feature_pb2.Feature(bytes_list=feature_pb2.BytesList(value=list(values)))


def _delimited(field: int, payload: bytes) -> bytes:
    assert len(payload) < 128  # one-byte length
    return bytes([field << 3 | 2, len(payload)]) + payload


def _text_feature_twice() -> bytes:
    """An Example whose one `text` Feature holds two bytes_list fields on the wire.

    Protobuf merges them, so TensorFlow sees two values: a reader that kept the last
    one would pass an example that fails the batched ParseExample of every request.
    """
    feature = _bytes(b"a").SerializeToString() + _bytes(b"b").SerializeToString()
    entry = _delimited(1, b"text") + _delimited(2, feature)
    serialized = _delimited(1, _delimited(1, entry))
    parsed = example_pb2.Example.FromString(serialized).features.feature["text"]
    assert list(parsed.bytes_list.value) == [b"a", b"b"]
    return serialized


def test_reads_the_text_feature_among_others():
    text = "naïve café ".encode() * 200 + b"\xff\x00"  # long (multi-byte lengths), not UTF-8
    assert text_of_example(servable.text_example(text), 0) == text
    serialized = _example(
        id=feature_pb2.Feature(int64_list=feature_pb2.Int64List(value=[7, 2**40])),
        score=feature_pb2.Feature(float_list=feature_pb2.FloatList(value=[0.5])),
        text=_bytes(b"hello"),
        lang=_bytes(b"en"),
    )
    assert text_of_example(serialized, 0) == b"hello"


@pytest.mark.parametrize(
    "serialized",
    [
        b"",  # an empty Example has no text feature
        _example(title=_bytes(b"x")),
        _example(text=_bytes(b"a", b"b")),  # two values: which one is the text?
        _text_feature_twice(),
        _example(text=feature_pb2.Feature(int64_list=feature_pb2.Int64List(value=[1]))),
        servable.text_example(b"hello")[:-2],  # cut short
        b"garbage-from-a-client",
    ],
)
def test_refuses_what_is_not_one_text(serialized):
    with pytest.raises(InvalidArgument, match=r"Failed to process element: 3: .*'text'"):
        text_of_example(serialized, 3)
