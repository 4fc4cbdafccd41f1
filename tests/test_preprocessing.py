import keras_hub
import numpy as np
import pytest
import tensorflow as tf

from bertclf.preprocessing import TextCleaner, TextPreprocessor

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
