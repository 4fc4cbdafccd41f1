"""Bulk scoring on Apache Beam: `bertclf score EXPORT --input PATTERN --output PREFIX`.

    files matching PATTERN -> rows (text, id) -> RunInference(BertclfModelHandler)
        -> result records (as `bertclf predict --json`) -> PREFIX-SSSSS-of-NNNNN.jsonl

Beam reads the files (`fileio.MatchFiles`, any filesystem Beam has: local, gs://, s3://,
hdfs://), batches rows for the model (`RunInference`, one model per worker process),
and writes shards through its temporary-then-rename sinks. The rows are parsed by
`bertclf.data.tables` and the results formatted by `bertclf.prediction.predictor`, exactly as
`bertclf predict --input` does, so both give the same records for the same texts.

Beam's stock TensorFlow handler cannot load a bertclf export (it imports tensorflow_hub,
loads with tf.keras and never registers TF Text's ops), hence `BertclfModelHandler`: it
imports tensorflow_text, loads the SavedModel and calls `serving_default`. Beam is an
optional extra (`pip install 'bertclf[beam]'`): it pins an older protobuf than the core
install, so it lives in its own environment (`make setup-beam` makes one for the tests).
"""

from __future__ import annotations

import contextlib
import csv
import glob
import io
import json
import logging
import os
import shutil
import sys
import uuid
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path, PurePosixPath
from typing import Any

from bertclf import servable, tflog
from bertclf.config.score import ScoreConfig
from bertclf.data.tables import Row, parse_rows
from bertclf.errors import ConfigError, DataError
from bertclf.prediction.predict import result_record
from bertclf.prediction.predictor import EXTRA_OUTPUTS, probabilities_to_predictions

logger = logging.getLogger(__name__)

INSTALL_HINT = (
    "bertclf score needs Apache Beam, which pins an older protobuf than this environment's: "
    "run 'make setup-beam' (it makes .venv-beam beside .venv; bertclf score then runs there "
    "by itself), or install 'bertclf[beam]' into an environment of its own"
)


def beam_python() -> Path | None:
    """The Beam environment's Python beside this one (`make setup-beam`'s .venv-beam)."""
    python = Path(sys.prefix).parent / ".venv-beam" / "bin" / "python"
    return python if python.is_file() and Path(sys.prefix) != python.parents[1] else None


def require_beam(argv: list[str] | None = None) -> None:
    """Go on where Apache Beam imports; else run `argv` again with the Beam environment's
    Python (this process is replaced) when there is one; else ConfigError saying how to
    make one."""
    try:
        import apache_beam  # noqa: F401
    except ImportError:
        python = beam_python()
        if python is None or argv is None:
            raise ConfigError(INSTALL_HINT) from None
        tflog.stop_filtering()  # the Beam process writes to the user's stderr itself
        os.execv(python, [str(python), "-m", "bertclf", *argv])


def export_info(model: str) -> tuple[Path, list[str], list[float] | None]:
    """(version directory, label names, multi-label thresholds or None) of an export."""
    version_dir = servable.find_version_dir(Path(model))
    if version_dir is None:
        raise DataError(
            f"{model}: no exported model (no saved_model.pb, no model.onnx); bertclf score takes "
            "BASE/NAME[/VERSION] of 'bertclf export' (export a run first)"
        )
    meta_file = version_dir / servable.METADATA
    meta = json.loads(meta_file.read_text(encoding="utf-8")) if meta_file.is_file() else {}
    return version_dir, servable.read_labels(version_dir), meta.get("thresholds")


def check_paths(config: ScoreConfig) -> list[str]:
    """The input files (DataError if none match); refuse existing output files.

    With --overwrite the old shards stay until the new ones are written (`score`).
    """
    from apache_beam.io.filesystems import FileSystems

    inputs = sorted(m.path for m in FileSystems.match([config.input])[0].metadata_list)
    if not inputs:
        raise DataError(f"--input {config.input}: no file matches; check the pattern")
    existing = [m.path for m in FileSystems.match([config.output + "*"])[0].metadata_list]
    if existing and not config.overwrite:
        raise DataError(
            f"--output {config.output}: {len(existing)} file(s) already start with it "
            f"({existing[0]}); pass --overwrite to replace them, or another prefix"
        )
    return inputs


def shards(prefix: str) -> list[str]:
    """The output shards of a run of `score` with this prefix (PREFIX-SSSSS-of-NNNNN*)."""
    from apache_beam.io.filesystems import FileSystems

    return sorted(m.path for m in FileSystems.match([prefix + "-*-of-*"])[0].metadata_list)


