r"""The ONNX export: raw text in, the SavedModel's outputs out, in one ONNX model.

    BASE/NAME/VERSION/model.onnx, assets/labels.txt, assets.extra/bertclf.json

The whole serving graph, tokenizer included, is the run's own TensorFlow graph
(`TrainedRun.outputs_graph`, as the SavedModel holds it) converted by tf2onnx, so a
text is cleaned, split, tokenized, cut and packed by the same steps; its string ops
become onnxruntime-extensions ops (`ai.onnx.contrib`), which any ONNX Runtime host
loads with that package's library. No TensorFlow is needed to run it.

Written by hand here, where no converter or library op does the job (each measured
against TensorFlow on every text of BBC, civility-gh and GoEmotions dev, 8,786 texts,
with the MiniLM vocabulary: the same token ids for all; `bench/onnx_parity.py`):
- `RegexSplitWithOffsets` (keras-hub's word split): onnxruntime-extensions' RE2 split
  returns each text unsplit (0.15.2) and its ECMAScript split has no `\p{..}` classes,
  so each dropped delimiter becomes a space and each kept one (punctuation, CJK) gets a
  space on either side (RE2 replaces, which work), then the ECMAScript split cuts at
  spaces (`_split_with_replaces`);
- `CaseFoldUTF8` (ICU's NFKC_Casefold): no ONNX op folds so (`StringLower` differs on
  `ß`, `İ`, `…`, `™`, fullwidth forms...), so each word is cut into characters, each
  looked up in the table of the 10,554 characters TensorFlow's folding changes (made at
  export time by TensorFlow itself, `fold_map`) and joined again (`_case_fold`);
- `FastWordpieceTokenizeWithOffsets` (keras-hub's WordPiece): onnxruntime-extensions'
  `WordpieceTokenizer` (same greedy longest-match-first, the vocabulary as an attribute)
  and ONNX-ML's `LabelEncoder` (piece -> id); where a word has a piece that is not in
  the vocabulary, that op keeps the pieces matched before it where WordPiece gives one
  [UNK] for the word, so such words are cut back to one [UNK] (`_one_unknown_a_word`);
- packing and cutting (`onnx_friendly`): keras-hub's `MultiSegmentPacker` trims with
  ragged ops that tf2onnx lowers to a division by zero at run time; after
  `TextPreprocessor.cut` each row already fits, its trimmer has nothing to do, and
  `dense_pack_rows` packs the same ids with dense ops ([CLS], the ids, [SEP], padding).
  The cut's `value_rowids` fails the same way on a batch without a token
  (`dense_value_rowids`).

  Its length limit counts characters where TF Text counts bytes: `_too_long` makes the
  words of more than 100 bytes one [UNK] too.
- layer norms, for speed: tf2onnx writes each as 13 elementwise nodes that ONNX Runtime
  does not fuse; `onnx_fusion` makes each one `LayerNormalization` node.

Every export is checked before it is published: a fresh process that never imports
TensorFlow (`python -m bertclf.export.onnx_check`) runs the model on the run's
validation texts (and a few hard ones) and its outputs must equal the run's within 1e-4.
"""

from __future__ import annotations

import contextlib
import json
import logging
from pathlib import Path

import numpy as np
import tensorflow as tf

from bertclf import servable
from bertclf.errors import ExportError
from bertclf.export.onnx_fusion import fuse_layer_norms
from bertclf.export.savedmodel import serving_outputs
from bertclf.fileio import atomic_path
from bertclf.model.rundir import LABELS
from bertclf.prediction.trained_run import TrainedRun

logger = logging.getLogger(__name__)

ONNX_FILE = "model.onnx"
OPSET = 17  # ONNX opset of the core ops (onnxruntime 1.31 runs up to 23)
IR_VERSION = 9  # what onnxruntime reads (onnx 1.23 writes 11 by default)
CONTRIB = "ai.onnx.contrib"  # onnxruntime-extensions' domain
PARITY = 1e-4  # largest probability difference the check allows (float32, other kernels)
MAX_WORD_BYTES = 100  # TF Text's FastWordpiece: a longer word is one [UNK]


