"""TensorFlow Serving's REST JSON, parsed and shaped without HTTP or TensorFlow.

Source of truth: tensorflow/serving g3doc/api_rest.md and util/json_tensor.cc.
Requests become plain Python values (a signature name and a list of byte
strings); model outputs (lists of rows) become TF Serving's response bodies.
"""

from __future__ import annotations

import base64
import binascii
import functools
import json
import math
from dataclasses import dataclass
from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.message import DecodeError

from bertclf import servable
from bertclf.serving.errors import InvalidArgument

DEFAULT_SIGNATURE = servable.DEFAULT_SIGNATURE
MAX_DEPTH = 32  # JSON nesting; a valid request needs 4 ({"instances": [{"text": {"b64"}}]})


@dataclass(frozen=True)
class PredictRequest:
    """A parsed :predict body: which signature, its input batch, row or columnar."""

    signature_name: str
    inputs: list[bytes]
    columnar: bool


def _compact(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)[:300]


def _type_name(value: Any) -> str:
    if value is None:
        return "Null"
    if isinstance(value, bool):
        return "True" if value else "False"
    return {dict: "Object", list: "Array", str: "String"}.get(type(value), "Number")


def _depth(doc: Any) -> int:
    """Nesting depth of a parsed JSON value (iterative: no recursion on hostile input)."""
    deepest, stack = 0, [(doc, 1)]
    while stack:
        value, depth = stack.pop()
        deepest = max(deepest, depth)
        if depth > MAX_DEPTH:
            break
        if isinstance(value, dict):
            stack.extend((v, depth + 1) for v in value.values())
        elif isinstance(value, list):
            stack.extend((v, depth + 1) for v in value)
    return deepest


def parse_json(body: bytes) -> dict[str, Any]:
    """The request body as a JSON object, or TF Serving's parse errors (never a 500)."""
    if not body:
        raise InvalidArgument("JSON Parse error: The document is empty")
    try:
        doc = json.loads(body)
    except UnicodeDecodeError:
        raise InvalidArgument(
            "JSON Parse error: Invalid encoding in string. at offset: 0"
        ) from None
    except json.JSONDecodeError as e:
        raise InvalidArgument(f"JSON Parse error: {e.msg}. at offset: {e.pos}") from None
    except RecursionError:  # the parser recurses per level: Python's limit stops it cleanly
        raise InvalidArgument(f"JSON Parse error: nesting deeper than {MAX_DEPTH}") from None
    except ValueError as e:  # an integer of thousands of digits (int_max_str_digits)
        raise InvalidArgument(f"JSON Parse error: {str(e).split(';')[0]}") from None
    if _depth(doc) > MAX_DEPTH:
        raise InvalidArgument(f"JSON Parse error: nesting deeper than {MAX_DEPTH}")
    if not isinstance(doc, dict):
        raise InvalidArgument(f"JSON Value: {_compact(doc)} Is not object")
    return doc


def signature_name(doc: dict[str, Any]) -> str:
    name = doc.get("signature_name", DEFAULT_SIGNATURE)
    if not isinstance(name, str):
        raise InvalidArgument(
            f"JSON Value: {_compact(doc)} not formatted correctly. "
            "'signature_name' key must be a string value."
        )
    if not name.isprintable() or len(name) > 256:
        raise InvalidArgument("'signature_name' must be a printable name of at most 256 characters")
    return name or DEFAULT_SIGNATURE


def find_signature(signatures: dict[str, Any], name: str, method: str | None = None) -> dict:
    if name not in signatures:
        raise InvalidArgument(f'Serving signature name: "{name}" not found in signature def')
    sig = signatures[name]
    if method is not None and sig["method_name"] != method:
        raise InvalidArgument(
            f"Expected classification signature method_name to be "
            f"{method}. Was: {sig['method_name']}"
        )
    return sig


def _string_value(value: Any, where: str) -> bytes:
    """A DT_STRING element: a JSON string (UTF-8) or {"b64": "..."} (bytes)."""
    if isinstance(value, str):
        try:
            return value.encode("utf-8")
        except UnicodeEncodeError:  # a lone surrogate: JSON's escape for U+D800 alone
            raise InvalidArgument(f"{where}Invalid UTF-8: a lone surrogate in a string") from None
    if isinstance(value, dict) and set(value) == {"b64"} and isinstance(value["b64"], str):
        try:
            return base64.b64decode(value["b64"], validate=True)
        except (binascii.Error, ValueError):
            raise InvalidArgument("Unable to base64 decode") from None
    if isinstance(value, list):
        raise InvalidArgument(f"{where}Encountered list at unexpected level: 0 expected < 0")
    raise InvalidArgument(
        f"{where}JSON Value: {_compact(value)} Type: {_type_name(value)} "
        "is not of expected type: string"
    )


def _is_named(value: Any) -> bool:
    return isinstance(value, dict) and set(value) != {"b64"}