def publish(staged: str, prefix: str) -> list[str]:
    """After a successful run: PREFIX's shards become the staged ones; returns their paths.

    The run wrote under a staging prefix beside the output, so the old shards stayed
    whole until here. Which shards are old is known by name, not by file time (clocks
    and file systems disagree on times). Old shards with another shard count are deleted
    first; then each new shard is renamed over its final name.
    """
    from apache_beam.io.filesystems import FileSystems

    marker = staged[len(prefix) :]  # ".partial-HEX", unique to this run
    new = shards(staged)
    final = ["".join(path.rsplit(marker, 1)) for path in new]
    stale = sorted(set(shards(prefix)) - set(final))
    if stale:  # an earlier run's shards with another shard count
        FileSystems.delete(stale)
    FileSystems.rename(new, final)
    return final


def first_missing_folder(prefix: str) -> Path | None:
    """The outermost folder of a local output prefix that does not exist yet, if any."""
    if "://" in prefix:
        return None
    missing = None
    for folder in Path(prefix).absolute().parents:
        if folder.exists():
            return missing
        missing = folder
    return missing


def discard(staged: str, created: Path | None = None) -> None:
    """A failed run: delete what it staged, Beam's temporary folder for it, and the
    output folders the run created (if nothing else was written into them).

    Beam leaves `beam-temp-BASENAME-UUID/` beside the output when a pipeline fails; the
    staged basename is unique to this run, so nothing of another run matches. Beam's
    match lists files only, so a local folder is removed here. Best effort: the run's
    own error is what the user must see.
    """
    from apache_beam.io.filesystems import FileSystems

    folder, base = FileSystems.split(staged)
    temp = FileSystems.join(folder, f"beam-temp-{base}-*")
    for pattern in (staged + "-*-of-*", temp + "/*"):
        try:
            if found := [m.path for m in FileSystems.match([pattern])[0].metadata_list]:
                FileSystems.delete(found)
        except Exception as error:  # noqa: BLE001 - never hide the run's own error
            logger.warning("could not delete the partial output %s: %s", pattern, error)
    if "://" not in temp:  # a local folder; an object store has no empty folders
        for path in glob.glob(glob.escape(temp[:-1]) + "*"):
            shutil.rmtree(path, ignore_errors=True)
    if created is not None:  # deepest first; a folder that is not empty stays
        for folder, _, _ in sorted(os.walk(created), key=lambda w: -len(w[0])):
            with contextlib.suppress(OSError):
                os.rmdir(folder)


def rows_of_file(readable, text_field: str, id_field: str) -> Iterator[Row]:
    """Rows of one matched file, parsed by its extension as `bertclf predict --input`."""
    with readable.open() as raw:
        yield from _rows(readable.metadata.path, raw, text_field, id_field)


def _rows(path: str, raw, text_field: str, id_field: str) -> Iterator[Row]:
    # utf-8-sig: Excel's byte-order mark is not part of the first column's name.
    lines = io.TextIOWrapper(raw, encoding="utf-8-sig", errors="replace", newline="")
    yield from parse_rows(Path(PurePosixPath(path).name), lines, text_field, id_field)


def check_first_rows(inputs: list[str], config: ScoreConfig) -> None:
    """Parse each input's first row before the pipeline: a missing field is caught here,
    before any worker starts, instead of minutes into the run (later rows: in `Rows`)."""
    from apache_beam.io.filesystems import FileSystems

    for path in inputs:
        with FileSystems.open(path) as raw:
            next(_rows(path, raw, config.text_field, config.id_field), None)


def make_model_handler(version_dir: str, batch_size: int):
    """A Beam `ModelHandler` for a bertclf export (built here: Beam is imported lazily)."""
    from apache_beam.ml.inference.base import ModelHandler, PredictionResult

    class BertclfModelHandler(ModelHandler[Row, PredictionResult, Any]):
        """Loads the export once per worker (a SavedModel or an ONNX model); scores batches
        of rows with serving_default."""

        def load_model(self):
            """texts -> {output: array}: ONNX Runtime for an ONNX export, else TensorFlow."""
            if servable.is_onnx_version(Path(version_dir)):
                from bertclf.prediction.onnx_model import OnnxModel

                return OnnxModel(version_dir).run
            import tensorflow as tf
            import tensorflow_text  # noqa: F401  (registers the TF Text ops of the graph)

            signature = tf.saved_model.load(version_dir).signatures[servable.DEFAULT_SIGNATURE]

            def run(texts):
                out = signature(**{servable.TEXT_INPUT: tf.constant(texts, tf.string)})
                return {k: v.numpy() for k, v in out.items()}

            run.model = signature  # keeps the loaded model alive with its function
            return run

        def run_inference(
            self, batch: Sequence[Row], model, inference_args=None
        ) -> Iterable[PredictionResult]:
            out = model([row.text for row in batch])
            # scores [b, L] and, from a calibrated run's export, abstain [b], ood_score [b]
            named = {k: out[k] for k in ("scores", *EXTRA_OUTPUTS) if k in out}
            return [
                PredictionResult(row, {k: v[i] for k, v in named.items()})
                for i, row in enumerate(batch)
            ]

        def batch_elements_kwargs(self):
            return {"min_batch_size": 1, "max_batch_size": batch_size}

    return BertclfModelHandler()