def dense_rows(token_ids, pad, width: int, offset: int = 0):
    """Ragged ids [b, <= width - offset] -> [b, width] int32: each row's ids from column
    `offset`, padding around them. Scattered into place, with the rows found by
    `dense_value_rowids`: `RaggedTensor.to_tensor` converts to ops that fail on a batch
    without a token."""
    splits = tf.cast(token_ids.row_splits, tf.int32)  # [b + 1]
    rows = tf.cast(dense_value_rowids(token_ids), tf.int32)  # [tokens]
    columns = tf.range(tf.shape(rows)[0]) - tf.gather(splits, rows) + offset  # [tokens]
    ids = tf.fill([tf.shape(splits)[0] - 1, width], tf.cast(pad, tf.int32))
    values = tf.cast(token_ids.flat_values, tf.int32)
    return tf.tensor_scatter_nd_update(ids, tf.stack([rows, columns], axis=1), values)


def dense_pack_rows(preprocessor, token_ids, sequence_length=None) -> dict:
    """Ragged ids [b, <= seq_len - 2] -> `TextPreprocessor._pack_rows`' dense inputs, with
    dense ops only: [CLS] ids [SEP] then padding, segment 0, mask where not padding."""
    tokenizer = preprocessor.tokenizer
    seq = sequence_length or preprocessor.sequence_length
    lengths = tf.cast(token_ids.row_lengths(), tf.int32)  # [b]
    ids = dense_rows(token_ids, tokenizer.pad_token_id, seq, offset=1)  # after [CLS]
    position = tf.range(seq)[None, :]  # [1, seq]
    ids = tf.where(position == 0, tokenizer.cls_token_id, ids)
    ids = tf.where(position == lengths[:, None] + 1, tokenizer.sep_token_id, ids)
    pad = tokenizer.pad_token_id
    return {"token_ids": ids, "segment_ids": tf.zeros_like(ids), "padding_mask": ids != pad}


def dense_value_rowids(token_ids):
    """Ragged [b, None] -> [tokens] each token's row, with dense ops: a token's row is the
    number of rows that end at or before it. tf2onnx lowers `value_rowids` with a division
    by the longest row, which is zero for a batch without a token (an empty text alone):
    ONNX Runtime then fails on it. [tokens, b] comparisons: small at serving batch sizes."""
    ends = token_ids.row_splits[1:]  # [b]
    position = tf.range(tf.shape(token_ids.flat_values, out_type=ends.dtype)[0])  # [tokens]
    return tf.reduce_sum(tf.cast(ends[None, :] <= position[:, None], ends.dtype), axis=1)


def dense_head(token_ids, count: int):
    """Each row's first `count` ids, as `token_ids[:, :count]` gives them, without the
    ragged slice (tf2onnx's lowering fails on a batch without a token)."""
    rows = dense_value_rowids(token_ids)  # [tokens]
    position = tf.range(tf.size(rows, out_type=rows.dtype)) - tf.gather(
        token_ids.row_starts(), rows
    )
    kept = tf.boolean_mask(token_ids.flat_values, position < count)
    lengths = tf.minimum(token_ids.row_lengths(), count)
    return tf.RaggedTensor.from_row_lengths(kept, lengths, validate=False)


@contextlib.contextmanager
def onnx_friendly(preprocessor):
    """Inside the block the preprocessor packs with `dense_pack_rows` and finds rows with
    `dense_value_rowids`: the same values, from ops tf2onnx converts (the parity check
    compares every export with the run)."""
    preprocessor._pack_rows = lambda ids, length: dense_pack_rows(preprocessor, ids, length)
    preprocessor._value_rowids = dense_value_rowids
    preprocessor._dense = dense_rows
    preprocessor._head = dense_head
    try:
        yield
    finally:  # the class's methods again
        for name in ("_pack_rows", "_value_rowids", "_dense", "_head"):
            delattr(preprocessor, name)


