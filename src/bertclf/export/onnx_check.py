"""Check an ONNX export in a fresh process that never imports TensorFlow.

Run as a module in its own process (never imported by the rest of bertclf), as an ONNX
Runtime host would run the model: onnxruntime, onnxruntime-extensions and numpy.

    python -m bertclf.export.onnx_check VERSION_DIR PARENT_PID < {"texts": [...]}

Prints one JSON line: the model's inputs and outputs (name, element type, shape), the
non-standard ops it uses (domain and type), each output on the texts, and whether
TensorFlow got imported (it must not). Dies with PARENT_PID, as `fresh_check` does.
"""

import json
import sys
from pathlib import Path

from bertclf import servable
from bertclf.prediction.onnx_model import OnnxModel
from bertclf.processes import die_with_parent


def describe(version_dir: Path) -> dict:
    import onnx

    model = onnx.load(str(version_dir / servable.ONNX_MODEL), load_external_data=False)

    def tensors(values):
        out = {}
        for v in values:
            t = v.type.tensor_type
            shape = [d.dim_value if d.HasField("dim_value") else -1 for d in t.shape.dim]
            dtype = onnx.TensorProto.DataType.Name(t.elem_type)
            out[v.name] = {"dtype": dtype, "shape": shape, "name": v.name}
        return out

    custom = sorted({f"{n.domain}:{n.op_type}" for n in model.graph.node if n.domain})
    return {
        "inputs": tensors(model.graph.input),
        "outputs": tensors(model.graph.output),
        "custom_ops": custom,
        "opsets": {o.domain or "ai.onnx": o.version for o in model.opset_import},
    }


def main(argv: list) -> int:
    version_dir = Path(argv[1])
    if len(argv) > 2:
        die_with_parent(int(argv[2]))
    request = json.loads(sys.stdin.read() or "{}")
    result = describe(version_dir)
    texts = request.get("texts") or []
    if texts:
        out = OnnxModel(version_dir).run(texts)
        for key, value in out.items():
            if value.dtype == object:  # label names come back as bytes or str
                value = [v.decode("utf-8") if isinstance(v, bytes) else v for v in value]
                result[key] = value
            else:
                result[key] = value.tolist()
    import onnxruntime

    result["onnxruntime"] = onnxruntime.__version__
    result["tensorflow_imported"] = "tensorflow" in sys.modules
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
