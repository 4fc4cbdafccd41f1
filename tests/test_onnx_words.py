"""The ONNX export's word split (onnxruntime-extensions' BasicTokenizer and the replaces in
front of it) against keras-hub's own split in TensorFlow, on every Unicode code point and
on batches that stress the joining of texts (empty batch, empty texts, the mark itself)."""

import json
import subprocess
import sys

import pytest

# Runs the converted split in a process that never imports TensorFlow (the two runtimes'
# RE2 copies clash in one process): batches of texts in, (words, row splits) out.
RUN_SPLIT = """
import json, sys
import numpy as np, onnxruntime as ort
from onnxruntime_extensions import get_library_path
options = ort.SessionOptions()
options.register_custom_ops_library(get_library_path())
session = ort.InferenceSession(sys.argv[1], options, providers=["CPUExecutionProvider"])
names = {o.type: o.name for o in session.get_outputs()}
result = []
for batch in json.load(open(sys.argv[2], encoding="utf-8")):
    words, splits = session.run(
        [names["tensor(string)"], names["tensor(int64)"]],
        {"text": np.array(batch, dtype=object).reshape(-1)},
    )
    result.append([words.tolist(), splits.tolist()])
json.dump({"result": result, "tensorflow": "tensorflow" in sys.modules},
          open(sys.argv[3], "w", encoding="utf-8"))
"""


def convert_pretokenize(tmp_path_factory, tiny_encoder, lowercase: bool):
    """(path of the ONNX model of keras-hub's pre-tokenization, the TF function it was made
    from)."""
    import keras_hub
    import tensorflow as tf
    from keras_hub.src.tokenizers.word_piece_tokenizer import pretokenize

    from bertclf.export.onnx import text_function_to_onnx

    @tf.function
    def words(text):
        # keras-hub's BERT pre-tokenization: CJK spacing, the split (the two ops the export
        # replaces with BasicTokenizer), and with `lowercase` the case fold.
        ragged = pretokenize(text, lowercase=lowercase, strip_accents=False, split_on_cjk=True)
        return {"words": ragged.flat_values, "splits": ragged.row_splits}

    tokenizer = keras_hub.models.BertTokenizer.from_preset(tiny_encoder)
    model = text_function_to_onnx(words, tokenizer)
    assert "BasicTokenizer" in {node.op_type for node in model.graph.node}
    path = tmp_path_factory.mktemp("split") / "split.onnx"
    path.write_bytes(model.SerializeToString())
    return path, words


@pytest.fixture(scope="module")
def split_model(tmp_path_factory, tiny_encoder):
    return convert_pretokenize(tmp_path_factory, tiny_encoder, lowercase=False)


@pytest.fixture(scope="module")
def folding_model(tmp_path_factory, tiny_encoder):
    return convert_pretokenize(tmp_path_factory, tiny_encoder, lowercase=True)


def onnx_split(model_path, batches, tmp_path) -> list:
    (tmp_path / "in.json").write_text(json.dumps(batches), encoding="utf-8")
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            RUN_SPLIT,
            str(model_path),
            str(tmp_path / "in.json"),
            str(tmp_path / "out.json"),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    out = json.loads((tmp_path / "out.json").read_text(encoding="utf-8"))
    assert out["tensorflow"] is False
    return out["result"]


def tf_split(function, batch: list[str]) -> list:
    """TensorFlow's (words, row splits), with the two differences WordPiece cannot see: a
    character of `WORD_CHARACTERS_ONLY_FOR_TF` is the noncharacter U+FFFE in the export
    (each makes its word one [UNK]), and U+2065 is deleted (TF's case folding deletes it)."""
    import tensorflow as tf

    from bertclf.export.onnx import INNER_SPACE, WORD_CHARACTERS_ONLY_FOR_TF

    swap = {
        c: INNER_SPACE
        for first, last in WORD_CHARACTERS_ONLY_FOR_TF
        for c in range(first, last + 1)
    }
    swap[0x2065] = None
    swap[ord(" ")] = INNER_SPACE  # inside a folded word ("´" folds to " ́"), see INNER_SPACE
    out = function(tf.constant(batch, tf.string, shape=[len(batch)]))
    words = [w.decode("utf-8").translate(swap) for w in out["words"].numpy()]
    return [words, out["splits"].numpy().tolist()]


def test_every_code_point_splits_as_in_tensorflow(split_model, tmp_path):
    model_path, function = split_model
    # Each code point between two letter pairs: dropped, a word of its own, or inside the
    # word (surrogates cannot be UTF-8). Both splits classify characters one by one, so a
    # probe per code point covers every class either side has.
    points = [c for c in range(0x110000) if not 0xD800 <= c <= 0xDFFF]
    probes = [f"ab{chr(c)}cd" for c in points]
    ((words, splits),) = onnx_split(model_path, [probes], tmp_path)
    expected_words, expected_splits = tf_split(function, probes)
    if splits == expected_splits and words == expected_words:
        return
    assert len(splits) == len(expected_splits)

    def row(values, ends, i):
        return values[ends[i] : ends[i + 1]]

    differ = [
        f"U+{c:04X}: {row(words, splits, i)} != {row(expected_words, expected_splits, i)}"
        for i, c in enumerate(points)
        if row(words, splits, i) != row(expected_words, expected_splits, i)
    ]
    pytest.fail(
        f"{len(differ)} code points split otherwise than TensorFlow (regenerate the tables "
        f"with `python tests/test_onnx_words.py`): {differ[:10]}"
    )