def _from_instances(instances: list, input_name: str) -> list[bytes]:
    named = _is_named(instances[0])
    out = []
    for i, item in enumerate(instances):
        if named != _is_named(item):
            what = "object but got list" if named else "value/list but got object"
            raise InvalidArgument(f"Expecting {what} at item {i} of input list")
        if named:
            if set(item) != {input_name}:
                unknown = sorted(set(item) - {input_name})
                if unknown:
                    raise InvalidArgument(
                        f"Failed to process element: {i} key: {unknown[0]} "
                        "of 'instances' list. Error: Invalid argument: JSON "
                        f"object: does not have named input: {unknown[0]}"
                    )
                raise InvalidArgument(
                    f"Failed to process element: {i} of 'instances' list. "
                    f"JSON object: {_compact(item)} keys must be equal to: "
                    f"{input_name}"
                )
            item = item[input_name]
        out.append(
            _string_value(
                item,
                f"Failed to process element: {i} of 'instances' list. Error: Invalid argument: ",
            )
        )
    return out


def _from_inputs(inputs: Any, input_name: str) -> list[bytes]:
    if _is_named(inputs):
        if input_name not in inputs:
            raise InvalidArgument(f"Missing named input: {input_name} in 'inputs' object.")
        inputs = inputs[input_name]
    if not isinstance(inputs, list):
        # A scalar is a rank-0 tensor; every signature here wants a batch [-1].
        raise InvalidArgument(
            f"JSON Value: {_compact(inputs)} is a scalar; input "
            f"'{input_name}' needs a list (shape [-1])"
        )
    return [_string_value(v, "") for v in inputs]


def parse_predict(
    doc: dict[str, Any],
    signatures: dict[str, Any],
    max_instances: int,
    limit_flag: str = "--max-instances",
) -> PredictRequest:
    """A :predict body against the model's signatures (each with one DT_STRING input)."""
    name = signature_name(doc)
    sig = find_signature(signatures, name)
    input_name = next(iter(sig["inputs"]))
    has_instances, has_inputs = "instances" in doc, "inputs" in doc
    if has_instances and has_inputs:
        raise InvalidArgument(
            f"JSON Value: {_compact(doc)} Not formatted correctly expecting "
            "only one of 'inputs' or 'instances' keys to exist "
        )
    if has_instances:
        instances = doc["instances"]
        if not isinstance(instances, list):
            raise InvalidArgument(
                f"JSON Value: {_compact(doc)} Excepting 'instances' to be an list/array"
            )
        if not instances:
            raise InvalidArgument(f"JSON Value: {_compact(doc)} No values in 'instances' array")
        values = _from_instances(instances, input_name)
    elif has_inputs:
        values = _from_inputs(doc["inputs"], input_name)
    else:
        raise InvalidArgument("Missing 'inputs' or 'instances' key")
    if len(values) > max_instances:
        raise InvalidArgument(
            f"{len(values)} instances in one request; the limit is "
            f"{max_instances} ({limit_flag}); split the request"
        )
    if sig["method_name"] == servable.CLASSIFY_METHOD:
        # Serialized tf.Examples: checked here, one request at a time, so that a bad one
        # fails its own request instead of the batched ParseExample of everyone's.
        values = [text_of_example(v, i) for i, v in enumerate(values)]
    return PredictRequest(name, values, columnar=has_inputs)


def parse_explain(doc: dict[str, Any], signatures: dict[str, Any], max_explain: int) -> list[bytes]:
    """An :explain body (bertclf's own verb; a :predict body without `signature_name`)
    -> its texts. A model exported before explanations has no such signature: 400."""
    if servable.EXPLAIN_SIGNATURE not in signatures:
        raise InvalidArgument(
            "this model version has no 'explain' signature (it was exported before "
            "explanations, see its metadata); export the run again with bertclf export"
        )
    doc = {**doc, "signature_name": servable.EXPLAIN_SIGNATURE}
    return parse_predict(doc, signatures, max_explain, "--max-explain").inputs


def format_explain(outputs: dict[str, Any], labels: list[str], multilabel: bool) -> dict:
    """The explain signature's arrays -> {"explanations": [one row per text]}: the rows
    `bertclf predict --explain` prints (`servable.explanation_rows`)."""
    return {"explanations": servable.explanation_rows(outputs, labels, multilabel)}


def parse_classify(
    doc: dict[str, Any], signatures: dict[str, Any], max_instances: int
) -> tuple[str, list[bytes]]:
    """A :classify body -> (signature name, the "text" feature of each example)."""
    name = signature_name(doc)
    if "signature_name" not in doc:
        name = "classify" if "classify" in signatures else name
    find_signature(signatures, name, method=servable.CLASSIFY_METHOD)
    examples = doc.get("examples")
    if examples is None:
        raise InvalidArgument(
            f"JSON Value: {_compact(doc)} When method is classify, key "
            "'examples' is expected and was not found"
        )
    if not isinstance(examples, list):
        raise InvalidArgument(
            f"JSON Value: {_compact(doc)} Expecting 'examples' value to be an list/array"
        )
    if not examples:
        raise InvalidArgument(f"JSON Value: {_compact(doc)} 'examples' value is an empty array")
    if len(examples) > max_instances:
        raise InvalidArgument(
            f"{len(examples)} examples in one request; the limit is "
            f"{max_instances} (--max-instances); split the request"
        )
    context = doc.get("context", {})
    if not isinstance(context, dict):
        raise InvalidArgument(f"Example must be JSON object but got JSON {_type_name(context)}")
    return name, [_example_text(ex, context) for ex in examples]


