"""`bertclf serve`: a local server speaking TensorFlow Serving's REST API for bertclf exports.

Job: `protocol` parses and shapes TF Serving JSON (pure: no HTTP, no TensorFlow);
`errors` maps each failure to its HTTP status; `repository` loads, polls and swaps model
versions, each in its own process (`worker`); `batcher` merges concurrent requests into
one model call; `app` is the thin Starlette layer over them, `http` the limits uvicorn
does not set, `server` the command; `config` holds `ServeConfig`, the only place the
server's defaults live.

May import: `bertclf.config.fields` (to declare `ServeConfig`) and the shared top-level
modules (`servable`, `errors`, `processes`). Nothing of training: the server process
never loads TensorFlow or the training settings.
"""
