"""Which words drove a prediction: integrated gradients on the token embeddings.

Integrated gradients (Sundararajan et al. 2017, "Axiomatic Attribution for Deep
Networks") credits each input feature with `(x - x') * mean of dF/dx` along the straight
path from a baseline `x'` to the input `x`; the credits add up to `F(x) - F(x')`
("completeness"). Here:

- `x` are the token embeddings of the text as the model reads it, `x'` the same with
  every WordPiece token replaced by [PAD]'s embedding ([CLS], [SEP], positions and
  segments kept): "the text with its words removed";
- `F` is the log-odds of the label explained, log(p / (1 - p)) of its calibrated
  probability p (`IntegratedGradients.target` says why not p itself): a word of weight
  +1 multiplies the label's odds by e, and the weights add up to
  logit(p) - logit(p of the baseline);
- the path integral is taken with Gauss-Legendre quadrature (as Captum does by default),
  `STEPS` nodes: the measured completeness error is in BENCHMARKS.md;
- a token's credit is summed over the hidden axis, then over the WordPiece pieces of its
  word: words are split as keras-hub's BERT tokenizer splits them (whitespace, and each
  punctuation mark or CJK character a word), keeping the text's own spelling.

Everything is TensorFlow ops, so a run and its export (the `explain` signature) compute
the same explanation. Long texts: the tokens the model reads (`--truncate head_tail`,
or `--long chunk`'s windows) are explained; the words it never read get no weight and
`read` False.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf
import tensorflow_text as tf_text
from keras_hub.src.tokenizers import word_piece_tokenizer as keras_hub_wordpiece

from bertclf.config.model import text_tokens
from bertclf.model.preprocessing import trim_to_bucket

# Gauss-Legendre nodes for the path integral. Measured (bench/explain.py, BENCHMARKS.md
# "Explanations"): the weights miss the log-odds' change by 2.7% / 6.0% at 16 nodes,
# 0.9% / 1.1% at 32 and 0.7% / 0.2% at 64 (civility-gh / BBC, mean), for 0.38 s / 0.96 s
# a text at 32 on 2 cores: 32 is where the error stops mattering before the cost does.
STEPS = 32

# The word split of keras-hub's WordPiece tokenizer (whitespace and punctuation split;
# punctuation and CJK characters kept as words of their own). Imported rather than
# copied so that a word here is a word there; tests/test_explain.py checks that the
# pieces of the words, tokenized one by one, are the pieces of the whole text.
_SPLIT = keras_hub_wordpiece.WHITESPACE_PUNCTUATION_AND_CJK_REGEX
_KEEP = keras_hub_wordpiece.PUNCTUATION_AND_CJK_REGEX


def gauss_legendre(steps: int) -> tuple[np.ndarray, np.ndarray]:
    """Nodes in (0, 1) and their weights (summing to 1) for a path integral."""
    nodes, weights = np.polynomial.legendre.leggauss(steps)
    return ((nodes + 1) / 2).astype(np.float32), (weights / 2).astype(np.float32)


class IntegratedGradients:
    """Word attributions of a classifier's score, built from TensorFlow ops.

    Args:
        preprocessor: the run's `TextPreprocessor` (cleaning, WordPiece, cut, packing).
        model: the run's `BertClassifier`.
        temperature: the calibration's temperature ([1] or [num_labels]); None: 1.
        thresholds: multi-label: each label's threshold ([num_labels]); None: the
            model is single-label and its top label is explained.
        steps: Gauss-Legendre nodes of the path integral.

    Example:
    >>> ig = IntegratedGradients(run.preprocessor, run.model)  # doctest: +SKIP
    >>> out = ig.explain(tf.constant(["you are an idiot"]))  # doctest: +SKIP
    >>> out["words"][0], out["weights"][0, out["scores"][0].numpy().argmax()]  # doctest: +SKIP
    """

    def __init__(self, preprocessor, model, temperature=None, thresholds=None, steps: int = STEPS):
        self.preprocessor = preprocessor
        self.model = model
        self.temperature = np.ones([1], np.float32) if temperature is None else temperature
        self.thresholds = thresholds
        self.steps = steps

    # ------------------------------------------------------------------ words and tokens

    def words(self, texts):
        """[b] strings -> (words ragged [b, W] in the cleaned text's spelling, token ids
        ragged [b, T], each token's word as an index into the flat words [b, T])."""
        cleaned = self.preprocessor.cleaner(texts)
        words, _, _ = tf_text.regex_split_with_offsets(cleaned, _SPLIT, _KEEP)  # [b, W]
        # Each word through the run's tokenizer (lower-casing, accents, WordPiece):
        # [nW, P] pieces; regrouped by text, they are the text's tokens.
        pieces = self.preprocessor.tokenizer(words.flat_values)
        if isinstance(pieces, list):  # keras-hub returns lists to eager callers of 0 words
            pieces = tf.ragged.constant(pieces or [[]], tf.int32, ragged_rank=1)[: len(pieces)]
        word_of_piece = tf.cast(pieces.value_rowids(), tf.int32)  # [tokens]: flat word index
        per_text = tf.RaggedTensor.from_row_splits(pieces, words.row_splits)  # [b, W, P]
        ids = per_text.merge_dims(1, 2)  # [b, T]
        word_ids = ids.with_flat_values(word_of_piece)  # [b, T]
        return words, ids, word_ids

    def features(self, texts):
        """[b] strings -> (BERT inputs as `inference_features` makes them, each position's
        flat word index [b, (C,) width] (-1 for [CLS], [SEP] and padding), words)."""
        pre = self.preprocessor
        words, ids, word_ids = self.words(texts)
        ids, word_ids = pre.cut(ids), pre.cut(word_ids)  # what packing keeps
        features = pre.pack(ids)  # [b, seq] or [b, C, seq]
        room = text_tokens(pre.sequence_length)
        if pre.long == "chunk":
            word_rows, _ = pre.windows(word_ids)  # [b*C, <= room]
        else:
            word_rows = word_ids
        dense = word_rows.to_tensor(-1, shape=[None, room])
        # [CLS] before the tokens, [SEP] (or padding) after: both -1.
        where = tf.pad(dense, [[0, 0], [1, 1]], constant_values=-1)  # [rows, seq]
        where = tf.reshape(where, tf.shape(features["token_ids"]))
        where = tf.where(features["padding_mask"], where, -1)  # unused windows
        features = trim_to_bucket({**features, "where": where}, pre.sequence_length)
        where = features.pop("where")
        return features, where, words

    # ------------------------------------------------------------------ the attribution

    def logits(self, features):
        """BERT inputs (with `token_embeddings`) [n, ...] -> calibrated logits [n, L']
        (the logits over the temperature: `model.probabilities` of them are the scores)."""
        logits = self.model.logits_and_vectors(features, training=False)[0]
        temperature = tf.constant(self.temperature, tf.float32)  # [1] or [L]
        return tf.cast(logits, tf.float32) / temperature

    def target(self, logits, labels):
        """Calibrated logits [n, L'] and labels [n] -> the quantity attributed [n]: the
        log-odds of each row's label, log(p / (1 - p)) of its calibrated probability.

        Why log-odds and not p: along the path from the baseline a long text's p jumps
        from near 0 to near 1 within a short stretch, which no affordable quadrature
        follows (BBC, 32 steps: the weights missed p's change by 0.17 on average, a fifth
        of it); the log-odds rise smoothly (missed by 0.13 of about 10, 1%). Computed
        from the logits, so a saturated p (1.0 in float32) keeps its gradient.
        """
        if self.model.head == "multilabel":  # one sigmoid a label: its logit
            return tf.gather(logits, labels, batch_dims=1)
        if self.model.head == "sigmoid":  # one logit z = log-odds of label 1
            z = logits[:, 0]
            return tf.where(labels == 1, z, -z)
        # softmax: z_l - logsumexp of the other labels' logits.
        own = tf.gather(logits, labels, batch_dims=1)
        others = tf.where(
            tf.one_hot(labels, tf.shape(logits)[1], on_value=True, off_value=False),
            tf.constant(-np.inf, tf.float32),
            logits,
        )
        return own - tf.reduce_logsumexp(others, axis=-1)

    def quadrature(self) -> tuple[np.ndarray, np.ndarray]:
        """The path's nodes in (0, 1] and their weights (bench/explain.py puts a single
        node at 1 for "gradient x input", to measure what the integral buys)."""
        return gauss_legendre(self.steps)

    def explain(self, texts):
        """TensorFlow: texts [b] -> the explanation of each explained (text, label) pair.

        Explained: the top label (single-label), or each label whose score reaches its
        threshold (multi-label; possibly none). Outputs, W the most words in a text:
        `words` [b, W] (padded with ""), `read` [b, W] bool (the model read the word),
        `num_words` [b], `explained` [b, L] bool, `weights` [b, L, W] float32 (0 for
        a label not explained), `scores` [b, L] (the calibrated probabilities) and
        `baseline_scores` [b, L] (each explained label's with every word removed). The
        weights of a label add up to `log_odds` - `baseline_log_odds` [b, L] (`target`).
        """
        features, where, words = self.features(texts)  # [b, (C,) w] each
        inputs = {k: features[k] for k in ("segment_ids", "padding_mask")}
        embeddings = self.model.token_embeddings(features["token_ids"])  # [b, (C,) w, H]
        scores = self.model.probabilities(
            self.logits({**inputs, "token_embeddings": embeddings})
        )  # [b, L]
        if self.thresholds is None:
            top = tf.argmax(scores, -1, output_type=tf.int32)
            explained = tf.one_hot(top, tf.shape(scores)[1], on_value=True, off_value=False)
        else:
            explained = scores >= tf.constant(self.thresholds, tf.float32)[None, :]
        pairs = tf.cast(tf.where(explained), tf.int32)  # [P, 2]: (text, label)
        text_of, label_of = pairs[:, 0], pairs[:, 1]

        # Each pair's input and baseline: every WordPiece token of the text -> [PAD].
        x = tf.gather(embeddings, text_of)  # [P, (C,) w, H]
        pair_inputs = {k: tf.gather(v, text_of) for k, v in inputs.items()}
        pair_where = tf.gather(where, text_of)  # [P, (C,) w]
        is_word = pair_where >= 0
        pad = self.model.token_embeddings(tf.constant(self.preprocessor.tokenizer.pad_token_id))
        baseline = tf.where(is_word[..., None], pad, x)

        # The path, all steps in one batch: [S, P, ...] -> [S*P, ...]; the two last
        # alphas are 0 and 1, whose scores are the baseline's and the input's own.
        nodes, weights = self.quadrature()
        alphas = np.concatenate([nodes, [0.0, 1.0]]).astype(np.float32)
        steps = len(alphas)
        ones = tf.ones([tf.rank(x) - 1], tf.int32)
        a = tf.reshape(tf.constant(alphas), tf.concat([[-1, 1], ones], 0))  # [S, 1, ..., 1]
        path = baseline[None] + a * (x - baseline)[None]  # [S, P, (C,) w, H]
        path = tf.reshape(path, tf.concat([[-1], tf.shape(x)[1:]], 0))  # [S*P, (C,) w, H]
        tiled = {k: tf.tile(v, tf.concat([[steps], ones[:-1]], 0)) for k, v in pair_inputs.items()}
        with tf.GradientTape() as tape:
            tape.watch(path)
            f = self.target(
                self.logits({**tiled, "token_embeddings": path}), tf.tile(label_of, [steps])
            )  # [S*P]: log-odds
        grads = tape.gradient(f, path)
        grads = tf.reshape(grads, tf.concat([[steps], tf.shape(x)], 0))  # [S, P, ..., H]
        f = tf.reshape(f, [steps, -1])  # [S, P]
        w = tf.constant(np.concatenate([weights, [0.0, 0.0]]).astype(np.float32))
        mean_grad = tf.tensordot(w, grads, axes=1)  # [P, (C,) w, H]
        per_token = tf.reduce_sum((x - baseline) * mean_grad, axis=-1)  # [P, (C,) w]
        per_token = tf.where(is_word, per_token, 0.0)

        # Tokens -> words: each pair's sum over a word's pieces (in every window).
        num_words = tf.shape(words.flat_values)[0]
        pair_of = tf.broadcast_to(
            tf.reshape(tf.range(tf.shape(pairs)[0]), tf.concat([[-1], ones[:-1]], 0)),
            tf.shape(pair_where),
        )
        keep = pair_where >= 0
        segment = tf.boolean_mask(pair_of * num_words + pair_where, keep)
        per_word = tf.math.unsorted_segment_sum(
            tf.boolean_mask(per_token, keep), segment, tf.shape(pairs)[0] * num_words
        )
        per_word = tf.reshape(per_word, [tf.shape(pairs)[0], num_words])  # [P, nW]
        per_word = tf.pad(per_word, [[0, 0], [0, 1]])  # [P, nW + 1]: a column to gather
        # for padding, which exists even when the batch has no word at all
        # Each text's words as flat indices, [b, W] (-1: padding), gathered per pair.
        # W at least 1: a batch of empty texts still gets [b, 1] outputs (scatter_nd
        # refuses an empty output shape), its one column padding.
        width = tf.maximum(tf.reduce_max(tf.concat([words.row_lengths(), [0]], 0)), 1)
        dense_shape = tf.stack([tf.cast(words.nrows(), tf.int64), width])
        index = words.with_flat_values(tf.range(num_words)).to_tensor(-1, shape=dense_shape)
        pair_index = tf.gather(index, text_of)  # [P, W]
        pair_weights = tf.where(
            pair_index >= 0,
            tf.gather(per_word, tf.maximum(pair_index, 0), batch_dims=1),
            0.0,
        )  # [P, W]
        shape = tf.concat([tf.shape(explained), tf.shape(index)[1:]], 0)  # [b, L, W]
        flat_where = tf.reshape(where, [-1])
        seen = tf.boolean_mask(flat_where, flat_where >= 0)
        read = tf.math.unsorted_segment_max(tf.ones_like(seen), seen, num_words) > 0
        return {
            "words": words.to_tensor("", shape=dense_shape),
            "read": words.with_flat_values(read).to_tensor(False, shape=dense_shape),
            "num_words": tf.cast(words.row_lengths(), tf.int32),
            "explained": explained,
            "weights": tf.scatter_nd(pairs, pair_weights, shape),
            "scores": scores,
            # The baseline's probability (the sigmoid of its log-odds).
            "baseline_scores": tf.scatter_nd(pairs, tf.sigmoid(f[-2]), tf.shape(scores)),
            # What the weights add up to: log_odds - baseline_log_odds (exact where a
            # float32 probability has rounded to 1).
            "log_odds": tf.scatter_nd(pairs, f[-1], tf.shape(scores)),
            "baseline_log_odds": tf.scatter_nd(pairs, f[-2], tf.shape(scores)),
        }
