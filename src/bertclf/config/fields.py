"""How a config field is declared and checked: `option()` metadata, one-line errors.

`bertclf.cli.parser` turns each `option(...)` field into a flag; `check` is what every
`__post_init__` raises through, so each bad value reads the same way.
"""

from __future__ import annotations

import dataclasses
from dataclasses import field
from typing import Any

from bertclf.errors import ConfigError


def check(ok: bool, option: str, value: Any, hint: str) -> None:
    if not ok:
        raise ConfigError(f"{option} {value!r} is invalid: {hint}")


def option(default: Any, help: str, **cli: Any) -> Any:
    """A dataclass field with its command-line help (and flag details) as metadata.

    `cli` keys, read by `bertclf.cli.parser`: `choices`, `flags` (instead of
    `--field-name`), `type` (parse a command-line string), `show` (the default as
    the command line spells it), `metavar`.
    """
    if default is dataclasses.MISSING:  # a required setting
        return field(metadata={"help": help, **cli})
    return field(default=default, metadata={"help": help, **cli})


def as_float(value: str) -> float:
    try:
        return float(value)
    except ValueError:
        return float("nan")


def parse_names(value: str, flag: str) -> tuple[str, ...]:
    """Parse a comma-separated list of distinct, non-empty names ('none' or '': none)."""
    if value.strip().lower() in ("", "none"):
        return ()
    names = tuple(n.strip() for n in value.split(","))
    for name in names:
        check(bool(name), flag, value, "an empty name between commas; list names like a,b,c")
    check(len(set(names)) == len(names), flag, value, "a name is listed twice")
    return names
