"""A local server speaking TensorFlow Serving's REST API for bertclf exports.

protocol.py parses and shapes TF Serving JSON (pure, no HTTP, no TensorFlow);
errors.py maps each failure to its HTTP status; repository.py loads, polls and
swaps model versions; batcher.py merges concurrent requests into one model call;
app.py is the thin Starlette layer over them.
"""