def _example_text(example: Any, context: dict[str, Any]) -> bytes:
    if not isinstance(example, dict):
        raise InvalidArgument(f"Example must be JSON object but got JSON {_type_name(example)}")
    merged = {**context, **example}
    if "text" not in merged:
        raise InvalidArgument(
            "Feature: text is required by the classify signature and is missing from an example"
        )
    value = merged["text"]
    if isinstance(value, list):
        if len(value) != 1:
            raise InvalidArgument(f"Feature: text must hold exactly one string, got {len(value)}")
        value = value[0]
    if not (isinstance(value, str) or (isinstance(value, dict) and set(value) == {"b64"})):
        raise InvalidArgument(
            f"Feature: text has element with unexpected JSON type: {_type_name(value)}"
        )
    return _string_value(value, "")


# ------------------------------------------------------------------ responses


def _json_value(value: Any) -> Any:
    """Tensor elements as TF Serving writes them: UTF-8 strings, numbers, NaN spelled out."""
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            return {"b64": base64.b64encode(value).decode("ascii")}
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if isinstance(value, list):
        return [_json_value(v) for v in value]
    return value


def format_predict(outputs: dict[str, list], columnar: bool) -> dict[str, Any]:
    """Model outputs (name -> one entry per instance) as TF Serving's predict response.

    Row format: {"predictions": [...]}: one value per instance with one output,
    one object per instance with several. Columnar: {"outputs": value or object}.
    """
    outputs = {k: _json_value(v) for k, v in sorted(outputs.items())}
    if columnar:
        return {"outputs": next(iter(outputs.values())) if len(outputs) == 1 else outputs}
    if len(outputs) == 1:
        return {"predictions": next(iter(outputs.values()))}
    n = len(next(iter(outputs.values())))
    return {"predictions": [{k: v[i] for k, v in outputs.items()} for i in range(n)]}


def format_classify(classes: list[list[bytes]], scores: list[list[float]]) -> dict[str, Any]:
    """{"results": [[[label, score], ...] per example]}."""
    return {
        "results": [
            [[_json_value(c), float(s)] for c, s in zip(cs, ss, strict=True)]
            for cs, ss in zip(classes, scores, strict=True)
        ]
    }


def model_status(versions: list[dict[str, Any]]) -> dict[str, Any]:
    """GET /v1/models/NAME: each version's state, and the error of one that failed."""
    return {
        "model_version_status": [
            {
                "version": str(v["version"]),
                "state": v["state"],
                "status": {
                    "error_code": "UNKNOWN" if v["error"] else "OK",
                    "error_message": v["error"],
                },
            }
            for v in versions
        ]
    }


def model_metadata(name: str, version: int, signatures: dict[str, Any]) -> dict[str, Any]:
    """GET .../metadata: the SignatureDefMap as TF Serving renders it (proto3 JSON)."""

    def tensor(t):
        dims = [] if t["shape"] is None else [{"size": str(d), "name": ""} for d in t["shape"]]
        return {
            "dtype": t["dtype"],
            "tensor_shape": {"dim": dims, "unknown_rank": t["shape"] is None},
            "name": t["name"],
        }

    sig_map = {
        key: {
            "inputs": {k: tensor(v) for k, v in s["inputs"].items()},
            "outputs": {k: tensor(v) for k, v in s["outputs"].items()},
            "method_name": s["method_name"],
            "defaults": {},
        }
        for key, s in signatures.items()
    }
    return {
        "model_spec": {"name": name, "signature_name": "", "version": str(version)},
        "metadata": {"signature_def": {"signature_def": sig_map}},
    }


# ------------------------------------------------------------------ tf.Example, without TensorFlow
# The `text` feature of a serialized tf.Example, read without TensorFlow.
#
# TF Serving's classify signature and a :predict call on it take serialized tf.Examples.
# The HTTP layer checks each one here, so that a bad example fails its own request
# instead of the batched ParseExample of everyone's. TensorFlow's generated classes
# (`tensorflow.core.example.example_pb2`) would load TensorFlow into the server process,
# which never imports it; so the same messages are declared here, field for field as in
# tensorflow/core/example/{example,feature}.proto, in a private descriptor pool, and
# protobuf's own parser reads them: repeated sub-messages merge and packed or unpacked
# lists decode exactly as TensorFlow's parser sees them.

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
