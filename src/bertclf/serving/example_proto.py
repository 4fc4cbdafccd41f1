"""The `text` feature of a serialized tf.Example, read without TensorFlow.

TF Serving's classify signature and a :predict call on it take serialized tf.Examples.
The HTTP layer checks each one here, so that a bad example fails its own request
instead of the batched ParseExample of everyone's. TensorFlow's generated classes
(`tensorflow.core.example.example_pb2`) would load TensorFlow into the server process,
which never imports it; so the same messages are declared here, field for field as in
tensorflow/core/example/{example,feature}.proto, in a private descriptor pool, and
protobuf's own parser reads them: repeated sub-messages merge and packed or unpacked
lists decode exactly as TensorFlow's parser sees them.
"""

from __future__ import annotations

import functools

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.message import DecodeError

from bertclf import servable
from bertclf.serving.errors import InvalidArgument

_F = descriptor_pb2.FieldDescriptorProto


def _field(name: str, number: int, kind: int, type_name: str = "", **extra) -> _F:
    if type_name:  # a message field's type; set at all, it must name one
        extra["type_name"] = type_name
    extra.setdefault("label", _F.LABEL_OPTIONAL)
    return _F(name=name, number=number, type=kind, **extra)


@functools.cache
def _example_class() -> type:
    """tensorflow.Example, Features, Feature and the three lists, as TensorFlow declares them."""
    many = {"label": _F.LABEL_REPEATED}
    proto = descriptor_pb2.FileDescriptorProto(
        name="bertclf/tf_example.proto", package="tensorflow", syntax="proto3"
    )
    for name, kind in (("BytesList", _F.TYPE_BYTES), ("FloatList", _F.TYPE_FLOAT)):
        proto.message_type.add(name=name, field=[_field("value", 1, kind, **many)])
    proto.message_type.add(name="Int64List", field=[_field("value", 1, _F.TYPE_INT64, **many)])
    feature = proto.message_type.add(name="Feature")
    feature.oneof_decl.add(name="kind")
    for number, name in enumerate(("bytes_list", "float_list", "int64_list"), start=1):
        kind_name = ".tensorflow." + "".join(p.title() for p in name.split("_"))
        feature.field.append(_field(name, number, _F.TYPE_MESSAGE, kind_name, oneof_index=0))
    features = proto.message_type.add(name="Features")
    entry = features.nested_type.add(name="FeatureEntry")
    entry.options.map_entry = True
    entry.field.append(_field("key", 1, _F.TYPE_STRING))
    entry.field.append(_field("value", 2, _F.TYPE_MESSAGE, ".tensorflow.Feature"))
    entry_name = ".tensorflow.Features.FeatureEntry"
    features.field.append(_field("feature", 1, _F.TYPE_MESSAGE, entry_name, **many))
    example = proto.message_type.add(name="Example")
    example.field.append(_field("features", 1, _F.TYPE_MESSAGE, ".tensorflow.Features"))
    pool = descriptor_pool.DescriptorPool()  # private: TensorFlow's own may be loaded too
    pool.Add(proto)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("tensorflow.Example"))


def text_of_example(serialized: bytes, index: int) -> bytes:
    """The one `text` value of a serialized tf.Example (Example.features.feature["text"])."""
    try:
        feature = _example_class().FromString(serialized).features.feature
    except DecodeError:
        feature = {}
    text = feature.get(servable.TEXT_INPUT)
    if text is None or text.WhichOneof("kind") != "bytes_list" or len(text.bytes_list.value) != 1:
        raise InvalidArgument(
            f"Failed to process element: {index}: not a serialized tf.Example with exactly "
            f"one bytes value in feature '{servable.TEXT_INPUT}' (the classify signature's input)"
        )
    return text.bytes_list.value[0]
