"""Dataset analysis: documents, words and WordPiece tokens per class; a suggested --seq-len.

Words are whitespace-separated tokens (Python's `str.split()`), so the figures
match the BBC notebook's table. Token counts use the chosen model's tokenizer
(and `--clean` steps, when given) and include [CLS] and [SEP]: a document is
truncated at `seq_len` when its count exceeds `seq_len`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bertclf.config.model import SPECIAL_TOKENS, ModelConfig, text_tokens
from bertclf.data.datasets import Examples, read_labelled
from bertclf.data.labels import LabelFormat
from bertclf.fileio import write_json
from bertclf.model import encoders

logger = logging.getLogger(__name__)

CUTS = (64, 128, 256, 512)
COVERAGE = 0.90  # the suggested --seq-len keeps at least this share of documents whole


def word_stats(words: np.ndarray) -> dict[str, float]:
    return {"max": int(words.max()), "mean": float(words.mean()), "median": float(np.median(words))}


def token_stats(tokens: np.ndarray) -> dict[str, Any]:
    return {
        "p50": float(np.percentile(tokens, 50)),
        "p90": float(np.percentile(tokens, 90)),
        "p95": float(np.percentile(tokens, 95)),
        "max": int(tokens.max()),
        "truncated_share": {str(c): float(np.mean(tokens > c)) for c in CUTS},
    }


def suggest_seq_len(tokens: np.ndarray) -> dict[str, Any]:
    """Smallest of 64/128/256/512 that holds at least 90% of documents whole."""
    for cut in CUTS:
        coverage = float(np.mean(tokens <= cut))
        if coverage >= COVERAGE:
            return {"seq_len": cut, "coverage": coverage}
    return {
        "seq_len": CUTS[-1],
        "coverage": float(np.mean(tokens <= CUTS[-1])),
        "note": f"no length up to {CUTS[-1]} (BERT's limit) keeps {COVERAGE:.0%} whole",
    }


def suggest_long(tokens: np.ndarray) -> dict[str, Any] | None:
    """`--long chunk` when even 512 tokens would cut more than 10% of the documents.

    With the defaults (`--seq-len` 128, stride `seq_len - 2`, `--max-chunks` 8): the
    windows a document needs, which multiply its training and serving cost.
    """
    if not len(tokens) or np.mean(tokens > CUTS[-1]) <= 1 - COVERAGE:
        return None
    defaults = ModelConfig()
    room, cap = text_tokens(defaults.seq_len), defaults.max_chunks
    # windows to read all of it: its text tokens (the count includes [CLS] and [SEP])
    needed = np.maximum(np.ceil((tokens - SPECIAL_TOKENS) / room), 1)
    return {
        "long": "chunk",
        "seq_len": defaults.seq_len,
        "max_chunks": cap,
        "windows_mean": float(np.minimum(needed, cap).mean()),
        "cut_share": float(np.mean(needed > cap)),  # still cut after `cap` windows
    }


def count_tokens(texts: list[str], model: str, clean: tuple[str, ...] = ()) -> np.ndarray:
    """WordPiece tokens per text, [CLS] and [SEP] included, uncapped: [n] int."""
    from bertclf.model.preprocessing import TextPreprocessor, token_lengths

    tokenizer = encoders.load_tokenizer(encoders.resolve(model))
    pre = TextPreprocessor(tokenizer, sequence_length=512, clean=clean)
    return token_lengths(pre, texts, cap=False)


@dataclass
class Analysis:
    """The figures of `bertclf analyze`; `summary` is what summary.json holds."""

    summary: dict[str, Any]
    words: dict[str, np.ndarray]
    tokens: np.ndarray


def analyze_examples(ex: Examples, model: str, clean: tuple[str, ...] = ()) -> Analysis:
    words_all = np.array([len(t.split()) for t in ex.texts])
    tokens_all = count_tokens(ex.texts, model, clean)
    labels = np.array(ex.labels)
    per_class, words_by_class = {}, {}
    for i, name in enumerate(ex.label_names):
        # Multi-label: a text counts under every label it carries.
        mask = labels[:, i] == 1 if ex.multilabel else labels == i
        words_by_class[name] = words_all[mask]
        per_class[name] = {
            "documents": int(mask.sum()),
            "words": word_stats(words_all[mask]) if mask.any() else None,
            "tokens": token_stats(tokens_all[mask]) if mask.any() else None,
        }
    summary = {
        "model": model,
        "clean": list(clean),
        "documents": len(ex),
        "classes": per_class,
        "overall": {"words": word_stats(words_all), "tokens": token_stats(tokens_all)},
        "non_utf8_files": ex.report.non_utf8,
        "empty_files": ex.report.empty,
        "suggested": suggest_seq_len(tokens_all),
        "long": suggest_long(tokens_all),
    }
    if ex.multilabel:
        sizes = labels.sum(axis=1) if len(ex) else np.zeros(0)
        summary["multilabel"] = {
            "without_label": int((sizes == 0).sum()),
            "several_labels": int((sizes > 1).sum()),
            "labels_per_text": float(sizes.mean()) if len(ex) else 0.0,
        }
    return Analysis(summary, words_by_class, tokens_all)


def analyze(
    data: str | Path,
    model: str = encoders.DEFAULT_MODEL,
    out: str | Path | None = None,
    text_field: str = "text",
    label_field: str | LabelFormat = "label",
    clean: tuple[str, ...] = (),
) -> Analysis:
    """`bertclf analyze`: figures for DATA, and summary.json + PNGs in `out` if given.

    Example:
    >>> a = analyze("examples/demo_data")  # doctest: +SKIP
    >>> a.summary["classes"]["billing"]["documents"]
    32
    """
    ex = read_labelled(data, text_field, label_field)
    result = analyze_examples(ex, model, clean)
    if out is not None:
        from bertclf.evaluation.figures import plot_token_counts, plot_word_counts

        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        write_json(out / "summary.json", result.summary)
        plot_word_counts(result.words, out / "word_counts.png")
        plot_token_counts(result.tokens, result.summary["suggested"], out / "token_counts.png")
    return result


def format_analysis(s: dict[str, Any]) -> str:
    """The terminal table."""
    rows = [*s["classes"].items(), ("(all)", {"documents": s["documents"], **s["overall"]})]
    width = max(10, *(len(name) for name, _ in rows))
    kind = "label" if "multilabel" in s else "class"
    head = (
        f"{kind:<{width}} {'docs':>6} {'words max':>9} {'mean':>7} {'median':>7} "
        f"{'tok p50':>7} {'p90':>6} {'p95':>6} {'max':>6} "
        + " ".join(f"{'>' + str(c):>6}" for c in CUTS)
    )
    lines = [head, "-" * len(head)]
    for name, c in rows:
        w, t = c["words"], c["tokens"]
        if w is None:
            lines.append(f"{name:<{width}} {c['documents']:>6}")
            continue
        lines.append(
            f"{name:<{width}} {c['documents']:>6} {w['max']:>9} {w['mean']:>7.1f} "
            f"{w['median']:>7.1f} {t['p50']:>7.0f} {t['p90']:>6.0f} {t['p95']:>6.0f} "
            f"{t['max']:>6} " + " ".join(f"{t['truncated_share'][str(k)]:>6.1%}" for k in CUTS)
        )
    sug = s["suggested"]
    if "multilabel" in s:
        m = s["multilabel"]
        lines += [
            "",
            f"multi-label: a text counts under each of its labels; {m['labels_per_text']:.2f} "
            f"labels per text, {m['without_label']} without a label, "
            f"{m['several_labels']} with several",
        ]
    lines += [
        "",
        "words: whitespace-separated; tokens: WordPiece incl. [CLS]/[SEP]; "
        ">N: share truncated at --seq-len N",
        f"not UTF-8: {len(s['non_utf8_files'])}  empty: {len(s['empty_files'])}",
        f"suggested --seq-len {sug['seq_len']} (keeps {sug['coverage']:.1%} of documents whole"
        + (f"; {sug['note']})" if "note" in sug else ")"),
    ]
    long = s.get("long")
    if long:
        lines.append(
            f"to read whole documents: --long chunk (at --seq-len {long['seq_len']}: "
            f"{long['windows_mean']:.1f} windows a document on average, each costing a "
            f"{long['seq_len']}-token text; {long['cut_share']:.1%} still cut after "
            f"--max-chunks {long['max_chunks']}); without it the default --truncate "
            "head_tail keeps their start and end; see README, 'Long documents'"
        )
    return "\n".join(lines)