def fold_map() -> dict[str, str]:
    """Every character that TensorFlow's case folding (`CaseFoldUTF8`: ICU's
    NFKC_Casefold) changes, and what it becomes (10,554 in TF Text 2.21; 0.4 s)."""
    import tensorflow_text as tf_text

    chars = [chr(c) for c in range(0x110000) if not 0xD800 <= c <= 0xDFFF]
    folded = tf_text.case_fold_utf8(tf.constant(chars)).numpy()
    return {c: f.decode("utf-8") for c, f in zip(chars, folded, strict=True) if f.decode() != c}


# A space that case folding puts inside a word (NFKC of "´" is " ́"): TensorFlow's
# WordPiece reads the word whole, onnxruntime-extensions' would cut it at the space; this
# noncharacter, in no vocabulary, keeps the word whole and unknown, as in TensorFlow.
INNER_SPACE = "\ufffe"


class _Nodes:
    """Graph pieces written by hand (see the module doc), on tf2onnx's graph `ctx`."""

    def __init__(self, ctx, scope: str):
        self.ctx, self.scope = ctx, scope

    def __call__(self, op, inputs, dtype, domain="", outputs=1, **attr):
        node = self.ctx.make_node(
            op, inputs, attr=attr, output_count=outputs, domain=domain, op_name_scope=self.scope
        )
        dtypes = dtype if isinstance(dtype, list) else [dtype] * outputs
        for out, out_dtype in zip(node.output, dtypes, strict=True):
            self.ctx.set_dtype(out, out_dtype)
            self.ctx.set_shape(out, [-1])
        return node.output if outputs > 1 else node.output[0]

    def ints(self, values):
        from tf2onnx import utils

        return self.ctx.make_const(utils.make_name("i"), np.array(values, np.int64)).output[0]

    def strings(self, values):
        from tf2onnx import utils

        return self.ctx.make_const(utils.make_name("s"), np.array(values, dtype=object)).output[0]


def _case_fold(ctx, node, folds: dict[str, str]) -> None:
    """CaseFoldUTF8 on words [w], character by character from `fold_map()`: each word is
    cut into characters, each looked up (ONNX-ML LabelEncoder), and joined again.
    Exact for every character alone; a sequence that NFKC composes (e + U+0301) stays
    decomposed here."""
    from onnx import TensorProto

    STR, INT = TensorProto.STRING, TensorProto.INT64
    n = _Nodes(ctx, node.name)
    words = node.input[0]
    spaced = n("StringRegexReplace", [words, n.strings(["(.)"]), n.strings(["\\1 "])], STR, CONTRIB)
    chars, _, _, splits = n(
        "StringECMARegexSplitWithOffsets",
        [spaced, n.strings([" "]), n.strings([""])],
        [STR, INT, INT, INT],
        CONTRIB,
        outputs=4,
    )  # chars [c], their offsets, row splits [w + 1]
    keys = list(folds)
    looked_up = n(
        "LabelEncoder",
        [chars],
        STR,
        "ai.onnx.ml",
        keys_strings=keys,
        values_strings=[v.replace(" ", INNER_SPACE) for v in folds.values()],
        default_string="",
    )
    # Which characters the table holds (a second lookup, not a string comparison with a
    # sentinel: onnxruntime-extensions' StringEqual fails to broadcast over zero characters).
    mapped = n(
        "LabelEncoder",
        [chars],
        INT,
        "ai.onnx.ml",
        keys_strings=keys,
        values_int64s=[1] * len(keys),
        default_int64=0,
    )
    mapped = n("Cast", [mapped], TensorProto.BOOL, to=TensorProto.BOOL)
    folded = n("Where", [mapped, looked_up, chars], STR)  # [c]
    # Back into words: a [w, longest] grid of characters ("" after a word's end), joined.
    starts = n("Slice", [splits, n.ints([0]), n.ints([-1])], INT)
    ends = n("Slice", [splits, n.ints([1]), n.ints([np.iinfo(np.int64).max])], INT)
    lengths = n("Sub", [ends, starts], INT)  # [w]
    longest = n("ReduceMax", [n("Concat", [lengths, n.ints([1])], INT, axis=0)], INT, keepdims=1)
    # One row more than there are words: onnxruntime-extensions' StringJoin crashes the
    # process (SIGSEGV, measured) on a grid of zero rows, which a batch without a word
    # would make; the extra row is dropped after the join.
    rows = n("Add", [n("Shape", [starts], INT), n.ints([1])], INT)
    shape = n("Concat", [rows, longest], INT, axis=0)  # [2]
    grid = n("Expand", [n.strings([""]), shape], STR)  # [w + 1, longest]
    count = n("Shape", [chars], INT)
    marks = n(
        "ScatterElements",
        [
            n("ConstantOfShape", [count], INT, value=_int64_tensor(0)),
            starts,
            n("ConstantOfShape", [n("Shape", [starts], INT)], INT, value=_int64_tensor(1)),
        ],
        INT,
        axis=0,
    )
    word_of = n("Sub", [n("CumSum", [marks, n.ints(0)], INT), n.ints([1])], INT)  # [c]
    position = n(
        "Sub",
        [
            n("Range", [n.ints(0), n("Squeeze", [count], INT), n.ints(1)], INT),
            n("Gather", [starts, word_of], INT),
        ],
        INT,
    )
    where = n(
        "Concat",
        [n("Unsqueeze", [word_of, n.ints([1])], INT), n("Unsqueeze", [position, n.ints([1])], INT)],
        INT,
        axis=1,
    )
    filled = n("ScatterND", [grid, where, folded], STR)  # [w, longest]
    joined = n("StringJoin", [filled, n.strings([""]), n.ints([1])], STR, CONTRIB)  # [w + 1]
    joined = n("Slice", [joined, n.ints([0]), n.ints([-1])], STR)  # [w]
    outputs = list(node.output)
    ctx.remove_node(node.name)
    ctx.replace_all_inputs(outputs[0], joined)


