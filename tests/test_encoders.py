import json
import time

import numpy as np
import pytest

from bertclf.errors import EncoderError
from bertclf.model import encoders


def test_default_is_the_offline_package():
    spec = encoders.resolve("minilm-l6")
    assert spec.kind == "package"
    assert (encoders.offline_model_dir() / "config.json").is_file()


def test_seed_notebook_names_map_to_hugging_face():
    spec = encoders.resolve("small_bert/bert_en_uncased_L-4_H-512_A-8")
    assert spec == encoders.EncoderSpec(
        "small_bert/bert_en_uncased_L-4_H-512_A-8", "hf://google/bert_uncased_L-4_H-512_A-8", "hub"
    )
    assert encoders.resolve("bert_en_uncased_L-12_H-768_A-12").source == (
        "hf://google-bert/bert-base-uncased"
    )


def test_hub_names_fail_fast_and_say_how_to_use_a_local_directory():
    start = time.perf_counter()
    with pytest.raises(EncoderError, match=r"not reachable.*local directory"):
        encoders.load(encoders.resolve("small_bert/bert_en_uncased_L-2_H-128_A-2"))
    assert time.perf_counter() - start < 10


@pytest.mark.parametrize(
    "name,message",
    [
        ("no-such-model", "not a known name"),
        ("./missing/dir", "no such directory"),
        ("electra_small", "not a BERT-architecture encoder"),
    ],
)
def test_unknown_names(name, message):
    with pytest.raises(EncoderError, match=message):
        encoders.resolve(name)


def test_directory_that_is_not_a_bert_checkpoint(tmp_path):
    with pytest.raises(EncoderError, match="no config.json"):
        encoders.load(encoders.resolve(str(tmp_path)))
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "gpt2"}))
    with pytest.raises(EncoderError, match="model_type is 'gpt2', not 'bert'"):
        encoders.load(encoders.resolve(str(tmp_path)))
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "bert"}))
    (tmp_path / "vocab.txt").write_text("[PAD]\n")
    with pytest.raises(EncoderError, match="no model.safetensors"):
        encoders.load(encoders.resolve(str(tmp_path)))


def test_hugging_face_directory_copy_loads(tmp_path):
    """A plain HF checkpoint folder (here: a copy of the packaged one) loads as --model DIR."""
    import shutil

    src = encoders.offline_model_dir()
    for name in ("config.json", "model.safetensors", "vocab.txt"):  # no tokenizer_config.json
        shutil.copy(src / name, tmp_path / name)
    backbone, tokenizer = encoders.load(encoders.resolve(str(tmp_path)))
    assert backbone.num_layers == 6 and backbone.hidden_dim == 384
    assert tokenizer.lowercase is True  # inferred from the all-lower-case vocabulary
    assert np.asarray(tokenizer("Hello")).tolist() == [7592]


def test_known_models_lists_offline_availability():
    rows = {r["name"]: r for r in encoders.known_models()}
    assert rows["minilm-l6"]["offline"] == "yes"
    assert rows["small_bert/bert_en_uncased_L-4_H-512_A-8"]["offline"] == "no"
    assert "bert_tiny_en_uncased" in rows


def test_reinitialize_top_layers_draws_only_the_top_layers_afresh():
    import keras_hub

    backbone = keras_hub.models.BertBackbone(
        200, num_layers=2, num_heads=2, hidden_dim=64, intermediate_dim=128
    )
    # Pretrained-looking weights: every variable away from its initial value.
    for v in backbone.weights:
        v.assign(np.full(v.shape, 0.5, "float32"))
    before = {v.path: np.array(v.numpy()) for v in backbone.weights}
    assert encoders.reinitialize_top_layers(backbone, 1, seed=3) == 16
    top = "transformer_layer_1/"
    for v in backbone.weights:
        value = v.numpy()
        if not v.path.startswith(top):  # embeddings, layer 0: untouched
            np.testing.assert_array_equal(value, before[v.path])
        elif v.path.endswith("kernel"):  # truncated normal, stddev 0.02 (cut at 2 stddev)
            assert np.abs(value).max() <= 0.04 + 1e-6
            assert 0.010 < value.std() < 0.02, (v.path, value.std())
        else:
            assert (value == (1.0 if v.path.endswith("gamma") else 0.0)).all(), v.path
    # Seeded: the same seed draws the same weights.
    kernels = [v.numpy() for v in backbone.weights if v.path.startswith(top)]
    encoders.reinitialize_top_layers(backbone, 1, seed=3)
    again = [v.numpy() for v in backbone.weights if v.path.startswith(top)]
    for a, b in zip(kernels, again, strict=True):
        np.testing.assert_array_equal(a, b)
    query, key = (
        backbone.get_layer("transformer_layer_1")._self_attention_layer._query_dense,
        backbone.get_layer("transformer_layer_1")._self_attention_layer._key_dense,
    )
    assert not np.array_equal(query.kernel.numpy(), key.kernel.numpy())  # one draw each
    assert encoders.reinitialize_top_layers(backbone, 0, seed=3) == 0
    with pytest.raises(EncoderError, match="--reinit-layers 3 is over the 2 transformer layers"):
        encoders.reinitialize_top_layers(backbone, 3, seed=3)


def test_reinit_layers_over_the_encoders_depth_is_one_line(tmp_path, tiny_data, tiny_encoder):
    from conftest import one_error_line, run_script

    out = tmp_path / "run"
    for value, needle in (
        ("2", "--reinit-layers 2 is over the 1 transformer layers"),
        ("-1", "--reinit-layers -1 is invalid"),
    ):
        proc = run_script(
            "train",
            str(tiny_data),
            "--out",
            str(out),
            "--model",
            tiny_encoder,
            "--seq-len",
            "32",
            "--reinit-layers",
            value,
        )
        assert needle in one_error_line(proc)
        assert not out.exists()
