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
  returns each text unsplit (0.15.2) and its regex ops compile their pattern on every
  call, so its `BasicTokenizer` cuts the words (its character tables are compiled in),
  after one RE2 replace that spaces out or drops the characters where its tables and TF
  Text's patterns disagree, measured on every code point (`_split_words`);
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
- layer norms and GELUs, for speed: tf2onnx writes each layer norm as 13 elementwise
  nodes and each GELU as 6 that ONNX Runtime does not fuse; `onnx_fusion` makes each layer
  norm one `LayerNormalization` node and writes each GELU in the form ONNX Runtime fuses.

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
from bertclf.export.onnx_fusion import fuse_layer_norms, tanh_gelus
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
    """CaseFoldUTF8 on words [w]. On an ASCII word the fold is lower-casing (A-Z are the
    only ASCII characters it changes: `_handlers` checks the table), so those words go
    through onnxruntime-extensions' `StringLower`, and the others character by character
    (`_fold_by_character`): cutting every word into characters costs 0.25 ms on 40 words."""
    from onnx import TensorProto

    STR, INT, BOOL = TensorProto.STRING, TensorProto.INT64, TensorProto.BOOL
    n = _Nodes(ctx, node.name)
    words = node.input[0]
    beyond_ascii = n(
        "StringRegexReplace", [words, n.strings(["[\\x00-\\x7F]+"]), n.strings([""])], STR, CONTRIB
    )  # [w]: each word's non-ASCII characters
    other = n("Greater", [n("StringLength", [beyond_ascii], INT, CONTRIB), n.ints([0])], BOOL)
    ascii_word = n("Not", [other], BOOL)
    positions = n(
        "Range", [n.ints(0), n("Squeeze", [n("Shape", [words], INT)], INT), n.ints(1)], INT
    )
    lowered = n("StringLower", [n("Compress", [words, ascii_word], STR, axis=0)], STR, CONTRIB)
    folded = _fold_by_character(n, n("Compress", [words, other], STR, axis=0), folds)
    # Back in their places: [w] "" with each kind scattered at its positions.
    out = n("Expand", [n.strings([""]), n("Shape", [words], INT)], STR)
    for at, values in ((ascii_word, lowered), (other, folded)):
        where = n("Unsqueeze", [n("Compress", [positions, at], INT, axis=0), n.ints([1])], INT)
        out = n("ScatterND", [out, where, values], STR)
    outputs = list(node.output)
    ctx.remove_node(node.name)
    ctx.replace_all_inputs(outputs[0], out)


def _fold_by_character(n: _Nodes, words: str, folds: dict[str, str]) -> str:
    """Words [w] folded character by character from `fold_map()`: each word is cut into
    characters, each looked up (ONNX-ML LabelEncoder), and joined again. Exact for every
    character alone; a sequence that NFKC composes (e + U+0301) stays decomposed here."""
    from onnx import TensorProto

    STR, INT = TensorProto.STRING, TensorProto.INT64
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
    return n("Slice", [joined, n.ints([0]), n.ints([-1])], STR)  # [w]


def _handlers(vocabulary: list[str], unknown: str) -> dict:
    """tf2onnx handlers for the TF Text ops it cannot convert (see the module doc)."""
    from onnx import TensorProto
    from tf2onnx import utils

    folds = fold_map()
    ascii_folds = {c: f for c, f in folds.items() if ord(c) < 0x80}
    if ascii_folds != {chr(c): chr(c + 32) for c in range(ord("A"), ord("Z") + 1)}:
        raise ExportError(  # `_case_fold` lower-cases ASCII words; ICU's folding changed
            "ONNX: TensorFlow's case folding changes ASCII characters other than A-Z; "
            "export the SavedModel instead (--format savedmodel)"
        )

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
        _split_words(ctx, node)

    return {
        "CaseFoldUTF8": (case_fold, []),
        "FastWordpieceTokenizeWithOffsets": (word_pieces, []),
        "RegexSplitWithOffsets": (regex_split, []),
    }


