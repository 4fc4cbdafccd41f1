"""`PredictConfig`: `bertclf predict`, texts in, labels and probabilities out."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from bertclf.config.data import TEXT_FIELD
from bertclf.config.fields import check, option
from bertclf.errors import ConfigError


@dataclass(frozen=True)
class PredictConfig:
    """`bertclf predict`: texts in, labels and probabilities out.

    Args:
        model: a run directory, or an exported BASE/NAME[/VERSION].
        texts: texts given on the command line.
        input: a file of texts: .csv/.tsv/.jsonl by extension, else one text per line.
        text_field: the text column of a CSV/TSV/JSONL input.
        id_field: a column copied to each result, when the input has it.
        output: write results here (.csv, else JSONL) instead of printing them.
        json: print JSON lines instead of a table.
        batch_size: texts per model call (and per read from --input).
        overwrite: replace an existing --output file.
        explain: add each text's word attributions (`explanation`; JSON lines only).
    """

    model: str = option(dataclasses.MISSING, "run directory, or exported BASE/NAME[/VERSION]")
    texts: tuple[str, ...] = option((), "texts to classify")
    input: str | None = option(
        None, "file of texts: .csv/.tsv/.jsonl (by extension), else one per line", type=str
    )
    text_field: str = option(TEXT_FIELD, "text column of a .csv/.tsv/.jsonl --input")
    id_field: str = option("id", "column copied to each result when the input has it")
    output: str | None = option(
        None, "write results to this file (.csv, else JSON lines)", type=str
    )
    json: bool = option(False, "print JSON lines")
    batch_size: int = option(64, "texts per model call (and per read from --input)")
    overwrite: bool = option(False, "replace an existing --output file")
    explain: bool = option(
        False,
        "add which words drove each prediction (integrated gradients; about 34 model "
        "passes a text): `explanation` in JSON lines, the top words in the table",
    )

    def __post_init__(self) -> None:
        check(self.batch_size >= 1, "--batch-size", self.batch_size, "use 1 or more")
        check(bool(self.text_field), "--text-field", self.text_field, "name the text column")
        if self.explain and self.output and self.output.lower().endswith(".csv"):
            raise ConfigError(
                f"--explain: {self.output} is CSV, which cannot hold a list of [word, weight] "
                "pairs; write JSON lines (--output with .jsonl) or print them (--json)"
            )
        if not self.texts and not self.input:
            raise ConfigError("predict: no texts; pass them as arguments or with --input FILE")