def _handlers(vocabulary: list[str], unknown: str) -> dict:
    """tf2onnx handlers for the TF Text ops it cannot convert (see the module doc)."""
    from onnx import TensorProto
    from tf2onnx import utils

    folds = fold_map()

    def case_fold(ctx, node, name, args):
        _case_fold(ctx, node, folds)

    def word_pieces(ctx, node, name, args):
        # TF: (pieces, piece ids, row splits over words, starts, ends); the offsets are unused.
        words, model = node.input[0], node.input[1]
        unknown_id = vocabulary.index(unknown)
        no_rows = ctx.make_const(utils.make_name("rows"), np.array([], np.int64)).output[0]
        split = ctx.make_node(
            "WordpieceTokenizer",
            [words, no_rows],
            attr={
                "vocab": json.dumps({w: i for i, w in enumerate(vocabulary)}, ensure_ascii=False),
                "suffix_indicator": "##",
                "unknown_token": unknown,
                # Counts characters where TF Text counts bytes: `_too_long` adds the
                # words of more than 100 bytes (TF Text's limit) and fewer characters.
                "max_input_chars_per_word": MAX_WORD_BYTES,
            },
            output_count=4,
            domain=CONTRIB,
            op_name_scope=node.name,
        )  # (pieces [p] string, row splits [words + 1], row begins, row ends)
        ids = ctx.make_node(
            "LabelEncoder",
            [split.output[0]],
            attr={
                "keys_strings": vocabulary,
                "values_int64s": list(range(len(vocabulary))),
                "default_int64": unknown_id,
            },
            domain="ai.onnx.ml",
            op_name_scope=node.name,
        )
        dtypes = (TensorProto.STRING, *[TensorProto.INT64] * 3)
        for out, dtype in zip(split.output, dtypes, strict=True):
            ctx.set_dtype(out, dtype)
            ctx.set_shape(out, [-1])
        ctx.set_dtype(ids.output[0], TensorProto.INT64)
        ctx.set_shape(ids.output[0], [-1])
        piece_ids, splits = _one_unknown_a_word(
            ctx, ids.output[0], split.output[1], unknown_id, _too_long(ctx, words, node.name)
        )
        wanted = ctx.get_dtype(node.output[1])
        if wanted != TensorProto.INT64:
            piece_ids = ctx.make_node("Cast", [piece_ids], attr={"to": wanted}).output[0]
        outputs = list(node.output)
        model_input = ctx.get_node_by_output(model)
        ctx.remove_node(node.name)
        ctx.replace_all_inputs(outputs[0], split.output[0])
        ctx.replace_all_inputs(outputs[1], piece_ids)
        ctx.replace_all_inputs(outputs[2], splits)
        # The serialized FastWordpiece model: a captured constant, now read by nothing.
        if model_input is not None and not ctx.find_output_consumers(model_input.output[0]):
            ctx.remove_node(model_input.name)

    def regex_split(ctx, node, name, args):
        _split_with_replaces(ctx, node)

    return {
        "CaseFoldUTF8": (case_fold, []),
        "FastWordpieceTokenizeWithOffsets": (word_pieces, []),
        "RegexSplitWithOffsets": (regex_split, []),
    }