# fmt: off
# Where BasicTokenizer's character classes and TF Text's split disagree, measured on every
# code point (tests/test_onnx_words.py compares the two on all of them): (first, last).
# TF drops these (\p{Cc}, \p{Cf}); BasicTokenizer keeps them in the word or deletes them.
CUT_ONLY_BY_TF = (
    (0x1, 0x8), (0xB, 0xC), (0xE, 0x1F), (0x7F, 0x9F), (0xAD, 0xAD), (0x600, 0x605),
    (0x61C, 0x61C), (0x6DD, 0x6DD), (0x70F, 0x70F), (0x890, 0x891), (0x8E2, 0x8E2),
    (0x180E, 0x180E), (0x200B, 0x200F), (0x202A, 0x202E), (0x2060, 0x2064), (0x2066, 0x206F),
    (0xFEFF, 0xFEFF), (0xFFF9, 0xFFFB), (0x110BD, 0x110BD), (0x110CD, 0x110CD),
    (0x13430, 0x1343F), (0x1BCA0, 0x1BCA3), (0x1D173, 0x1D17A), (0xE0001, 0xE0001),
    (0xE0020, 0xE007F),
)

# TF keeps these as words of their own (\p{P}); BasicTokenizer's punctuation table lacks them.
PUNCTUATION_ONLY_FOR_TF = (
    (0x55A, 0x55F), (0x589, 0x58A), (0x5BE, 0x5BE), (0x5C0, 0x5C0), (0x5C3, 0x5C3),
    (0x5C6, 0x5C6), (0x5F3, 0x5F4), (0x609, 0x60A), (0x60C, 0x60D), (0x61B, 0x61B),
    (0x61D, 0x61F), (0x66A, 0x66D), (0x6D4, 0x6D4), (0x700, 0x70D), (0x7F7, 0x7F9),
    (0x830, 0x83E), (0x85E, 0x85E), (0x964, 0x965), (0x970, 0x970), (0x9FD, 0x9FD),
    (0xA76, 0xA76), (0xAF0, 0xAF0), (0xC77, 0xC77), (0xC84, 0xC84), (0xDF4, 0xDF4),
    (0xE4F, 0xE4F), (0xE5A, 0xE5B), (0xF04, 0xF12), (0xF14, 0xF14), (0xF3A, 0xF3D),
    (0xF85, 0xF85), (0xFD0, 0xFD4), (0xFD9, 0xFDA), (0x104A, 0x104F), (0x10FB, 0x10FB),
    (0x1360, 0x1368), (0x1400, 0x1400), (0x166E, 0x166E), (0x169B, 0x169C), (0x16EB, 0x16ED),
    (0x1735, 0x1736), (0x17D4, 0x17D6), (0x17D8, 0x17DA), (0x1800, 0x180A), (0x1944, 0x1945),
    (0x1A1E, 0x1A1F), (0x1AA0, 0x1AA6), (0x1AA8, 0x1AAD), (0x1B5A, 0x1B60), (0x1B7D, 0x1B7E),
    (0x1BFC, 0x1BFF), (0x1C3B, 0x1C3F), (0x1C7E, 0x1C7F), (0x1CC0, 0x1CC7), (0x1CD3, 0x1CD3),
    (0x207D, 0x207E), (0x208D, 0x208E), (0x2308, 0x230B), (0x2329, 0x232A), (0x2768, 0x2775),
    (0x27C5, 0x27C6), (0x27E6, 0x27EF), (0x2983, 0x2998), (0x29D8, 0x29DB), (0x29FC, 0x29FD),
    (0x2CF9, 0x2CFC), (0x2CFE, 0x2CFF), (0x2D70, 0x2D70), (0x2E00, 0x2E2E), (0x2E30, 0x2E4F),
    (0x2E52, 0x2E5D), (0x30A0, 0x30A0), (0x30FB, 0x30FB), (0xA4FE, 0xA4FF), (0xA60D, 0xA60F),
    (0xA673, 0xA673), (0xA67E, 0xA67E), (0xA6F2, 0xA6F7), (0xA874, 0xA877), (0xA8CE, 0xA8CF),
    (0xA8F8, 0xA8FA), (0xA8FC, 0xA8FC), (0xA92E, 0xA92F), (0xA95F, 0xA95F), (0xA9C1, 0xA9CD),
    (0xA9DE, 0xA9DF), (0xAA5C, 0xAA5F), (0xAADE, 0xAADF), (0xAAF0, 0xAAF1), (0xABEB, 0xABEB),
    (0xFD3E, 0xFD3F), (0xFE10, 0xFE19), (0xFE30, 0xFE52), (0xFE54, 0xFE61), (0xFE63, 0xFE63),
    (0xFE68, 0xFE68), (0xFE6A, 0xFE6B), (0xFF01, 0xFF03), (0xFF05, 0xFF0A), (0xFF0C, 0xFF0F),
    (0xFF1A, 0xFF1B), (0xFF1F, 0xFF20), (0xFF3B, 0xFF3D), (0xFF3F, 0xFF3F), (0xFF5B, 0xFF5B),
    (0xFF5D, 0xFF5D), (0xFF5F, 0xFF65), (0x10100, 0x10102), (0x1039F, 0x1039F),
    (0x103D0, 0x103D0), (0x1056F, 0x1056F), (0x10857, 0x10857), (0x1091F, 0x1091F),
    (0x1093F, 0x1093F), (0x10A50, 0x10A58), (0x10A7F, 0x10A7F), (0x10AF0, 0x10AF6),
    (0x10B39, 0x10B3F), (0x10B99, 0x10B9C), (0x10EAD, 0x10EAD), (0x10F55, 0x10F59),
    (0x10F86, 0x10F89), (0x11047, 0x1104D), (0x110BB, 0x110BC), (0x110BE, 0x110C1),
    (0x11140, 0x11143), (0x11174, 0x11175), (0x111C5, 0x111C8), (0x111CD, 0x111CD),
    (0x111DB, 0x111DB), (0x111DD, 0x111DF), (0x11238, 0x1123D), (0x112A9, 0x112A9),
    (0x1144B, 0x1144F), (0x1145A, 0x1145B), (0x1145D, 0x1145D), (0x114C6, 0x114C6),
    (0x115C1, 0x115D7), (0x11641, 0x11643), (0x11660, 0x1166C), (0x116B9, 0x116B9),
    (0x1173C, 0x1173E), (0x1183B, 0x1183B), (0x11944, 0x11946), (0x119E2, 0x119E2),
    (0x11A3F, 0x11A46), (0x11A9A, 0x11A9C), (0x11A9E, 0x11AA2), (0x11B00, 0x11B09),
    (0x11C41, 0x11C45), (0x11C70, 0x11C71), (0x11EF7, 0x11EF8), (0x11F43, 0x11F4F),
    (0x11FFF, 0x11FFF), (0x12470, 0x12474), (0x12FF1, 0x12FF2), (0x16A6E, 0x16A6F),
    (0x16AF5, 0x16AF5), (0x16B37, 0x16B3B), (0x16B44, 0x16B44), (0x16E97, 0x16E9A),
    (0x16FE2, 0x16FE2), (0x1BC9F, 0x1BC9F), (0x1DA87, 0x1DA8B), (0x1E95E, 0x1E95F),
)

