"""The classifier: a keras-hub BERT backbone, pooling, dropout and a dense head."""

from __future__ import annotations

import keras
import tensorflow as tf

from bertclf.config.model import ModelConfig
from bertclf.model import encoders, fastops
from bertclf.model.preprocessing import TextPreprocessor


class BertClassifier(keras.Model):
    """BERT encoder -> pooled vector -> dropout -> dense logits.

    Args:
        backbone: a `keras_hub.models.BertBackbone`.
        num_labels: number of classes (>= 2).
        pooling: `mean` (mean of the last hidden states over real tokens) or
            `cls` (BERT's pooled [CLS] output, tanh(dense(h_cls))).
        dropout: dropout rate before the dense layer.
        head: `softmax` (num_labels logits), `sigmoid` (1 logit; binary only) or
            `multilabel` (num_labels logits, one independent sigmoid each).
        chunk_pool: windowed input ([batch, windows, width], `--long chunk`): a text's
            logits are the `mean` of its windows' logits, or each label's `max`.

    Whatever the head, `probabilities()` returns one column per label in label
    order, so a binary model can never report its labels inverted. Under
    `multilabel` a row does not sum to 1: each column is P(text has that label).

    Example:
    >>> import keras_hub
    >>> bb = keras_hub.models.BertBackbone(vocabulary_size=10, num_layers=1,
    ...     num_heads=2, hidden_dim=8, intermediate_dim=16)
    >>> clf = BertClassifier(bb, num_labels=3)
    >>> x = {"token_ids": tf.ones((2, 4), "int32"), "segment_ids": tf.zeros((2, 4), "int32"),
    ...      "padding_mask": tf.ones((2, 4), "bool")}
    >>> clf.probabilities(clf(x)).shape
    TensorShape([2, 3])
    """

    def __init__(
        self,
        backbone,
        num_labels: int,
        pooling: str = "mean",
        dropout: float = 0.1,
        head: str = "softmax",
        chunk_pool: str = "mean",
        **kwargs,
    ):
        super().__init__(**kwargs)
        if head == "sigmoid" and num_labels != 2:
            raise ValueError(f"head='sigmoid' needs exactly 2 labels, got {num_labels}")
        self.backbone = backbone
        if pooling == "mean":
            # BERT's pooler (tanh(dense(h_cls))) is unused: freeze it, so it gets no
            # optimizer slots and no "missing gradient" warnings.
            backbone.get_layer("pooled_dense").trainable = False
        self.num_labels = num_labels
        self.pooling = pooling
        self.head = head
        self.chunk_pool = chunk_pool
        self.dropout_rate = dropout
        self.dropout = keras.layers.Dropout(dropout, name="dropout", dtype="float32")
        units = 1 if head == "sigmoid" else num_labels  # multilabel: one logit per label
        # float32 logits even under a mixed-precision policy: softmax/log-loss need the range.
        self.classifier = keras.layers.Dense(units, name="classifier", dtype="float32")
        # Cheaper GELU and dropout kernels, for training and the export alike.
        fastops.install(self)

    def pool(self, inputs, training=False):
        """BERT inputs -> [batch, hidden] sentence vector.

        `inputs` may hold `token_embeddings` [batch, seq, hidden] in place of the token
        ids' embeddings (what integrated gradients interpolates, `bertclf.model.attribution`).
        """
        if "token_embeddings" in inputs:
            outputs = self.encode_embeddings(inputs)
        else:
            # Keys in the backbone's own order (tf.data and tf.function sort dict keys).
            keys = ("token_ids", "segment_ids", "padding_mask")
            outputs = self.backbone({k: inputs[k] for k in keys}, training=training)
        # float32 from here on, also under a bf16/fp16 policy: a sum over 512 tokens
        # in bf16 would lose most of its digits.
        if self.pooling == "cls":
            return tf.cast(outputs["pooled_output"], tf.float32)
        hidden = tf.cast(outputs["sequence_output"], tf.float32)  # [batch, seq, hidden]
        mask = tf.cast(inputs["padding_mask"], tf.float32)[:, :, None]  # [batch, seq, 1]
        total = tf.reduce_sum(hidden * mask, axis=1)  # [batch, hidden]
        count = tf.maximum(tf.reduce_sum(mask, axis=1), 1.0)
        return total / count

    def encode_embeddings(self, inputs):
        """The backbone's forward pass (inference) from given token embeddings.

        keras-hub's `BertBackbone` takes token ids only; this runs its own layers in its
        order (token + position + segment embeddings, layer norm, the transformer layers,
        the pooler) from `inputs["token_embeddings"]` [batch, seq, hidden] instead of the
        ids' lookup. Dropout is left out: it is the identity at inference.
        tests/test_explain.py checks it equals the backbone on the ids' own embeddings.
        """
        bb = self.backbone
        tokens = inputs["token_embeddings"]  # [batch, seq, hidden]
        x = bb.embeddings_add(
            (tokens, bb.position_embedding(tokens), bb.segment_embedding(inputs["segment_ids"]))
        )
        x = bb.embeddings_layer_norm(x)
        mask = tf.cast(inputs["padding_mask"], tf.int32)
        for layer in bb.transformer_layers:
            x = layer(x, padding_mask=mask)
        return {"sequence_output": x, "pooled_output": bb.pooled_dense(x[:, 0, :])}

    def token_embeddings(self, token_ids):
        """Token ids [..., seq] -> their embedding rows [..., seq, hidden] (float32)."""
        # The float32 table itself, not the layer's call: under a bf16 policy the call
        # rounds the rows to bf16, and the interpolation should start from the weights.
        table = self.backbone.token_embedding.embeddings
        return tf.gather(tf.cast(table, tf.float32), token_ids)

    def call(self, inputs, training=False):
        return self.logits_and_vectors(inputs, training)[0]

    def logits_and_vectors(self, inputs, training=False):
        """BERT inputs -> (logits [batch, num_labels] or [batch, 1], sentence vectors
        [batch, hidden]): the vectors are what the out-of-distribution score measures
        (`bertclf.model.calibration`), taken before dropout."""
        if inputs["padding_mask"].shape.rank == 3:  # --long chunk: [batch, windows, width]
            return self._text_logits(inputs, training)
        vectors = self.pool(inputs, training=training)
        x = self.dropout(vectors, training=training)
        return self.classifier(x), vectors

    def _text_logits(self, inputs, training):
        """Windows [b, C, w] -> logits [b, L] and vectors [b, hidden]: each used window
        encoded, their logits pooled per text (so the loss, and the batch, count texts,
        not windows): the mean, or with `chunk_pool="max"` each label's largest. A
        text's vector is the mean of its windows' vectors."""
        shape = tf.shape(inputs["padding_mask"])
        # [b*C, w] (token_embeddings: [b*C, w, hidden])
        flat = {k: tf.reshape(v, tf.concat([[-1], tf.shape(v)[2:]], 0)) for k, v in inputs.items()}
        used = tf.reduce_any(flat["padding_mask"], axis=-1)  # [b*C]; unused: all padding
        # Gathered by position rather than with tf.boolean_mask, the same rows: tf2onnx's
        # lowering of boolean_mask fails on these shapes at run time (the ONNX export).
        index = tf.where(used)[:, 0]  # [n] used windows' positions in [b*C]
        text = tf.gather(tf.repeat(tf.range(shape[0]), shape[1]), index)  # [n]
        windows = {k: tf.gather(v, index) for k, v in flat.items()}  # [n, w]
        vectors = self.pool(windows, training=training)  # [n, hidden]
        logits = self.classifier(self.dropout(vectors, training=training))  # [n, L]
        # Every text has a used window ([CLS] [SEP] at least), so no segment is empty.
        pool = (
            tf.math.unsorted_segment_max
            if self.chunk_pool == "max"
            else tf.math.unsorted_segment_mean
        )
        return pool(logits, text, shape[0]), tf.math.unsorted_segment_mean(vectors, text, shape[0])

    def probabilities(self, logits):
        """Logits -> [batch, num_labels] probabilities, columns in label order."""
        logits = tf.cast(logits, tf.float32)
        if self.head == "sigmoid":
            p1 = tf.sigmoid(logits)  # [batch, 1]: P(label 1)
            return tf.concat([1.0 - p1, p1], axis=-1)
        if self.head == "multilabel":
            return tf.sigmoid(logits)  # [batch, num_labels], independent per label
        return tf.nn.softmax(logits, axis=-1)

    def per_example_loss(self, labels, logits, class_weights=None):
        """Cross-entropy per example: [batch] float32, times its label's weight if given.

        Multilabel: the binary cross-entropy of each label, averaged over the labels
        (as Keras' BinaryCrossentropy and PyTorch's BCEWithLogitsLoss average);
        `class_weights` then weigh each label's positive term (PyTorch's pos_weight).

        Args:
            labels: [batch] int class ids, or (multilabel) [batch, num_labels] 0/1.
            logits: the model's output.
            class_weights: optional [num_labels] loss weight of each class (multilabel:
                of each label's positives).
        """
        logits = tf.cast(logits, tf.float32)
        if self.head == "multilabel":
            targets = tf.cast(labels, tf.float32)  # [batch, num_labels]
            if class_weights is None:
                loss = tf.nn.sigmoid_cross_entropy_with_logits(labels=targets, logits=logits)
            else:
                loss = tf.nn.weighted_cross_entropy_with_logits(
                    labels=targets, logits=logits, pos_weight=tf.cast(class_weights, tf.float32)
                )
            return tf.reduce_mean(loss, axis=-1)  # [batch]
        if self.head == "sigmoid":
            loss = tf.nn.sigmoid_cross_entropy_with_logits(
                labels=tf.cast(labels[:, None], tf.float32), logits=logits
            )[:, 0]
        else:
            loss = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits)
        if class_weights is not None:
            loss = loss * tf.gather(tf.cast(class_weights, tf.float32), labels)
        return loss

    def head_variables(self):
        """The classifier layer's variables (kernel and bias)."""
        return list(self.classifier.trainable_variables)

    def get_config(self):
        return {
            **super().get_config(),
            "backbone": keras.layers.serialize(self.backbone),
            "num_labels": self.num_labels,
            "pooling": self.pooling,
            "dropout": self.dropout_rate,
            "head": self.head,
            "chunk_pool": self.chunk_pool,
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["backbone"] = keras.layers.deserialize(config["backbone"])
        return cls(**config)


def build_classifier(
    backbone, tokenizer, config: ModelConfig, num_labels: int, multilabel: bool = False
):
    """The one place a (preprocessor, classifier) pair is made from a `ModelConfig`.

    Training builds it around a freshly loaded encoder, loading a run around the
    encoder that config.json describes; both get the same layers and the same checks.

    Args:
        backbone: a `keras_hub.models.BertBackbone`.
        tokenizer: its `keras_hub.models.BertTokenizer`.
        config: pooling, dropout, head, cleaning, truncation and `seq_len`.
        num_labels: number of classes (labels).
        multilabel: one sigmoid per label (`--task multilabel`) instead of `config.head`.

    Returns:
        (TextPreprocessor, BertClassifier), the classifier built (weights created).
    """
    encoders.check_seq_len(config.model, config.seq_len, backbone.max_sequence_length)
    preprocessor = TextPreprocessor(
        tokenizer,
        config.seq_len,
        clean=config.clean,
        truncate=config.truncate,
        long=config.long,
        stride=config.stride,
        max_chunks=config.max_chunks,
    )
    head = "multilabel" if multilabel else config.head
    model = BertClassifier(
        backbone,
        num_labels,
        pooling=config.pooling,
        dropout=config.dropout,
        head=head,
        chunk_pool=config.chunk_pool,
    )
    model(preprocessor(tf.constant(["build"])))
    return preprocessor, model