# Whitespace and control characters: keras-hub's split drops them (its delimiter pattern
# is these, then the kept punctuation and CJK pattern).
DROPPED = r"\s|\p{Cc}|\p{Cf}"


def _ungroup(pattern: str) -> str:
    """TF Text wraps each split pattern in a group: "(a|b)" -> "a|b"."""
    if pattern.startswith("(") and pattern.endswith(")"):
        return pattern[1:-1]
    return pattern


def _split_with_replaces(ctx, node) -> None:
    """TF Text's RegexSplitWithOffsets(text, delimiters, kept delimiters) with ops that work
    in onnxruntime-extensions 0.15: its RE2 `StringRegexSplitWithOffsets` returns each
    text unsplit (measured, even for `\\s`), its ECMAScript split has no `\\p{..}` classes,
    and its RE2 `StringRegexReplace` works. So: every dropped delimiter becomes a space,
    every kept one gets a space on each side, and the ECMAScript split cuts at spaces.
    The same words in the same order, because the two delimiter sets are disjoint and
    each matches one character; the offsets differ and are not used."""
    from onnx import TensorProto
    from tf2onnx import utils

    def constant_string(name_of):
        return ctx.get_node_by_output(name_of).get_tensor_value()

    delimiters = constant_string(node.input[1])
    kept = constant_string(node.input[2])
    delimiters, kept = (
        _ungroup(p.decode() if isinstance(p, bytes) else p) for p in (delimiters, kept)
    )
    if delimiters != f"{DROPPED}|{kept}":
        raise ExportError(
            "ONNX: the tokenizer splits words with a pattern bertclf cannot translate "
            f"({delimiters[:60]!r}...); export the SavedModel instead (--format savedmodel)"
        )

    def text_const(value: str) -> str:
        return ctx.make_const(utils.make_name("pattern"), np.array([value], dtype=object)).output[0]

    def replace(text: str, pattern: str, rewrite: str) -> str:
        out = ctx.make_node(
            "StringRegexReplace",
            [text, text_const(pattern), text_const(rewrite)],
            domain=CONTRIB,
            op_name_scope=node.name,
        ).output[0]
        ctx.set_dtype(out, TensorProto.STRING)
        ctx.set_shape(out, [-1])
        return out

    spaced = replace(replace(node.input[0], DROPPED, " "), f"({kept})", " \\1 ")
    split = ctx.make_node(
        "StringECMARegexSplitWithOffsets",
        [spaced, text_const(" +"), text_const("")],
        output_count=4,
        domain=CONTRIB,
        op_name_scope=node.name,
    )
    for out, dtype in zip(
        split.output, (TensorProto.STRING, *[TensorProto.INT64] * 3), strict=True
    ):
        ctx.set_dtype(out, dtype)
        ctx.set_shape(out, [-1])
    outputs = list(node.output)
    ctx.remove_node(node.name)
    for old, new in zip(outputs, split.output, strict=True):
        ctx.replace_all_inputs(old, new)