# TF keeps these inside a word; BasicTokenizer cuts there (Unicode spaces, which TF's ASCII
# `\s` does not match) or deletes them (NUL; unassigned code points its control table lists;
# U+2065 is left to it, since TF's case folding deletes that one too).
WORD_CHARACTERS_ONLY_FOR_TF = (
    (0x0, 0x0), (0xA0, 0xA0), (0x378, 0x379), (0x380, 0x383), (0x38B, 0x38B), (0x38D, 0x38D),
    (0x3A2, 0x3A2), (0x2000, 0x200A), (0x202F, 0x202F), (0x205F, 0x205F), (0x2E9A, 0x2E9A),
    (0x2EF4, 0x2EFE), (0x3000, 0x3000),
)
# fmt: on


# keras-hub's split as BasicTokenizer's switches: no case change (CaseFoldUTF8 follows, as
# in TF), no accent stripping, CJK characters and punctuation as words of their own.
BASIC_TOKENIZER = {
    "do_lower_case": 0,
    "strip_accents": 0,
    "tokenize_chinese_chars": 1,
    "tokenize_punctuation": 1,
    "remove_control_chars": 1,
}

# The mark between texts in `_split_words`: a format character TF Text drops, which the
# split's first replace turns into a space in every text, and BasicTokenizer keeps as a word.
MARK = "\ufeff"


