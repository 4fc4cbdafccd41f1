"""TF Serving JSON, parsed and shaped: the pure protocol module, no server needed."""

import base64

import pytest

from bertclf import servable
from bertclf.serving import protocol as p
from bertclf.serving.errors import STATUS, InvalidArgument, NotFound, status_of

SIGS = {
    "serving_default": {
        "method_name": servable.PREDICT_METHOD,
        "inputs": {"text": {"dtype": "DT_STRING", "shape": [-1], "name": "serving_default_text:0"}},
        "outputs": {
            "scores": {"dtype": "DT_FLOAT", "shape": [-1, 2], "name": "x:0"},
            "classes": {"dtype": "DT_STRING", "shape": [-1], "name": "x:1"},
        },
    },
    "classify": {
        "method_name": servable.CLASSIFY_METHOD,
        "inputs": {"inputs": {"dtype": "DT_STRING", "shape": [-1], "name": "classify_inputs:0"}},
        "outputs": {"scores": {"dtype": "DT_FLOAT", "shape": [-1, 2], "name": "y:0"}},
    },
}


def predict(doc, limit=100):
    return p.parse_predict(doc, SIGS, limit)


def error(fn, *args) -> str:
    with pytest.raises(InvalidArgument) as e:
        fn(*args)
    return str(e.value)


def test_explain_needs_the_explain_signature():
    # An export made before explanations: a clear 400, not a 500.
    message = error(p.parse_explain, {"instances": ["a"]}, SIGS, 8)
    assert "no 'explain' signature" in message and "export the run again" in message
    sigs = {**SIGS, "explain": {**SIGS["serving_default"]}}
    assert p.parse_explain({"instances": ["a", "b"]}, sigs, 8) == [b"a", b"b"]
    assert "(--max-explain)" in error(p.parse_explain, {"instances": ["a"] * 9}, sigs, 8)


def test_parse_json_errors():
    assert error(p.parse_json, b"") == "JSON Parse error: The document is empty"
    assert error(p.parse_json, b"{bad").startswith("JSON Parse error: ")
    assert "at offset: 1" in error(p.parse_json, b"{bad")
    assert error(p.parse_json, b"[1]") == "JSON Value: [1] Is not object"


def test_row_format_variants():
    b64 = base64.b64encode(b"\xff\x00raw").decode()
    req = predict({"instances": ["a", "b"]})
    assert req == p.PredictRequest("serving_default", [b"a", b"b"], columnar=False)
    assert predict({"instances": [{"text": "a"}, {"text": {"b64": b64}}]}).inputs == [
        b"a",
        b"\xff\x00raw",
    ]
    assert predict({"instances": [{"b64": b64}]}).inputs == [b"\xff\x00raw"]
    assert predict({"signature_name": "", "instances": ["x"]}).signature_name == "serving_default"


def test_columnar_format():
    assert predict({"inputs": ["a"]}) == p.PredictRequest("serving_default", [b"a"], True)
    assert predict({"inputs": {"text": ["a", "b"]}}).inputs == [b"a", b"b"]
    assert "Missing named input: text" in error(predict, {"inputs": {"body": ["a"]}})


@pytest.mark.parametrize(
    "doc,message",
    [
        ({"instances": ["a"], "inputs": ["a"]}, "only one of 'inputs' or 'instances' keys"),
        ({}, "Missing 'inputs' or 'instances' key"),
        ({"instances": "a"}, "Excepting 'instances' to be an list/array"),
        ({"instances": []}, "No values in 'instances' array"),
        ({"instances": [1]}, "JSON Value: 1 Type: Number is not of expected type: string"),
        ({"instances": [["a"]]}, "Encountered list at unexpected level"),
        ({"instances": [{"body": "a"}]}, "does not have named input: body"),
        ({"instances": ["a", {"text": "b"}]}, "Expecting value/list but got object at item 1"),
        ({"signature_name": 3, "instances": ["a"]}, "'signature_name' key must be a string"),
        (
            {"signature_name": "nope", "instances": ["a"]},
            'Serving signature name: "nope" not found in signature def',
        ),
        ({"instances": [{"b64": "***"}]}, "Unable to base64 decode"),
        ({"instances": ["a"] * 101}, "101 instances in one request; the limit is 100"),
    ],
)
def test_predict_errors(doc, message):
    assert message in error(predict, doc)


def test_format_predict_shapes():
    outputs = {"scores": [[0.25, 0.75]], "classes": [b"spam"]}
    assert p.format_predict(outputs, columnar=False) == {
        "predictions": [{"classes": "spam", "scores": [0.25, 0.75]}]
    }
    assert p.format_predict(outputs, columnar=True) == {
        "outputs": {"classes": ["spam"], "scores": [[0.25, 0.75]]}
    }
    assert p.format_predict({"scores": [[1.0]]}, columnar=False) == {"predictions": [[1.0]]}
    assert p.format_predict({"scores": [[1.0]]}, columnar=True) == {"outputs": [[1.0]]}
    assert p.format_predict({"raw": [b"\xff"]}, columnar=True) == {"outputs": [{"b64": "/w=="}]}
    assert p.format_predict({"x": [float("nan")]}, columnar=True) == {"outputs": ["NaN"]}


def test_classify_parse_and_format():
    name, texts = p.parse_classify({"examples": [{"text": "a"}, {"text": ["b"]}]}, SIGS, 10)
    assert name == "classify" and texts == [b"a", b"b"]
    _, texts = p.parse_classify({"context": {"text": "c"}, "examples": [{}]}, SIGS, 10)
    assert texts == [b"c"]
    assert "'examples' is expected" in error(p.parse_classify, {"instances": []}, SIGS, 10)
    assert "empty array" in error(p.parse_classify, {"examples": []}, SIGS, 10)
    assert "Feature: text is required" in error(
        p.parse_classify, {"examples": [{"x": 1}]}, SIGS, 10
    )
    assert "Expected classification signature" in error(
        p.parse_classify, {"signature_name": "serving_default", "examples": [{}]}, SIGS, 10
    )
    assert p.format_classify([[b"a", b"b"]], [[0.1, 0.9]]) == {
        "results": [[["a", 0.1], ["b", 0.9]]]
    }


def test_status_and_metadata_bodies():
    rows = [
        {"version": 4, "state": "END", "error": "NotFoundError: no variables"},
        {"version": 3, "state": "AVAILABLE", "error": ""},
    ]
    assert p.model_status(rows) == {
        "model_version_status": [
            {
                "version": "4",
                "state": "END",
                "status": {"error_code": "UNKNOWN", "error_message": "NotFoundError: no variables"},
            },
            {
                "version": "3",
                "state": "AVAILABLE",
                "status": {"error_code": "OK", "error_message": ""},
            },
        ]
    }
    meta = p.model_metadata("m", 3, SIGS)
    assert meta["model_spec"] == {"name": "m", "signature_name": "", "version": "3"}
    text = meta["metadata"]["signature_def"]["signature_def"]["serving_default"]["inputs"]["text"]
    assert text["dtype"] == "DT_STRING"
    assert text["tensor_shape"] == {"dim": [{"size": "-1", "name": ""}], "unknown_rank": False}


def test_error_table():
    assert status_of(InvalidArgument("x")) == 400 and status_of(NotFound("x")) == 404
    assert sorted(STATUS.values()) == [400, 404, 405, 408, 413, 429, 500, 503]
