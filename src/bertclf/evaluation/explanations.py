"""The report's "Why the model said it": explained mistakes, explained successes, and the
words that drive each class over the validation split (`Predictor.explain`).

Each explained text is shown word by word: the background's strength follows the
weight (green raises the explained label's probability, red lowers it), and, for
readers without colour, the three strongest words are bold and followed by their
weight in brackets. The class table is where spurious cues show: a name, a signature,
a project term among the words that most often drive a class.

Cost: an explanation costs about 34 predictions (`bertclf.model.attribution.STEPS` + 2),
so the report explains a bounded number of texts (`MISTAKES` + `AGGREGATED`, 53 at most):
0.38 s a civility-gh sentence and 0.96 s a BBC article on the EPYC of BENCHMARKS.md, so
20-50 s a report. RUN/explanations.jsonl keeps the explanations the report shows.
"""

from __future__ import annotations

import html
import logging
import random
from collections import defaultdict
from typing import Any

logger = logging.getLogger(__name__)

MISTAKES = 5  # the most confident mistakes, explained
CORRECT = 5  # correct validation predictions, drawn at random (seed 0)
# Validation texts whose explanations are pooled into the class table: enough for a cue
# that drives a tenth of a class's texts to show several times, at a bounded cost.
AGGREGATED = 48
TOP = 3  # strongest words of a text: bold in the page, counted in the class table


def explain_for_report(run, texts: list[str], labels: list, mistakes: list[tuple[str, str]]):
    """(rows shown, class table) for the validation `texts` and `labels` and the report's
    mistakes ((true label, text), most confident first). Single-label runs only;
    multi-label: (None, None)."""
    if run.thresholds is not None:
        return None, None  # a label set per text: the per-label view is predict's
    names = run.label_names
    order = list(range(len(texts)))
    random.Random(0).shuffle(order)
    pooled = order[:AGGREGATED]
    shown_mistakes = mistakes[:MISTAKES]
    chosen = [text for _, text in shown_mistakes] + [texts[i] for i in pooled]
    explained = run.explain(chosen)
    mistake_rows = [
        {**row, "true": true, "text": text, "kind": "mistake"}
        for (true, text), row in zip(shown_mistakes, explained, strict=False)
    ]
    pooled_rows = explained[len(shown_mistakes) :]
    correct = [
        {**row, "true": row["label"], "text": texts[i], "kind": "correct"}
        for i, row in zip(pooled, pooled_rows, strict=True)
        if names[int(labels[i])] == row["label"]
    ][:CORRECT]
    return mistake_rows + correct, class_words(pooled_rows)


def class_words(rows: list[dict[str, Any]], per_class: int = 10) -> dict[str, list]:
    """label -> [(word, texts where it is among the TOP strongest, mean weight there)],
    most frequent first: the words that most often drive each predicted class."""
    counts: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for row in rows:
        strongest = sorted(row["explanation"], key=lambda p: -p[1])[:TOP]
        for word, weight in strongest:
            if weight > 0:
                counts[row["label"]][word.lower()].append(weight)
    table = {}
    for label, words in sorted(counts.items()):
        ranked = sorted(words.items(), key=lambda kv: (-len(kv[1]), -sum(kv[1])))
        table[label] = [(w, len(v), sum(v) / len(v)) for w, v in ranked[:per_class]]
    return table


def highlighted(pairs: list[list], limit: int = 120) -> str:
    """Words as HTML spans: background by weight, the TOP strongest bold with their
    weight in brackets (readable without colour). At most `limit` words."""
    if not pairs:
        return "<em>(no words)</em>"
    scale = max(abs(w) for _, w in pairs) or 1.0
    strongest = {i for i, _ in sorted(enumerate(pairs), key=lambda p: -p[1][1])[:TOP]}
    spans = []
    for i, (word, weight) in enumerate(pairs[:limit]):
        alpha = min(abs(weight) / scale, 1.0) * 0.6
        colour = "46,160,67" if weight >= 0 else "207,34,46"
        text = html.escape(word)
        if i in strongest and weight > 0:
            text = f"<b>{text}</b> [{weight:+.2f}]"
        spans.append(
            f'<span style="background:rgba({colour},{alpha:.2f})" '
            f'title="{weight:+.4f}">{text}</span>'
        )
    more = f" &hellip; ({len(pairs) - limit} more words)" if len(pairs) > limit else ""
    return " ".join(spans) + more


def section_html(rows: list[dict[str, Any]] | None, table: dict[str, list] | None) -> str:
    """The report's section; "" for a multi-label run (explain with `predict --explain`)."""
    if rows is None:
        return ""
    head = "<h2>Why the model said it</h2>"
    note = (
        f"<p>Integrated gradients (<code>bertclf predict --explain</code>): each word's "
        f"share of the explained label's probability against the text with its words "
        f"removed. Green raises it, red lowers it; the {TOP} strongest words are bold, "
        f"their weight in brackets. Attributions show what the model used, not what "
        f"causes the label: a name or a signature among them is a cue to fix in the "
        f"data.</p>"
    )
    body = ["<table><tr><th>kind</th><th>true</th><th>predicted</th><th>text</th></tr>"]
    for row in rows:
        body.append(
            f"<tr><td>{row['kind']}</td><td>{html.escape(str(row['true']))}</td>"
            f"<td>{html.escape(row['label'])} ({row['score']:.2f})</td>"
            f"<td>{highlighted(row['explanation'])}</td></tr>"
        )
    body.append("</table>")
    words = [
        "<p>The words that most often drive each class, over "
        f"{AGGREGATED} validation texts at most: in how many of the texts predicted as the "
        f"class the word was among the {TOP} strongest, and its mean weight there.</p>",
        "<table><tr><th>class</th><th>words (texts, mean weight)</th></tr>",
    ]
    for label, ranked in table.items():
        cells = ", ".join(f"{html.escape(w)} ({n}, {m:+.2f})" for w, n, m in ranked)
        words.append(f"<tr><td>{html.escape(label)}</td><td>{cells}</td></tr>")
    words.append("</table>")
    return head + note + "".join(body) + "".join(words)