def _character_class(ranges) -> str:
    return "[" + "".join(f"\\x{{{a:X}}}-\\x{{{b:X}}}" for a, b in ranges) + "]"


def _split_words(ctx, node) -> None:
    """keras-hub's word split, TF Text's `RegexSplitWithOffsets(text, WHITESPACE_
    PUNCTUATION_AND_CJK_REGEX, PUNCTUATION_AND_CJK_REGEX)`, as onnxruntime-extensions'
    `BasicTokenizer` (no case change, no accent stripping), which keeps its character
    tables compiled; a regex op compiles its pattern on every call (0.27 ms for the split's
    kept-delimiter pattern on a 40-word text, diary 2026-12 §11). Where the two disagree
    (the tables above), one RE2 replace puts a space around or in place of the character
    and another makes TF's word characters a noncharacter both keep inside a word.
    `BasicTokenizer` reads one text a call, so a Loop runs it text by text. Only the words
    and row splits are produced: nothing reads the offsets."""
    from keras_hub.src.tokenizers import word_piece_tokenizer as keras_hub_split
    from onnx import TensorProto

    STR, INT = TensorProto.STRING, TensorProto.INT64

    def constant_string(name_of):
        value = ctx.get_node_by_output(name_of).get_tensor_value()
        return value.decode() if isinstance(value, bytes) else value

    delimiters, kept = constant_string(node.input[1]), constant_string(node.input[2])
    expected = (
        keras_hub_split.WHITESPACE_PUNCTUATION_AND_CJK_REGEX,
        keras_hub_split.PUNCTUATION_AND_CJK_REGEX,
    )
    # TF Text wraps each pattern in a group.
    if (delimiters, kept) != tuple(f"({p})" for p in expected):
        raise ExportError(
            "ONNX: the tokenizer splits words with a pattern bertclf cannot translate "
            f"({delimiters[:60]!r}...); export the SavedModel instead (--format savedmodel)"
        )
    offsets_read = [o for o in node.output[1:3] if ctx.find_output_consumers(o)]
    if offsets_read:
        raise ExportError(
            f"ONNX: the word split's offsets are read ({offsets_read}); "
            "export the SavedModel instead (--format savedmodel)"
        )
    n = _Nodes(ctx, node.name)
    text = node.input[0]
    # keras-hub spaces out CJK characters before the split; BasicTokenizer cuts at the same
    # ranges (tokenize_chinese_chars), so that replace goes when the split alone reads it.
    spacing = ctx.get_node_by_output(text)
    while (
        spacing is not None
        and spacing.type == "Identity"
        and len(ctx.find_output_consumers(spacing.output[0])) == 1
    ):
        spacing = ctx.get_node_by_output(spacing.input[0])
    skip_spacing = (
        _is_cjk_spacing(spacing, keras_hub_split.CJK_REGEX)
        and len(ctx.find_output_consumers(spacing.output[0])) == 1
    )
    if skip_spacing:
        text = spacing.input[0]
    # One replace for both space fixes: `\1` is the punctuation, empty for a cut character.
    spaced = _character_class(PUNCTUATION_ONLY_FOR_TF)
    cut = _character_class(CUT_ONLY_BY_TF)
    text = n(
        "StringRegexReplace",
        [text, n.strings([f"({spaced})|{cut}"]), n.strings([" \\1 "])],
        STR,
        CONTRIB,
    )
    text = n(
        "StringRegexReplace",
        [
            text,
            n.strings([_character_class(WORD_CHARACTERS_ONLY_FOR_TF)]),
            n.strings([INNER_SPACE]),
        ],
        STR,
        CONTRIB,
    )

    # BasicTokenizer reads one text a call: the batch is joined into one text, each text
    # followed by a MARK word (a character the first replace has taken out of every text),
    # and cut again where the marks are. (A Loop over the texts costs 0.12 ms a call.)
    # An empty text ends the batch, since StringJoin crashes on zero rows (see _case_fold).
    padded = n("Concat", [text, n.strings([""])], STR, axis=0)  # [b + 1]
    joined = n("StringJoin", [padded, n.strings([f" {MARK} "]), n.ints(0)], STR, CONTRIB)
    marked = n(
        "BasicTokenizer",
        [n("Reshape", [joined, n.ints([1])], STR)],
        STR,
        CONTRIB,
        **BASIC_TOKENIZER,
    )  # [w + b]: the words and a MARK after each text
    is_mark = n(
        "LabelEncoder",
        [marked],
        INT,
        "ai.onnx.ml",
        keys_strings=[MARK],
        values_int64s=[1],
        default_int64=0,
    )
    is_mark = n("Cast", [is_mark], TensorProto.BOOL, to=TensorProto.BOOL)
    positions = n(
        "Range", [n.ints(0), n("Squeeze", [n("Shape", [marked], INT)], INT), n.ints(1)], INT
    )
    marks_at = n("Compress", [positions, is_mark], INT, axis=0)  # [b]
    # The k-th mark stands after text k's words and k marks: text k ends at word mark - k.
    ends = n(
        "Sub",
        [
            marks_at,
            n(
                "Range",
                [n.ints(0), n("Squeeze", [n("Shape", [marks_at], INT)], INT), n.ints(1)],
                INT,
            ),
        ],
        INT,
    )
    splits = n("Concat", [n.ints([0]), ends], INT, axis=0)  # [b + 1]
    words = n("Compress", [marked, n("Not", [is_mark], TensorProto.BOOL)], STR, axis=0)  # [w]
    outputs = list(node.output)
    ctx.remove_node(node.name)
    ctx.replace_all_inputs(outputs[0], words)
    ctx.replace_all_inputs(outputs[3], splits)
    # The spacing replace, read by nothing now, goes with tf2onnx's removal of unused nodes.


def _is_cjk_spacing(node, cjk_pattern: str) -> bool:
    """Whether `node` is keras-hub's `regex_replace(text, CJK_REGEX, " \\0 ")`, as a TF op
    or already converted."""
    if node is None:
        return False
    if node.type == "StaticRegexReplace":
        pattern, rewrite = node.get_attr_value("pattern"), node.get_attr_value("rewrite")
    elif node.type == "StringRegexReplace" and node.domain == CONTRIB:
        if not all(node.inputs[i].is_const() for i in (1, 2)):
            return False
        # Each a constant of one string.
        pattern, rewrite = (np.asarray(node.inputs[i].get_tensor_value()).item() for i in (1, 2))
    else:
        return False
    as_text = [v.decode() if isinstance(v, bytes) else v for v in (pattern, rewrite)]
    return as_text == [cjk_pattern, " \\0 "]


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
    tanh_gelus(model)  # ONNX Runtime then runs each GELU as one kernel
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
