"""The `bertclf` command: flags generated from the config dataclasses, one line per mistake.

Job: parse the command line (`parser`), check what can be checked before TensorFlow is
imported and call the stage that does the work (`commands`), and own the process:
logging, TensorFlow's start-up noise, errors as one line and exit statuses (`main`).

May import: every subpackage; nothing imports it but `bertclf.__main__`.
"""

from bertclf.cli.main import main

__all__ = ["main"]