def _too_long(ctx, words: str, scope: str) -> str:
    """[w] bool: words over `MAX_WORD_BYTES` UTF-8 bytes, which TF Text's WordPiece makes
    one [UNK]. ONNX has no byte length: each character of two, three or four bytes is
    replaced by as many ASCII letters, then the characters are counted."""
    from onnx import TensorProto

    n = _Nodes(ctx, scope)
    STR = TensorProto.STRING
    ascii_only = words
    for low, high, width in (("80", "7FF", 2), ("800", "FFFF", 3), ("10000", "10FFFF", 4)):
        pattern = n.strings([f"[\\x{{{low}}}-\\x{{{high}}}]"])
        ascii_only = n(
            "StringRegexReplace", [ascii_only, pattern, n.strings(["b" * width])], STR, CONTRIB
        )
    length = n("StringLength", [ascii_only], TensorProto.INT64, CONTRIB)
    return n("Greater", [length, n.ints([MAX_WORD_BYTES])], TensorProto.BOOL)


def _one_unknown_a_word(
    ctx, ids: str, splits: str, unknown_id: int, too_long: str
) -> tuple[str, str]:
    """(piece ids [p], row splits [words + 1]) with every word that holds an unknown piece
    cut to one [UNK], as WordPiece defines it (TF Text, Hugging Face): onnxruntime-
    extensions' WordpieceTokenizer keeps the pieces it matched before the unknown one
    ("café" with no "##é": c ##a ##f [UNK] where TensorFlow gives [UNK]). Written with
    core ONNX ops, since no library op does it. Every word has at least one piece."""
    from onnx import TensorProto
    from tf2onnx import utils

    def node(op, inputs, dtype=TensorProto.INT64, **attr):
        out = ctx.make_node(op, inputs, attr=attr, op_name_scope="one_unknown_a_word").output[0]
        ctx.set_dtype(out, dtype)
        ctx.set_shape(out, [-1])
        return out

    def const(values):
        return ctx.make_const(utils.make_name("const"), np.array(values, np.int64)).output[0]

    starts = node("Slice", [splits, const([0]), const([-1])])  # [w]: each word's first piece
    ends = node("Slice", [splits, const([1]), const([np.iinfo(np.int64).max])])  # [w]
    zeros_p = node("ConstantOfShape", [node("Shape", [ids])], value=_int64_tensor(0))
    ones_w = node("ConstantOfShape", [node("Shape", [starts])], value=_int64_tensor(1))
    marks = node("ScatterElements", [zeros_p, starts, ones_w], axis=0)  # [p]: 1 at starts
    word_of = node("Sub", [node("CumSum", [marks, const(0)]), const([1])])  # [p]
    unknown = node("Cast", [node("Equal", [ids, const([unknown_id])], TensorProto.BOOL)], to=7)
    zeros_w = node("ConstantOfShape", [node("Shape", [starts])], value=_int64_tensor(0))
    count = node("ScatterElements", [zeros_w, word_of, unknown], axis=0, reduction="add")
    has_unknown = node("Greater", [count, const([0])], TensorProto.BOOL)  # [w]
    bad_word = node("Or", [has_unknown, too_long], TensorProto.BOOL)
    bad_piece = node("Gather", [bad_word, word_of], TensorProto.BOOL)  # [p]
    position = node("Range", [const(0), node("Shape", [ids]), const(1)])
    first = node("Equal", [position, node("Gather", [starts, word_of])], TensorProto.BOOL)
    keep = node("Or", [node("Not", [bad_piece], TensorProto.BOOL), first], TensorProto.BOOL)
    kept = node("Compress", [node("Where", [bad_piece, const([unknown_id]), ids]), keep], axis=0)
    lengths = node("Where", [bad_word, const([1]), node("Sub", [ends, starts])])  # [w]
    new_splits = node("Concat", [const([0]), node("CumSum", [lengths, const(0)])], axis=0)
    return kept, new_splits


