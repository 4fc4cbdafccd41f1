"""Command-line flags generated from the config dataclasses (as transformers' HfArgumentParser).

A field's default, help text and choices are declared once, with `config.option`;
`add_options` turns fields into argparse arguments whose help shows the default, and
`from_args` builds the (validated) dataclass back from the parsed namespace.
"""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Iterable
from typing import Any


def _field_type(f: dataclasses.Field, meta: dict[str, Any]) -> Any:
    if "type" in meta:
        return meta["type"]
    if f.default is dataclasses.MISSING or f.default is None:
        return str
    return type(f.default)


def add_option(parser: argparse.ArgumentParser, f: dataclasses.Field, **override: Any) -> None:
    """One field as a flag (or, with `positional=True`, a positional argument)."""
    meta = {**f.metadata, **override}
    help_text = meta["help"]
    kwargs: dict[str, Any] = {}
    if meta.get("positional"):
        names = [f.name]
        if "nargs" in meta:
            kwargs["nargs"] = meta["nargs"]
    else:
        names = list(meta.get("flags") or ["--" + f.name.replace("_", "-")])
        kwargs["dest"] = f.name
        if f.default is dataclasses.MISSING:
            kwargs["required"] = True
    if isinstance(f.default, bool):
        # A flag that flips the default: --zip (False -> True), --no-verify (True -> False).
        kwargs["action"] = "store_false" if f.default else "store_true"
        kwargs["default"] = f.default
    else:
        kwargs["type"] = _field_type(f, meta)
        if "choices" in meta:
            kwargs["choices"] = meta["choices"]
        if f.default is not dataclasses.MISSING:
            kwargs["default"] = meta.get("show", f.default)
            if "show" in meta or f.default not in (None, ()):
                help_text += " (default: %(default)s)"
        if "metavar" in meta:
            kwargs["metavar"] = meta["metavar"]
    parser.add_argument(*names, help=help_text, **kwargs)


def add_options(
    parser: argparse.ArgumentParser,
    cls: type,
    only: Iterable[str] | None = None,
    skip: Iterable[str] = (),
    **overrides: dict[str, Any],
) -> None:
    """Flags for the fields of dataclass `cls` (those in `only`, less `skip`).

    `overrides[name]` replaces metadata of one field, e.g. `{"positional": True}`.
    Fields that are dataclasses themselves (RunConfig.model) are left out.
    """
    wanted = None if only is None else list(only)
    fields = {f.name: f for f in dataclasses.fields(cls) if "help" in f.metadata}
    for name in wanted if wanted is not None else list(fields):
        if name not in skip:
            add_option(parser, fields[name], **overrides.get(name, {}))


def from_args(cls: type, args: argparse.Namespace, **values: Any) -> Any:
    """`cls(...)` from the parsed flags of its fields (plus `values`), validated."""
    kwargs = {
        f.name: getattr(args, f.name)
        for f in dataclasses.fields(cls)
        if hasattr(args, f.name) and f.name not in values
    }
    return cls(**kwargs, **values)
