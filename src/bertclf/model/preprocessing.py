"""Text preprocessing as Keras layers made only of TensorFlow ops.

The same `TextPreprocessor` object feeds the training pipeline (inside
`tf.data.Dataset.map`) and is traced into the exported SavedModel, so a text
is cleaned, tokenized and packed identically in training and in serving.

Shapes: texts [batch] (tf.string) -> token_ids / segment_ids / padding_mask
[batch, seq_len] (int32, int32, bool); with `long="chunk"`, [batch, max_chunks,
seq_len]: each text's windows, the unused ones all padding.
"""

from __future__ import annotations

import keras
import keras_hub
import numpy as np
import tensorflow as tf

from bertclf.config.model import text_tokens

# NLTK's English stop-word list (the civility notebook's `stopwords.words("english")`),
# shipped here so that cleaning needs no download.
ENGLISH_STOP_WORDS = (  # noqa: SIM905 - a word list reads best as one string
    "i me my myself we our ours ourselves you you're you've you'll you'd your yours "
    "yourself yourselves he him his himself she she's her hers herself it it's its itself "
    "they them their theirs themselves what which who whom this that that'll these those "
    "am is are was were be been being have has had having do does did doing a an the and "
    "but if or because as until while of at by for with about against between into through "
    "during before after above below to from up down in out on off over under again "
    "further then once here there when where why how all any both each few more most other "
    "some such no nor not only own same so than too very s t can will just don don't "
    "should should've now d ll m o re ve y ain aren aren't couldn couldn't didn didn't "
    "doesn doesn't hadn hadn't hasn hasn't haven haven't isn isn't ma mightn mightn't "
    "mustn mustn't needn needn't shan shan't shouldn shouldn't wasn wasn't weren weren't "
    "won won't wouldn wouldn't"
).split()

# RE2 patterns (tf.strings.regex_replace). Longest stop words first so that
# "don't" is removed whole rather than leaving "'t".
_STOP_WORDS_RE = r"(?i)\b(?:" + "|".join(sorted(ENGLISH_STOP_WORDS, key=len, reverse=True)) + r")\b"
_QUOTED_LINE_RE = r"(?m)^[ \t]*>.*$"
_ATTRIBUTION_RE = r"(?m)^.*\bwrote:[ \t]*$"
_SIGNATURE_RE = r"(?s)(?:^|\n)--[ \t]?(?:\n.*)?$"

# --truncate head_tail keeps this share of a long text's tokens from its start and the
# rest from its end: Sun et al. 2019 ("How to Fine-Tune BERT for Text Classification?")
# found 128 head + 382 tail tokens (of BERT's 510) best on long IMDb and Yelp reviews.
HEAD_SHARE = 128 / 510


def head_tail_sizes(sequence_length: int) -> tuple[int, int]:
    """(head, tail) tokens that --truncate head_tail keeps of a text cut to `sequence_length`."""
    room = text_tokens(sequence_length)
    head = int(room * HEAD_SHARE)
    return head, room - head


class TextCleaner(keras.layers.Layer):
    """Optional text cleaning with `tf.strings` ops, applied before tokenizing.

    Steps run in a fixed order: `email` (drop quoted `>` lines, "... wrote:"
    attribution lines, and everything after a `-- ` signature line), `lower`
    (Unicode lower-case), `letters` (every character outside a-z/A-Z becomes a
    space), `stopwords` (drop NLTK's English stop words). With no steps the
    text passes through unchanged.

    Args:
        steps: a subset of ("email", "lower", "letters", "stopwords").

    Example:
    >>> cleaner = TextCleaner(steps=("email", "lower"))
    >>> cleaner(tf.constant(["> quoted\\nHello THERE\\n-- \\nsig"])).numpy()
    array([b'hello there'], dtype=object)
    """

    def __init__(self, steps: tuple[str, ...] = (), **kwargs):
        super().__init__(trainable=False, **kwargs)
        self.steps = tuple(steps)

    def call(self, texts):
        if not self.steps:
            return texts
        x = texts
        if "email" in self.steps:
            x = tf.strings.regex_replace(x, _SIGNATURE_RE, "")
            x = tf.strings.regex_replace(x, _QUOTED_LINE_RE, "")
            x = tf.strings.regex_replace(x, _ATTRIBUTION_RE, "")
        if "lower" in self.steps:
            x = tf.strings.lower(x, encoding="utf-8")
        if "letters" in self.steps:
            x = tf.strings.regex_replace(x, r"[^a-zA-Z]", " ")
        if "stopwords" in self.steps:
            x = tf.strings.regex_replace(x, _STOP_WORDS_RE, " ")
        x = tf.strings.regex_replace(x, r"\s+", " ")
        return tf.strings.strip(x)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "steps": list(self.steps)}