def test_batches_are_cut_back_into_their_texts(split_model, tmp_path):
    model_path, function = split_model
    batches = [
        [],
        [""],
        ["", "one two", ""],
        ["   ", "a\ufeffb \ufeff c", "\ufeff"],  # the mark the join puts between texts
        ["x\u00a0y\u2003z", "ab\u0378cd n\x00ul", "tab\tnew\nline\u00adsoft\u200bzero"],
        ["日本語のテキスト and 中文, 한국어!", "emoji 😀 test 👍🏽 ok", "«quoted» ¡hola! ‘x’"],
        ["Straße İstanbul ﬁne … ™ husband´s ＦＵＬＬ", "a\u055ab\u3001c\uff01d\u061de"],
    ]
    got = onnx_split(model_path, batches, tmp_path)
    for batch, (words, splits) in zip(batches, got, strict=True):
        assert [words, splits] == tf_split(function, batch), batch


def test_ascii_words_and_the_others_fold_as_in_tensorflow(folding_model, tmp_path):
    # ASCII words are lower-cased, the others folded character by character: batches
    # with only one kind, both kinds, and none.
    model_path, function = folding_model
    batches = [
        [],
        [""],
        ["ASCII Only TEXT", "MiXeD 123 !?"],
        ["Straße İSTANBUL", "ＦＵＬＬ ﬁne ™ …"],
        ["The APP crash", "", "Ünïcödé and ASCII WORDS", "husband´s ΣΊΣΥΦΟΣ", "дом ДОМ"],
    ]
    got = onnx_split(model_path, batches, tmp_path)
    for batch, (words, splits) in zip(batches, got, strict=True):
        assert [words, splits] == tf_split(function, batch), batch


# Regenerates the tables of `bertclf.export.onnx` from the two tokenizers (run it after
# upgrading tensorflow-text, keras-hub or onnxruntime-extensions, if the tests above fail):
#     python tests/test_onnx_words.py
BASIC_ALONE = """
import json, sys
import numpy as np, onnx, onnxruntime as ort
from onnx import helper, TensorProto
from onnxruntime_extensions import get_library_path
probes, switches, mark = json.load(open(sys.argv[1], encoding="utf-8"))
node = helper.make_node("BasicTokenizer", ["t"], ["w"], domain="ai.onnx.contrib", **switches)
text = helper.make_tensor_value_info("t", TensorProto.STRING, [1])
words = helper.make_tensor_value_info("w", TensorProto.STRING, [None])
graph = helper.make_graph([node], "basic", [text], [words])
model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17),
                                                helper.make_opsetid("ai.onnx.contrib", 1)])
model.ir_version = 9
options = ort.SessionOptions()
options.register_custom_ops_library(get_library_path())
session = ort.InferenceSession(model.SerializeToString(), options)
joined = "".join(f"{p} {mark} " for p in probes)
words, out = session.run(None, {"t": np.array([joined], dtype=object)})[0].tolist(), [[]]
for w in words:
    out.append([]) if w == mark else out[-1].append(w)
json.dump(out[:-1], open(sys.argv[2], "w", encoding="utf-8"))
"""


def derive_tables():
    import tempfile
    from pathlib import Path

    import tensorflow as tf
    import tensorflow_text as tf_text
    from keras_hub.src.tokenizers.word_piece_tokenizer import pretokenize

    from bertclf.export.onnx import BASIC_TOKENIZER, MARK

    points = [c for c in range(0x110000) if not 0xD800 <= c <= 0xDFFF]
    probes = [f"ab{chr(c)}cd" for c in points]
    with tempfile.TemporaryDirectory() as tmp:
        request = [probes, BASIC_TOKENIZER, MARK]
        (Path(tmp) / "in.json").write_text(json.dumps(request), encoding="utf-8")
        subprocess.run(
            [sys.executable, "-c", BASIC_ALONE, f"{tmp}/in.json", f"{tmp}/out.json"], check=True
        )
        basic = json.loads((Path(tmp) / "out.json").read_text(encoding="utf-8"))
    ragged = pretokenize(tf.constant(probes), lowercase=False, strip_accents=False)
    tf_words = [[w.decode("utf-8") for w in row] for row in ragged.to_list()]
    folded = tf_text.case_fold_utf8(tf.constant([chr(c) for c in points])).numpy()
    tables = {
        "CUT_ONLY_BY_TF": [],
        "PUNCTUATION_ONLY_FOR_TF": [],
        "WORD_CHARACTERS_ONLY_FOR_TF": [],
    }
    for c, ours, theirs, fold in zip(points, basic, tf_words, folded, strict=True):
        if ours == theirs:
            continue
        if theirs == ["ab", "cd"]:
            tables["CUT_ONLY_BY_TF"].append(c)
        elif len(theirs) == 3:
            tables["PUNCTUATION_ONLY_FOR_TF"].append(c)
        elif ours == ["abcd"] and fold == b"":
            continue  # BasicTokenizer deletes it; TF keeps it, then case folding deletes it
        elif len(theirs) == 1:
            tables["WORD_CHARACTERS_ONLY_FOR_TF"].append(c)
        else:
            raise ValueError(f"U+{c:04X}: {ours} against {theirs}")
    for name, table in tables.items():
        ranges = []
        for c in table:
            if ranges and ranges[-1][1] == c - 1:
                ranges[-1][1] = c
            else:
                ranges.append([c, c])
        print(f"{name} = (" + ", ".join(f"(0x{a:X}, 0x{b:X})" for a, b in ranges) + ")")


if __name__ == "__main__":
    derive_tables()
