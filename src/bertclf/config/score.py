"""`ScoreConfig`: `bertclf score`, an export over many files on Apache Beam."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from bertclf.config.data import TEXT_FIELD
from bertclf.config.fields import check, option

SCORE_FORMATS = ("jsonl", "csv")


@dataclass(frozen=True)
class ScoreConfig:
    """`bertclf score`: an export over many files, on Apache Beam (`bertclf.prediction.scoring`).

    Args:
        model: an exported BASE/NAME[/VERSION].
        input: a file pattern (any filesystem Beam reads: local, gs://, s3://, hdfs://);
            .csv/.tsv/.jsonl by extension, else one text per line.
        output: output prefix; shards are PREFIX-00000-of-0000N.jsonl (or .csv).
        text_field: the text column of a CSV/TSV/JSONL input.
        id_field: a column copied to each result, when the input has it.
        format: `jsonl` or `csv` results.
        batch_size: the most texts per model call (Beam's RunInference batches).
        runner: the Beam runner (DirectRunner here; DataflowRunner, FlinkRunner, ...).
        overwrite: replace existing output shards under the prefix.
    """

    model: str = option(dataclasses.MISSING, "exported BASE/NAME[/VERSION]")
    input: str = option(
        dataclasses.MISSING,
        "file pattern (local, gs://, s3://, ...): .csv/.tsv/.jsonl by extension, else lines",
    )
    output: str = option(dataclasses.MISSING, "output prefix: PREFIX-00000-of-0000N.jsonl")
    text_field: str = option(TEXT_FIELD, "text column of a .csv/.tsv/.jsonl input")
    id_field: str = option("id", "column copied to each result when the input has it")
    format: str = option("jsonl", "results as JSON lines or CSV", choices=SCORE_FORMATS)
    batch_size: int = option(64, "the most texts per model call")
    runner: str = option("DirectRunner", "Beam runner (other Beam options pass through)")
    overwrite: bool = option(False, "replace existing output shards under the prefix")

    def __post_init__(self) -> None:
        check(self.batch_size >= 1, "--batch-size", self.batch_size, "use 1 or more")
        check(bool(self.text_field), "--text-field", self.text_field, "name the text column")
        check(self.format in SCORE_FORMATS, "--format", self.format, f"one of {SCORE_FORMATS}")
        check(bool(self.output), "--output", self.output, "name an output prefix")
