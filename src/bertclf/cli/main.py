"""`bertclf`: parse the command line, run the command, and own the process around it.

Only here is logging configured (bertclf's loggers at INFO, everyone else's at
WARNING), TensorFlow's start-up noise filtered off stderr (`bertclf.tflog`; `-v` shows
it), and a `BertclfError` printed as one line with its exit status (2): a user's
mistake is one line on stderr, nothing half-written.
"""

from __future__ import annotations

import logging
import os
import sys

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import bertclf.cli.commands as commands  # noqa: E402
from bertclf.cli.parser import parse_args  # noqa: E402
from bertclf.errors import BertclfError, refusal_advice, write_refused  # noqa: E402

logger = logging.getLogger("bertclf")


def main(argv: list[str] | None = None) -> int:
    try:
        args = parse_args(sys.argv[1:] if argv is None else list(argv))
    except BertclfError as e:  # a flag's own parser (--clean) found the value invalid
        print(f"bertclf: error: {e}", file=sys.stderr)
        return e.exit_code
    from bertclf.tflog import filter_stderr

    noise = None if args.verbose else filter_stderr()
    try:
        # Our loggers at INFO, everyone else's (absl, TensorFlow) at WARNING.
        logging.basicConfig(level=logging.WARNING, format="bertclf: %(message)s")
        logger.setLevel(logging.WARNING if args.quiet else logging.INFO)
        try:
            return getattr(commands, f"cmd_{args.command}")(args)
        except BertclfError as e:
            print(f"bertclf: error: {e}", file=sys.stderr)
            return e.exit_code
        except KeyboardInterrupt:
            hint = (
                " (run the same command with --resume to continue)"
                if args.command == "train"
                else ""
            )
            print(f"bertclf: interrupted{hint}", file=sys.stderr)
            return 130
        except Exception as e:  # a write the disk refused: one line, not a traceback
            if (reason := write_refused(e)) is None:
                raise
            run = args.out if args.command == "train" else None
            print(f"bertclf: error: {reason}: {refusal_advice(run)}", file=sys.stderr)
            return 1
    finally:
        if noise is not None:
            noise.close()
