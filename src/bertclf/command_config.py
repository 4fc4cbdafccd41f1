"""Settings of the commands that use a trained run: export, predict, serve.

Declared once, like the training settings in `bertclf.config` (whose `option` and
checks they share): the CLI generates its flags from these fields. No TensorFlow.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from bertclf import servable
from bertclf.config import TEXT_FIELD
from bertclf.errors import ConfigError
from bertclf.export_check import DEFAULT_TARGET, TARGETS
from bertclf.fields import check, option

EXPORT_PRECISIONS = ("run", "fp32")


@dataclass(frozen=True)
class ExportConfig:
    """`bertclf export`: where and how a run is published for TF Serving.

    Args:
        run: the trained run directory.
        base: the model base path TF Serving watches (BASE).
        name: model name (default: the run directory's name).
        version: version number (default: one more than the highest, from 1).
        target: server whose ops the export must stay within.
        verify: reload in a fresh process and compare probabilities.
        zip: also write BASE/NAME.zip.
        sagemaker: also write BASE/NAME-VERSION.model.tar.gz.
        precision: `run` (compute as the run trained: bf16 runs export bf16) or `fp32`
            (float32 compute from the same weights, for hosts without native bf16).
    """

    run: str = option(dataclasses.MISSING, "run directory")
    base: str = option(dataclasses.MISSING, "model base path (BASE)", flags=("--to",))
    name: str | None = option(None, "model name (default: the run directory's name)", type=str)
    version: int | None = option(None, "version (default: the next free one, from 1)", type=int)
    target: str = option(
        DEFAULT_TARGET, "server whose ops the export must stay within", choices=tuple(TARGETS)
    )
    verify: bool = option(
        True,
        "reload in a fresh process and compare probabilities (--no-verify skips it; the op "
        "audit still runs)",
        flags=("--no-verify",),
    )
    zip: bool = option(False, "also write BASE/NAME.zip")
    sagemaker: bool = option(False, "also write BASE/NAME-VERSION.model.tar.gz for SageMaker")
    precision: str = option(
        "run",
        "compute dtype of the export: run (as the run trained) or fp32 (float32 compute "
        "from the same weights: faster on hosts without native bf16)",
        choices=EXPORT_PRECISIONS,
    )

    def __post_init__(self) -> None:
        check(bool(self.base), "--to", self.base, "name a model base folder")
        check(
            self.precision in EXPORT_PRECISIONS,
            "--precision",
            self.precision,
            f"choose one of {EXPORT_PRECISIONS}",
        )
        if self.name is not None:
            check(servable.valid_name(self.name), "--name", self.name, "use only [A-Za-z0-9_.-]")
        if self.version is not None:
            check(self.version >= 1, "--version", self.version, "versions are positive integers")


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

    def __post_init__(self) -> None:
        check(self.batch_size >= 1, "--batch-size", self.batch_size, "use 1 or more")
        check(bool(self.text_field), "--text-field", self.text_field, "name the text column")
        if not self.texts and not self.input:
            raise ConfigError("predict: no texts; pass them as arguments or with --input FILE")


SCORE_FORMATS = ("jsonl", "csv")


@dataclass(frozen=True)
class ScoreConfig:
    """`bertclf score`: an export over many files, on Apache Beam (`bertclf.scoring`).

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


@dataclass(frozen=True)
class ServeConfig:
    """`bertclf serve`: TF Serving's REST API over the exports under a base path.

    Args:
        base: model base path (BASE/NAME/VERSION), or one model's directory.
        name: model name when `base` is a single model's directory.
        host: address to bind.
        port: TCP port.
        poll: seconds between scans of `base` for new versions.
        max_batch: most texts in one model call (larger requests are split).
        max_wait_ms: under concurrent load, how long a batch waits to fill up.
        max_queue: texts waiting for the model before new requests get 429.
        max_body_mb: request body limit (413 above it).
        max_instances: texts in one request (400 above it); at most `max_queue`.
        header_timeout: seconds a client has to send a request's headers.
        access_log: log every request.
    """

    base: str = option(dataclasses.MISSING, "model base path (BASE), or one model's directory")
    name: str | None = option(None, "model name when BASE is one model's directory", type=str)
    host: str = option("127.0.0.1", "address to bind (any other than loopback is warned about)")
    port: int = option(8501, "TCP port (the default is TF Serving's REST port)")
    poll: float = option(1.0, "seconds between scans of BASE for new versions")
    max_batch: int = option(32, "most texts in one model call; larger requests are split")
    max_wait_ms: float = option(
        2.0, "under concurrent load, how long a batch waits to fill up (a lone request never)"
    )
    max_queue: int = option(1024, "texts waiting for the model before requests get 429")
    max_body_mb: float = option(10.0, "request body limit in MiB (413 above it)")
    max_instances: int = option(512, "texts in one request (400 above it); at most --max-queue")
    header_timeout: float = option(10.0, "seconds a client has to send a request's headers")
    access_log: bool = option(False, "log every request")

    def __post_init__(self) -> None:
        if self.name is not None:
            check(servable.valid_name(self.name), "--name", self.name, "use only [A-Za-z0-9_.-]")
        check(0 < self.port < 65536, "--port", self.port, "use a port in 1..65535")
        check(self.poll > 0, "--poll", self.poll, "use a positive number of seconds")
        for flag, value in (
            ("--max-batch", self.max_batch),
            ("--max-queue", self.max_queue),
            ("--max-instances", self.max_instances),
        ):
            check(value >= 1, flag, value, "use 1 or more")
        check(self.max_wait_ms >= 0, "--max-wait-ms", self.max_wait_ms, "use 0 or more")
        check(self.max_body_mb > 0, "--max-body-mb", self.max_body_mb, "use a positive size")
        check(self.header_timeout > 0, "--header-timeout", self.header_timeout, "use seconds > 0")
        check(
            self.max_instances <= self.max_queue,
            "--max-instances",
            self.max_instances,
            f"a request must fit the queue: use at most --max-queue ({self.max_queue})",
        )


def serve_default(name: str):
    """The default of one `ServeConfig` field, for the serving layer's own defaults."""
    return next(f.default for f in dataclasses.fields(ServeConfig) if f.name == name)
