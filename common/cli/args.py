"""Argument rules shared by the subcommands: one place, so every command refuses a bad value the
same way (one line naming the value and the valid choices, exit 2)."""

from __future__ import annotations

import argparse

from ..backend import BACKENDS
from ..errors import choose
from ..spec.registry import GAN_SPECS


def backend_list(text: str) -> list[str]:
    names = [b.strip() for b in text.split(",") if b.strip()]
    for b in names:
        choose("backend", b, BACKENDS)
    return names


def spec_args(p: argparse.ArgumentParser, required: bool = True) -> None:
    p.add_argument("--spec", required=required, metavar="NAME", help=f"one of: {', '.join(GAN_SPECS)}")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", default=[],
                   help="override a width knob, e.g. --set ngf=16 --set image_size=32 (repeatable)")