def _int64_tensor(value: int):
    from onnx import helper

    return helper.make_tensor("value", 7, [1], [value])


def convert(run: TrainedRun):
    """The run's serving graph as an ONNX ModelProto: input `text` [b] string; outputs as
    the SavedModel's `serving_default` (`scores`, `classes`/`class_ids` or `predicted`,
    and a calibrated run's `ood_score`, `abstain`)."""
    names = list(run.label_names)
    thresholds = run.thresholds

    @tf.function
    def serve(text):
        # The label names as a constant made inside the function (one captured from
        # outside would become a graph input), gathered rather than looked up in a table.
        return serving_outputs(
            run.outputs_graph(text), thresholds, lambda ids: tf.gather(tf.constant(names), ids)
        )

    with onnx_friendly(run.preprocessor):
        return text_function_to_onnx(serve, run.preprocessor.tokenizer)


def text_function_to_onnx(function, tokenizer):
    """A tf.function of texts [b] (input `text`) that tokenizes with `tokenizer` (keras-hub's
    BertTokenizer), as an ONNX ModelProto with this module's handlers. `convert` passes the
    serving graph; `bench/onnx_parity.py` passes the tokenizer alone, to compare ids."""
    try:
        import tf2onnx
        from tf2onnx import utils
    except ImportError:
        raise ExportError(
            "--format onnx needs tf2onnx and onnxruntime: pip install 'bertclf[onnx]'"
        ) from None
    vocabulary = [str(w) for w in tokenizer.get_vocabulary()]
    try:
        model, _ = tf2onnx.convert.from_function(
            function,
            input_signature=[tf.TensorSpec([None], tf.string, name=servable.TEXT_INPUT)],
            opset=OPSET,
            extra_opset=[utils.make_opsetid(CONTRIB, 1), utils.make_opsetid("ai.onnx.ml", 3)],
            custom_op_handlers=_handlers(vocabulary, tokenizer.oov_token),
        )
    except Exception as e:  # noqa: BLE001 - tf2onnx raises many types
        raise ExportError(
            f"ONNX conversion failed ({type(e).__name__}: {str(e)[:200]}); export the "
            "SavedModel instead (--format savedmodel)"
        ) from None
    untranslated = _untranslated_ops(model.graph)
    if untranslated:  # tf2onnx logs these and leaves them in the graph as TensorFlow ops
        raise ExportError(
            f"ONNX conversion: tf2onnx cannot translate the TensorFlow op(s) "
            f"{', '.join(untranslated)}; export the SavedModel instead (--format savedmodel), "
            "which runs every TensorFlow op"
        )
    fuse_layer_norms(model)  # 8-9% off a 40-word call (BENCHMARKS.md, ONNX)
    model.ir_version = IR_VERSION
    return model


def _untranslated_ops(graph) -> list[str]:
    """Op types in the standard ONNX domain that ONNX does not define (in `graph` and the
    graphs nested in its nodes' attributes: a Loop's or an If's body)."""
    import onnx

    found = set()
    for node in graph.node:
        if node.domain in ("", "ai.onnx") and not onnx.defs.has(node.op_type):
            found.add(node.op_type)
        for attribute in node.attribute:
            nested = [attribute.g] if attribute.HasField("g") else []
            for sub in [*nested, *attribute.graphs]:
                found.update(_untranslated_ops(sub))
    return sorted(found)


def write_onnx_version(run: TrainedRun, tmp: Path) -> None:
    """model.onnx and assets/labels.txt into the version folder `tmp`."""
    model = convert(run)
    with atomic_path(tmp / ONNX_FILE) as path:
        path.write_bytes(model.SerializeToString())
    (tmp / "assets").mkdir(exist_ok=True)
    with atomic_path(tmp / "assets" / LABELS) as path:
        path.write_text((run.path / LABELS).read_text(encoding="utf-8"), encoding="utf-8")
    logger.info("ONNX model: %.1f MiB", (tmp / ONNX_FILE).stat().st_size / 2**20)
