import keras_hub
import numpy as np
import pytest
import tensorflow as tf

from bertclf.model.preprocessing import TextCleaner, TextPreprocessor, head_tail_sizes

EMAIL = (
    "On Tue, 30 Jan 2018, Igor wrote:\n"
    "> please apply\n"
    ">> older quote\n"
    "This patch is NOT acceptable, sorry.\n"
    "Thanks,\n"
    "-- \n"
    "Jon Smith\n"
    "Kernel hacker"
)


def clean(steps, text):
    return TextCleaner(steps=steps)(tf.constant([text])).numpy()[0].decode()


def test_no_steps_is_identity():
    assert clean((), "  Keep  THIS\n> as is ") == "  Keep  THIS\n> as is "


def test_email_preset():
    assert clean(("email",), EMAIL) == "This patch is NOT acceptable, sorry. Thanks,"


def test_notebook_steps():
    assert clean(("lower",), "HeLLo ÄÖ") == "hello äö"
    assert clean(("letters",), "a1b2, c-d!") == "a b c d"
    assert clean(("stopwords",), "This is not the way I do it") == "way"
    assert (
        clean(("email", "lower", "letters", "stopwords"), EMAIL) == "patch acceptable sorry thanks"
    )


@pytest.fixture(scope="module")
def tokenizer():
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "quick", "fox", "jumped", "."]
    return keras_hub.models.BertTokenizer(vocabulary=vocab, lowercase=True)


def test_pack_shapes_and_mask(tokenizer):
    pre = TextPreprocessor(tokenizer, sequence_length=8)
    out = pre(tf.constant(["The quick fox.", "the fox jumped the quick fox jumped the fox ."]))
    ids = out["token_ids"].numpy()
    assert ids.shape == (2, 8)
    assert ids[0].tolist() == [2, 5, 6, 7, 9, 3, 0, 0]
    assert ids[1, 0] == 2 and ids[1, -1] == 3  # truncated, [SEP] kept
    np.testing.assert_array_equal(out["padding_mask"].numpy(), ids != 0)
    assert out["segment_ids"].numpy().sum() == 0


def test_waterfall_equals_round_robin_for_one_segment(tokenizer):
    texts = tf.constant(["the quick fox jumped . " * 5, "fox", ""])
    a = TextPreprocessor(tokenizer, 12, truncate="waterfall")(texts)
    b = TextPreprocessor(tokenizer, 12, truncate="round_robin")(texts)
    np.testing.assert_array_equal(a["token_ids"].numpy(), b["token_ids"].numpy())


def test_cleaning_happens_inside_the_layer(tokenizer):
    pre = TextPreprocessor(tokenizer, 8, clean=("stopwords",))
    ids = pre(tf.constant(["The quick fox"]))["token_ids"].numpy()[0]
    assert ids.tolist()[:4] == [2, 6, 7, 3]  # "the" removed before tokenizing


def test_runs_inside_tf_data(tokenizer):
    pre = TextPreprocessor(tokenizer, 6)
    ds = tf.data.Dataset.from_tensor_slices(["the fox", "quick"]).batch(2).map(pre)
    batch = next(iter(ds))
    assert batch["token_ids"].shape == (2, 6)


def test_head_tail_keeps_the_start_and_the_end(tokenizer):
    from bertclf.data.datasets import Examples
    from bertclf.training.pipeline import EpochDataset

    assert head_tail_sizes(128) == (31, 95) and head_tail_sizes(512) == (128, 382)
    words = ["the", "quick", "fox", "jumped", "."]  # ids 5..9
    long_text = " ".join(words[i % 5] for i in range(23))  # 23 tokens: 5 6 7 8 9 5 ...
    texts = [long_text, "the quick fox", "", " ".join(words * 2)]  # 10 tokens: fits in 10
    pre = TextPreprocessor(tokenizer, 12, truncate="head_tail")
    head, tail = head_tail_sizes(12)  # 2 and 8 of a 10-token window
    ids = pre(tf.constant(texts))["token_ids"].numpy()
    expected = [5 + i % 5 for i in range(23)]
    assert ids[0].tolist() == [2, *expected[:head], *expected[-tail:], 3]
    # Texts that fit are packed exactly as waterfall packs them.
    first = TextPreprocessor(tokenizer, 12)(tf.constant(texts))["token_ids"].numpy()
    np.testing.assert_array_equal(ids[1:], first[1:])
    assert ids[0].tolist() != first[0].tolist()
    # Training's pipeline (tokenized once, then gathered) cuts the same way, in graph.
    examples = Examples(texts, [0, 1, 0, 1], ["a", "b"], ["x"] * 4)
    dataset = EpochDataset(examples, pre, batch_size=4, bucketing=False)
    features, _ = next(iter(dataset()))
    np.testing.assert_array_equal(features["token_ids"].numpy(), ids)


def test_chunk_windows_cover_a_long_text_with_the_stride_and_cap(tokenizer):
    words = ["the", "quick", "fox", "jumped", "."]  # ids 5..9
    tokens = [5 + i % 5 for i in range(23)]
    long_text = " ".join(words[i % 5] for i in range(23))
    # Windows of 6 tokens (seq-len 8) every 4 tokens, at most 4: starts 0, 4, 8, 12.
    pre = TextPreprocessor(tokenizer, 8, long="chunk", stride=4, max_chunks=4)
    out = pre(tf.constant([long_text, "the fox", "", " ".join(words[:4] * 2)]))
    ids, mask = out["token_ids"].numpy(), out["padding_mask"].numpy()
    assert ids.shape == (4, 4, 8)
    for c, start in enumerate((0, 4, 8, 12)):  # the cap: tokens past 12 + 6 = 18 are cut
        assert ids[0, c].tolist() == [2, *tokens[start : start + 6], 3]
    # A short text: one window, packed as without --long; the other windows unused.
    plain = TextPreprocessor(tokenizer, 8)(tf.constant(["the fox", ""]))["token_ids"].numpy()
    np.testing.assert_array_equal(ids[1, 0], plain[0])
    np.testing.assert_array_equal(ids[2, 0], plain[1])  # an empty text: [CLS] [SEP]
    assert not mask[1, 1:].any() and not mask[2, 1:].any() and not ids[1, 1:].any()
    # 8 tokens: window 0 has 0..5, window 1 (start 4) the rest; window 2 is not needed.
    assert mask[3].sum(axis=1).tolist() == [8, 6, 0, 0]
    # Without overlap (the default stride, 6) the same text needs 23 / 6 -> 4 windows.
    default = TextPreprocessor(tokenizer, 8, long="chunk", max_chunks=8)
    used = default(tf.constant([long_text]))["padding_mask"].numpy()[0].any(axis=1)
    assert default.stride == 6 and used.tolist() == [True] * 4 + [False] * 4
    # Training's pipeline (tokenized once, then gathered and trimmed) gives the same.
    from bertclf.data.datasets import Examples
    from bertclf.training.pipeline import EpochDataset

    texts = [long_text, "the fox", "", " ".join(words[:4] * 2)]
    examples = Examples(texts, [0, 1, 0, 1], ["a", "b"], ["x"] * 4)
    for bucketing in (False, True):
        dataset = EpochDataset(examples, pre, batch_size=4, bucketing=bucketing, bucket=4)
        features, _ = next(iter(dataset()))
        np.testing.assert_array_equal(features["token_ids"].numpy(), ids)  # 8 = 2 buckets
