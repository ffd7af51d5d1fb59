"""Command-line options made from dataclass fields (settings.setting / settings.Option), and read back.

A field's option is declared once, on the field: its flag, help (the default filled in from the field), the
choices and the type (from the annotation). Every generated option has the field's name as its dest and
None as its default, so "not given" is told apart from a value; the dataclass supplies the defaults.
"""

from __future__ import annotations

import argparse
import dataclasses

from ..errors import SettingsError
from ..settings import help_text, value_type


def option_fields(cls) -> list[dataclasses.Field]:
    """The fields of the dataclass `cls` that have a command-line option, in declaration order."""
    return [f for f in dataclasses.fields(cls) if "option" in f.metadata]


def add_options(p, cls, exclude: tuple[str, ...] = ()) -> None:
    """Add an option to `p` (a parser or an argument group) for each field of `cls` that declares one."""
    for f in option_fields(cls):
        if f.name in exclude:
            continue
        opt = f.metadata["option"]
        kwargs: dict = {"help": help_text(f)}
        if not opt.flag.startswith("-"):  # a positional argument
            p.add_argument(f.name, choices=f.metadata.get("choices"), **kwargs)
            continue
        if value_type(f) is bool:
            kwargs.update(action="store_true", default=None)
        else:
            kwargs.update(type=value_type(f), default=None, metavar=opt.metavar)
            if "choices" in f.metadata:
                kwargs.update(choices=f.metadata["choices"])
                kwargs.pop("metavar")
        flags = (opt.flag, opt.short) if opt.short else (opt.flag,)
        p.add_argument(*flags, dest=f.name, **kwargs)


def given_values(args: argparse.Namespace, cls) -> dict:
    """{field: value} for the options of `cls` given on the command line (a "--no-x" flag sets x False; a
    value standing for None, such as --time-budget 0, becomes None)."""
    values = {}
    for f in option_fields(cls):
        value = getattr(args, f.name, None)
        if value is None:
            continue
        opt = f.metadata["option"]
        if value_type(f) is bool and opt.flag.startswith("--no-"):
            value = not value
        elif opt.none_if is not None and value == opt.none_if:
            value = None
        values[f.name] = value
    return values


def build(cls, args: argparse.Namespace, **fixed):
    """`cls(**fixed, **the options given)`; a SettingsError names the option its value came from."""
    try:
        return cls(**fixed, **given_values(args, cls))
    except SettingsError as e:
        flags = {f.name: f.metadata["option"].flag for f in option_fields(cls)}
        if e.field not in flags or not hasattr(args, e.field):
            raise
        raise SettingsError(f"option {flags[e.field]}: {e}", e.field) from e
