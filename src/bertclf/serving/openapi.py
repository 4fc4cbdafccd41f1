"""The OpenAPI 3 description of the REST API that `bertclf serve` speaks.

It states what the server enforces (one of `instances`/`inputs`, at least one and at
most `--max-instances` texts, the signature names of a bertclf export), so that a
schema-driven fuzzer's valid cases reach the model and its invalid ones get a 4xx.
"""

from __future__ import annotations

from typing import Any

from bertclf import servable

_ERROR = {"type": "object", "properties": {"error": {"type": "string"}}, "required": ["error"]}
_TEXT = {
    "oneOf": [
        {"type": "string"},
        {
            "type": "object",
            "properties": {"b64": {"type": "string"}},
            "required": ["b64"],
            "additionalProperties": False,
        },
    ]
}
_NAME = {
    "name": "model",
    "in": "path",
    "required": True,
    "schema": {"type": "string", "pattern": "^[A-Za-z0-9_.-]+$"},
}
_VERSION = {
    "name": "version",
    "in": "path",
    "required": True,
    "schema": {"type": "integer", "minimum": 1},
}


def _responses(ok: dict[str, Any], *codes: int) -> dict[str, Any]:
    out = {"200": {"description": "OK", "content": {"application/json": {"schema": ok}}}}
    for code in codes:
        out[str(code)] = {
            "description": "error",
            "content": {"application/json": {"schema": _ERROR}},
        }
    return out


_STATUS = {
    "type": "object",
    "required": ["model_version_status"],
    "properties": {
        "model_version_status": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "version": {"type": "string"},
                    "state": {"type": "string"},
                    "status": {"type": "object"},
                },
            },
        }
    },
}
_METADATA = {
    "type": "object",
    "required": ["model_spec", "metadata"],
    "properties": {"model_spec": {"type": "object"}, "metadata": {"type": "object"}},
}


def _predict_request(max_items: int) -> dict[str, Any]:
    texts = {"type": "array", "items": _TEXT, "minItems": 1, "maxItems": max_items}
    return {
        "type": "object",
        "oneOf": [{"required": ["instances"]}, {"required": ["inputs"]}],
        "properties": {
            "signature_name": {"type": "string", "enum": [servable.DEFAULT_SIGNATURE]},
            "instances": {
                "type": "array",
                "minItems": 1,
                "maxItems": max_items,
                "items": {
                    "oneOf": [
                        _TEXT,
                        {
                            "type": "object",
                            "properties": {servable.TEXT_INPUT: _TEXT},
                            "required": [servable.TEXT_INPUT],
                            "additionalProperties": False,
                        },
                    ]
                },
            },
            "inputs": {
                "oneOf": [
                    texts,
                    {
                        "type": "object",
                        "properties": {servable.TEXT_INPUT: texts},
                        "required": [servable.TEXT_INPUT],
                        "additionalProperties": False,
                    },
                ]
            },
        },
    }


_PREDICT_RESPONSE = {
    "type": "object",
    "properties": {"predictions": {"type": "array"}, "outputs": {}},
}


def _classify_request(max_items: int) -> dict[str, Any]:
    example = {
        "type": "object",
        "properties": {servable.TEXT_INPUT: _TEXT},
        "required": [servable.TEXT_INPUT],
    }
    return {
        "type": "object",
        "required": ["examples"],
        "properties": {
            "signature_name": {"type": "string", "enum": [servable.CLASSIFY_SIGNATURE]},
            "context": {"type": "object"},
            "examples": {"type": "array", "items": example, "minItems": 1, "maxItems": max_items},
        },
    }


_CLASSIFY_RESPONSE = {"type": "object", "properties": {"results": {"type": "array"}}}


def _post(summary, request, response, params):
    return {
        "post": {
            "summary": summary,
            "parameters": params,
            "requestBody": {"required": True, "content": {"application/json": {"schema": request}}},
            "responses": _responses(response, 400, 404, 408, 413, 429, 431, 503),
        }
    }


def _get(summary, response, params):
    return {
        "get": {"summary": summary, "parameters": params, "responses": _responses(response, 404)}
    }


_EXPLAIN_RESPONSE = {
    "type": "object",
    "properties": {
        "explanations": {
            "type": "array",
            "description": "one row per text: label, score, baseline_score and explanation "
            "([word, weight] pairs in text order); multi-label: explanation and "
            "baseline_scores keyed by label; not_read: word ranges a long text's cut left out",
            "items": {"type": "object"},
        }
    },
}


def openapi_document(max_instances: int = 512, max_explain: int = 8) -> dict[str, Any]:
    paths: dict[str, Any] = {}
    for prefix, params in (
        ("/v1/models/{model}", [_NAME]),
        ("/v1/models/{model}/versions/{version}", [_NAME, _VERSION]),
    ):
        paths[prefix] = _get("Model version status", _STATUS, params)
        paths[f"{prefix}/metadata"] = _get("Model metadata (signatures)", _METADATA, params)
        paths[f"{prefix}:predict"] = _post(
            "Predict", _predict_request(max_instances), _PREDICT_RESPONSE, params
        )
        paths[f"{prefix}:explain"] = _post(
            "Which words drove each prediction (bertclf's own verb; integrated gradients)",
            _predict_request(max_explain),
            _EXPLAIN_RESPONSE,
            params,
        )
        paths[f"{prefix}:classify"] = _post(
            "Classify tf.Examples with a 'text' feature",
            _classify_request(max_instances),
            _CLASSIFY_RESPONSE,
            params,
        )
    paths["/healthz"] = {
        "get": {
            "summary": "Liveness",
            "responses": {
                "200": {
                    "description": "OK",
                    "content": {"application/json": {"schema": {"type": "object"}}},
                }
            },
        }
    }
    paths["/metrics"] = {
        "get": {
            "summary": "Prometheus metrics",
            "responses": {
                "200": {
                    "description": "OK",
                    "content": {"text/plain": {"schema": {"type": "string"}}},
                }
            },
        }
    }
    return {
        "openapi": "3.0.3",
        "info": {"title": "bertclf serve: TensorFlow Serving REST API", "version": "1"},
        "paths": paths,
    }