def to_record(result, labels: list[str], thresholds, id_field: str) -> dict[str, Any]:
    """A PredictionResult -> the record `bertclf predict --json` writes for its row."""
    import numpy as np

    cuts = None if thresholds is None else np.asarray(thresholds, np.float32)
    out = result.inference
    [prediction] = probabilities_to_predictions(out["scores"][None, :], labels, cuts)
    prediction.update({k: out[k].item() for k in EXTRA_OUTPUTS if k in out})
    return result_record(result.example, prediction, id_field)


def csv_line(record: dict[str, Any], columns: list[str]) -> str:
    flat = {**record, **{f"p_{k}": v for k, v in record["probabilities"].items()}}
    if isinstance(flat.get("labels"), list):
        flat["labels"] = ",".join(flat["labels"])
    buffer = io.StringIO()
    csv.DictWriter(buffer, columns, extrasaction="ignore", lineterminator="").writerow(flat)
    return buffer.getvalue()


def score(config: ScoreConfig, beam_args: Sequence[str] = ()) -> dict[str, Any]:
    """Run the pipeline; returns the inputs and the output pattern.

    The shards are written under a staging prefix and replace PREFIX's only once the
    whole run has succeeded (`publish`): a failed run leaves the old output as it was.

    Example:
    >>> score(ScoreConfig("exports/demo", "texts/*.txt", "out/scores"))  # doctest: +SKIP
    {'inputs': [...], 'output': 'out/scores-*-of-*.jsonl'}
    """
    require_beam()
    version_dir, labels, thresholds = export_info(config.model)
    inputs = check_paths(config)
    check_first_rows(inputs, config)
    staged = f"{config.output}.partial-{uuid.uuid4().hex[:12]}"  # beside the output
    created = first_missing_folder(config.output)
    try:
        run_pipeline(config, beam_args, str(version_dir), labels, thresholds, staged)
    except BaseException:
        discard(staged, created)
        raise
    publish(staged, config.output)
    return {"inputs": inputs, "output": f"{config.output}-*-of-*.{config.format}"}


def run_pipeline(config, beam_args, version_dir, labels, thresholds, prefix: str) -> None:
    """Read, score and write PREFIX-SSSSS-of-NNNNN.FORMAT with Beam's runner."""
    import apache_beam as beam
    from apache_beam.io import fileio
    from apache_beam.ml.inference.base import RunInference
    from apache_beam.options.pipeline_options import PipelineOptions

    columns = [config.id_field, "text"]
    columns += ["labels"] if thresholds is not None else ["label", "probability"]
    columns += [f"p_{name}" for name in labels]
    meta_file = Path(version_dir) / servable.METADATA
    meta = json.loads(meta_file.read_text(encoding="utf-8")) if meta_file.is_file() else {}
    if meta.get("calibration"):  # the export has abstain and ood_score outputs
        columns += list(EXTRA_OUTPUTS)
    header = ",".join(columns) if config.format == "csv" else None
    fmt = (lambda r: json.dumps(r, ensure_ascii=False)) if config.format == "jsonl" else None
    options = PipelineOptions(["--runner", config.runner, *beam_args])
    with beam.Pipeline(options=options) as pipeline:
        records = (
            pipeline
            | "Match" >> fileio.MatchFiles(config.input)
            | "Read" >> fileio.ReadMatches()
            | "Rows" >> beam.FlatMap(rows_of_file, config.text_field, config.id_field)
            | "Score" >> RunInference(make_model_handler(version_dir, config.batch_size))
            | "Record" >> beam.Map(to_record, labels, thresholds, config.id_field)
        )
        lines = records | "Format" >> beam.Map(fmt or (lambda r: csv_line(r, columns)))
        lines | "Write" >> beam.io.WriteToText(  # noqa: B018 - a sink
            prefix, file_name_suffix="." + config.format, header=header
        )
