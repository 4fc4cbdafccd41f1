"""`ModelConfig`: the encoder, its input pipeline and the classifier head.

Part of a run's configuration (`bertclf.config.RunConfig`). Also the one place that
says how many of a window's tokens hold text (`text_tokens`). No TensorFlow.
"""

from __future__ import annotations

from dataclasses import dataclass

from bertclf.config.fields import check, option

CLEAN_STEPS = ("email", "lower", "letters", "stopwords")
POOLINGS = ("mean", "cls")
HEADS = ("softmax", "sigmoid")
TRUNCATIONS = ("waterfall", "round_robin", "head_tail")
LONG_MODES = ("truncate", "chunk")
CHUNK_POOLS = ("mean", "max")
SPECIAL_TOKENS = 2  # [CLS] and [SEP]: every window of seq_len tokens holds seq_len - 2 of text


def text_tokens(seq_len: int) -> int:
    """How many WordPiece tokens of a text fit a window of `seq_len` ([CLS] and [SEP] aside).

    >>> text_tokens(128)
    126
    """
    return seq_len - SPECIAL_TOKENS


@dataclass(frozen=True)
class ModelConfig:
    """The encoder, its input pipeline and the classifier head.

    Args:
        model: encoder name or directory (see `bertclf models`).
        seq_len: tokens per text, [CLS] and [SEP] included (8..512).
        pooling: `mean` (masked mean of the last hidden states) or `cls`
            (BERT's pooled [CLS] output).
        dropout: dropout rate before the dense layer.
        head: `softmax` (one logit per label) or `sigmoid` (one logit, two labels).
        clean: cleaning steps applied inside the model, in this fixed order:
            email, lower, letters, stopwords.
        truncate: how a long text is cut. `head_tail` keeps the first quarter and the
            last three quarters of the window (Sun et al. 2019); `waterfall` keeps its
            first tokens; both need no TF Text op newer than 2.12 (TF Serving 2.19 loads
            them). `round_robin` also keeps the first tokens but emits RoundRobinTrim.
            None (default): `head_tail`. With `long="chunk"`, whose windows read the
            text from its start, None and `head_tail` become `waterfall`.
        long: a text longer than `seq_len`: `truncate` (cut per `truncate`) or `chunk`
            (windows of `seq_len` tokens, each encoded, logits averaged per text).
        stride: `chunk`: tokens between window starts (default `seq_len - 2`: none
            overlap, so every token is read once and the cost grows with the length).
        max_chunks: `chunk`: windows a text at most (tokens past them are cut).
        chunk_pool: `chunk`: how a text's window logits become its logits: `mean`
            (every window counts and gets gradient) or `max` (per label, its strongest
            window; for labels that one passage decides).
    """

    model: str = option("minilm-l6", "encoder name or directory (see 'bertclf models')")
    seq_len: int = option(128, "tokens per text, [CLS] and [SEP] included (8..512)")
    pooling: str = option(
        "mean", "sentence vector: mean of the last hidden states, or [CLS]", choices=POOLINGS
    )
    dropout: float = option(0.1, "dropout rate before the dense layer")
    head: str = option(
        "softmax", "softmax: one logit per label; sigmoid: one logit, binary only", choices=HEADS
    )
    clean: tuple[str, ...] = option(
        (),
        f"cleaning inside the model: none, or comma-separated {', '.join(CLEAN_STEPS)}",
        type=lambda v: parse_clean(v),
        show="none",
    )
    truncate: str | None = option(
        None,
        "cut of a long text: head_tail (first quarter and last three quarters of the "
        "window), waterfall (its first tokens), round_robin (the same, needs a newer "
        "server than 2.19) (default: head_tail; waterfall with --long chunk)",
        choices=TRUNCATIONS,
    )
    long: str = option(
        "truncate",
        "a text longer than --seq-len: truncate (per --truncate), or chunk (windows of "
        "--seq-len tokens, each encoded, their logits averaged: the whole text is read)",
        choices=LONG_MODES,
    )
    stride: int | None = option(
        None, "--long chunk: tokens between window starts (default: seq-len - 2)", type=int
    )
    max_chunks: int = option(8, "--long chunk: windows a text at most (the rest is cut)")
    chunk_pool: str = option(
        "mean",
        "--long chunk: a text's logits are the mean of its windows', or per label their max",
        choices=CHUNK_POOLS,
    )

    def __post_init__(self) -> None:
        # config.json records the cut used. --long chunk's windows read a text from its
        # start, so there the default and head_tail (carried over by a
        # dataclasses.replace of a default config) are waterfall; the CLI refuses
        # --long chunk --truncate head_tail as typed (check_cut).
        if self.truncate is None or (self.long == "chunk" and self.truncate == "head_tail"):
            cut = "waterfall" if self.long == "chunk" else "head_tail"
            object.__setattr__(self, "truncate", cut)
        check(8 <= self.seq_len <= 512, "--seq-len", self.seq_len, "use a value in 8..512")
        check(self.long in LONG_MODES, "--long", self.long, f"choose one of {LONG_MODES}")
        check(self.max_chunks >= 1, "--max-chunks", self.max_chunks, "use 1 or more")
        check(self.chunk_pool in CHUNK_POOLS, "--chunk-pool", self.chunk_pool, f"{CHUNK_POOLS}")
        if self.long == "truncate":
            check(self.stride is None, "--stride", self.stride, "it needs --long chunk")
            check(self.chunk_pool == "mean", "--chunk-pool", self.chunk_pool, "add --long chunk")
        else:
            room = text_tokens(self.seq_len)
            stride = room if self.stride is None else self.stride
            check(1 <= stride <= room, "--stride", stride, f"use 1..{room} (--seq-len - 2)")
            object.__setattr__(self, "stride", stride)  # config.json records the value used
        check(self.pooling in POOLINGS, "--pooling", self.pooling, f"choose one of {POOLINGS}")
        check(0.0 <= self.dropout < 1.0, "--dropout", self.dropout, "use a value in [0, 1)")
        check(self.head in HEADS, "--head", self.head, f"choose one of {HEADS}")
        check(self.truncate in TRUNCATIONS, "--truncate", self.truncate, f"one of {TRUNCATIONS}")
        for step in self.clean:
            check(step in CLEAN_STEPS, "--clean", step, f"use 'none' or a list of {CLEAN_STEPS}")
        # Canonical order, so 'lower,email' and 'email,lower' are the same model.
        canonical = tuple(s for s in CLEAN_STEPS if s in self.clean)
        object.__setattr__(self, "clean", canonical)


def parse_clean(value: str) -> tuple[str, ...]:
    """Parse `--clean` ('none', or a comma-separated list of steps)."""
    value = value.strip().lower()
    if value in ("", "none"):
        return ()
    steps = tuple(s.strip() for s in value.split(",") if s.strip())
    for step in steps:
        check(step in CLEAN_STEPS, "--clean", step, f"use 'none' or a list of {CLEAN_STEPS}")
    return steps


def check_cut(long: str | None, truncate: str | None) -> None:
    """Refuse `--long chunk --truncate head_tail` as the user typed it (ConfigError)."""
    check(
        not (long == "chunk" and truncate == "head_tail"),
        "--truncate",
        truncate,
        "--long chunk reads every token: drop --truncate head_tail",
    )