class TextPreprocessor(keras.layers.Layer):
    """Raw strings to BERT inputs: clean, WordPiece-tokenize, pack with [CLS]/[SEP].

    Args:
        tokenizer: a `keras_hub.models.BertTokenizer`.
        sequence_length: packed length, special tokens included.
        clean: `TextCleaner` steps.
        truncate: `waterfall` (this layer's default; portable to TF Serving 2.19)
            or `round_robin` (keras-hub's default; emits the newer
            `TFText>RoundRobinTrim` op): both keep the first
            `sequence_length - 2` tokens of a text. `head_tail` keeps its first
            quarter and last three quarters (`head_tail_sizes`), with core ops only.
            Runs pass `ModelConfig.truncate`, whose default is `head_tail`.
        long: `truncate` (one window a text, cut as `truncate` says) or `chunk`:
            windows of `sequence_length - 2` tokens starting every `stride` tokens,
            at most `max_chunks` of them, each packed with [CLS]/[SEP].
        stride: `chunk`: tokens between window starts (default: no overlap).
        max_chunks: `chunk`: windows a text at most; later tokens are cut.

    Example:
    >>> vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "fox"]
    >>> tok = keras_hub.models.BertTokenizer(vocabulary=vocab, lowercase=True)
    >>> pre = TextPreprocessor(tok, sequence_length=6)
    >>> pre(tf.constant(["The fox"]))["token_ids"].numpy()
    array([[2, 5, 6, 3, 0, 0]], dtype=int32)
    """

    def __init__(
        self,
        tokenizer,
        sequence_length: int,
        clean: tuple[str, ...] = (),
        truncate: str = "waterfall",
        long: str = "truncate",
        stride: int | None = None,
        max_chunks: int = 8,
        **kwargs,
    ):
        super().__init__(trainable=False, **kwargs)
        self.tokenizer = tokenizer
        self.sequence_length = sequence_length
        self.truncate = truncate
        self.long = long
        self.stride = stride or text_tokens(sequence_length)
        self.max_chunks = max_chunks
        self.cleaner = TextCleaner(steps=clean, name="cleaner")
        self.packer = keras_hub.layers.MultiSegmentPacker(
            sequence_length=sequence_length,
            start_value=tokenizer.cls_token_id,
            end_value=tokenizer.sep_token_id,
            pad_value=tokenizer.pad_token_id,
            # head_tail cuts in `cut`, before packing: the packer then has nothing to cut.
            truncate="waterfall" if truncate == "head_tail" else truncate,
            name="packer",
        )

    @property
    def clean(self) -> tuple[str, ...]:
        return self.cleaner.steps

    def tokenize(self, texts):
        """[batch] strings -> ragged [batch, None] int32 WordPiece ids (no specials)."""
        return self.tokenizer(self.cleaner(texts))

    def cut(self, token_ids):
        """Ragged ids -> the ids packing keeps: at most `sequence_length - 2` a row.

        The first ones (waterfall, round_robin) or, with `head_tail`, the first `head`
        and the last `tail` of a longer row (a shorter row is kept whole).
        """
        room = text_tokens(self.sequence_length)
        if isinstance(token_ids, list):  # keras-hub hands eager callers Python lists
            rows = token_ids or [[]]
            token_ids = tf.ragged.constant(rows, dtype=tf.int32, ragged_rank=1)[: len(token_ids)]
        if self.long == "chunk":  # what `max_chunks` windows cover
            return self._head(token_ids, (self.max_chunks - 1) * self.stride + room)
        if self.truncate != "head_tail":
            return self._head(token_ids, room)
        head, tail = head_tail_sizes(self.sequence_length)
        # On the flat values rather than with a ragged mask: measured in a tf.function,
        # it adds 15 us to a plain slice's call at batch 1 where the mask added 110-150
        # (200 us against 750 at batch 32).
        lengths = token_ids.row_lengths()  # [batch]
        rows = self._value_rowids(token_ids)  # [tokens]: each token's row
        position = tf.range(tf.size(rows, out_type=rows.dtype)) - tf.gather(
            token_ids.row_starts(), rows
        )  # [tokens]: 0..length-1 within its row
        keep = (position < head) | (position >= tf.gather(lengths, rows) - tail)
        kept = tf.boolean_mask(token_ids.flat_values, keep)
        return tf.RaggedTensor.from_row_lengths(kept, tf.minimum(lengths, room), validate=False)

    def _head(self, token_ids, count: int):
        """Ragged [b, None] -> each row's first `count` ids (the ONNX export swaps in dense
        ops: `bertclf.export.onnx.onnx_friendly`)."""
        return token_ids[:, :count]

    def _dense(self, token_ids, pad, width):
        """Ragged [b, <= width] -> [b, width], padded (the ONNX export swaps in a scatter:
        `bertclf.export.onnx.onnx_friendly`)."""
        return token_ids.to_tensor(pad, shape=[None, width])

    def _value_rowids(self, token_ids):
        """[tokens] each token's row (the ONNX export swaps in a dense formula:
        `bertclf.export.onnx.onnx_friendly`)."""
        return token_ids.value_rowids()

    def windows(self, token_ids):
        """Cut ragged ids [batch, None] -> (ragged [batch * max_chunks, <= room], used
        [batch, max_chunks]): window c holds tokens c*stride .. c*stride + room - 1.

        Window 0 is always used (an empty text too); window c > 0 only when the one
        before it stops short of the text's end, else it is empty.
        """
        room, step, count = text_tokens(self.sequence_length), self.stride, self.max_chunks
        lengths = tf.cast(token_ids.row_lengths(), tf.int32)  # [batch]
        starts = tf.range(count) * step  # [C]
        used = (tf.range(count) == 0)[None, :] | (
            (starts - step + room)[None, :] < lengths[:, None]
        )  # [batch, C]
        pad = self.tokenizer.pad_token_id
        dense = self._dense(token_ids, pad, (count - 1) * step + room)  # [batch, T]
        grid = tf.gather(dense, starts[:, None] + tf.range(room)[None, :], axis=1)  # [b, C, room]
        sizes = tf.where(used, tf.clip_by_value(lengths[:, None] - starts, 0, room), 0)
        flat = tf.reshape(grid, [-1, room])  # [batch * C, room]
        return tf.RaggedTensor.from_tensor(flat, lengths=tf.reshape(sizes, [-1])), used

    def pack(self, token_ids, sequence_length=None):
        """Ragged ids -> dense BERT inputs padded to `sequence_length` (default: the layer's).

        With `long="chunk"`: [batch, max_chunks, sequence_length], unused windows all
        padding (their mask all False).
        """
        if self.long != "chunk":
            return self._pack_rows(token_ids, sequence_length)
        windows, used = self.windows(token_ids)
        rows = self._pack_rows(windows, sequence_length)  # each [batch * C, seq]
        shape = [tf.shape(used)[0], self.max_chunks, -1]
        packed = {k: tf.reshape(v, shape) for k, v in rows.items()}
        mask = packed["padding_mask"] & used[:, :, None]
        ids = tf.where(mask, packed["token_ids"], self.tokenizer.pad_token_id)
        return {**packed, "token_ids": ids, "padding_mask": mask}

    def _pack_rows(self, token_ids, sequence_length):
        ids, segments = self.packer(token_ids, sequence_length=sequence_length)
        return {
            "token_ids": ids,
            "segment_ids": segments,
            "padding_mask": tf.not_equal(ids, self.tokenizer.pad_token_id),
        }

    def call(self, texts, sequence_length=None):
        return self.pack(self.cut(self.tokenize(texts)), sequence_length=sequence_length)

    def get_config(self):
        return {
            **super().get_config(),
            "tokenizer": keras.layers.serialize(self.tokenizer),
            "sequence_length": self.sequence_length,
            "clean": list(self.clean),
            "truncate": self.truncate,
            "long": self.long,
            "stride": self.stride,
            "max_chunks": self.max_chunks,
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["tokenizer"] = keras.layers.deserialize(config["tokenizer"])
        config["clean"] = tuple(config.get("clean", ()))
        return cls(**config)


# ------------------------------------------------------------------ batches of texts

# Batch widths are multiples of BUCKET (graph kernels: one trace for every width). Each
# new width costs its first step 0.03-0.2 s more (oneDNN sets up kernels for its shapes);
# on BBC's short texts 4 gives 15 distinct widths and 57.4 columns a batch (8: 8 widths,
# 59.4 columns; 1: 47 widths, 55.9), for 54.9 real tokens on average.
BUCKET = 4


def _traced(preprocessor: TextPreprocessor, key: tuple, make):
    """The preprocessor's tf.function for `key`, traced once for the process.

    A run reads its training, validation and test texts (and the report its examples)
    through the same preprocessor: a fresh tf.function each time traced the tokenizer
    and the packer (the slowest graphs to build: 0.3-1 s each) again for every set.
    Kept in the layer's `__dict__`, outside Keras' attribute tracking (a graph is no
    part of the layer's state or config), and freed with the layer.
    """
    graphs = preprocessor.__dict__.setdefault("_traced_graphs", {})
    if key not in graphs:
        graphs[key] = make()
    return graphs[key]


def tokenize_all(
    preprocessor: TextPreprocessor, texts: list[str], batch: int = 256, cap: bool = True
) -> tf.RaggedTensor:
    """WordPiece ids of every text: ragged [n, None] int32, without [CLS]/[SEP].

    With `cap`, rows keep only the tokens that packing keeps (`TextPreprocessor.cut`:
    the first `sequence_length - 2`, or a head and a tail with `--truncate head_tail`).
    """

    def make():
        @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
        def tokenize(t):
            ids = preprocessor.tokenize(t)
            return preprocessor.cut(ids) if cap else ids

        return tokenize

    tokenize = _traced(preprocessor, ("tokenize", cap), make)
    parts = [tokenize(tf.constant(texts[i : i + batch])) for i in range(0, len(texts), batch)]
    if not parts:
        return tf.ragged.constant([[]], dtype=tf.int32)[:0]
    return tf.concat(parts, axis=0) if len(parts) > 1 else parts[0]


def pack_all(preprocessor: TextPreprocessor, token_ids: tf.RaggedTensor, batch: int = 1024):
    """`preprocessor.pack` over all rows of `token_ids`: a dict of [n, seq_len] tensors."""

    spec = tf.RaggedTensorSpec(
        [None, None], token_ids.dtype, ragged_rank=1, row_splits_dtype=token_ids.row_splits.dtype
    )
    key = ("pack", spec.dtype, spec.row_splits_dtype)

    def make():
        return tf.function(preprocessor.pack, input_signature=[spec])

    pack = _traced(preprocessor, key, make)
    n = int(token_ids.nrows())
    parts = [pack(token_ids[i : i + batch]) for i in range(0, max(n, 1), batch)]
    return {k: tf.concat([p[k] for p in parts], axis=0) for k in parts[0]}


def token_lengths(
    preprocessor: TextPreprocessor, texts: list[str], batch: int = 256, cap: bool = True
) -> np.ndarray:
    """Packed length of each text: [CLS] + WordPiece tokens + [SEP].

    Capped at the preprocessor's sequence length unless `cap` is False (analysis
    wants the full length, to tell what a cut would truncate).
    """
    ids = tokenize_all(preprocessor, texts, batch, cap)
    return ids.row_lengths().numpy().astype(np.int64) + 2


def trim_to_bucket(features: dict, max_len: int, bucket: int = BUCKET) -> dict:
    """Drop padding columns: keep the longest row, rounded up to a multiple of `bucket`.

    [batch, max_len] -> [batch, width], width = min(ceil(longest / bucket) * bucket, max_len).
    Texts were already truncated to `max_len`, so nothing but padding is removed.
    """
    mask = tf.cast(features["padding_mask"], tf.int32)  # [batch, (windows,) max_len]
    longest = tf.reduce_max(tf.reduce_sum(mask, axis=-1))
    # At least one bucket: an empty batch's "longest" is the int32 minimum.
    width = tf.minimum(tf.maximum((longest + bucket - 1) // bucket * bucket, bucket), max_len)
    return {k: v[..., :width] for k, v in features.items()}


def inference_features(preprocessor: TextPreprocessor, texts: tf.Tensor) -> dict:
    """[batch] strings -> BERT inputs [batch, width], trimmed as training trims a batch.

    Inference (evaluate, predict, the report and the exported signatures) pads a batch
    only to its longest text, rounded up to a multiple of `BUCKET`, not to the full
    sequence length: a 15-word text then costs 20 positions, not 128. Padding is
    masked out of attention and pooling, so the probabilities are those of the fully
    padded batch to float rounding (tests/test_export.py compares them). Only core ops
    (sum, max, slicing): TF Serving 2.19 runs them.
    """
    return trim_to_bucket(preprocessor(texts), preprocessor.sequence_length, BUCKET)
