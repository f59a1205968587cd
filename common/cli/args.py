"""Argument rules shared by the subcommands: one place, so every command refuses a bad value the
same way (one line naming the value and the valid choices, exit 2, no usage dump, no traceback).

Every count, epoch, step, batch and size goes through one of these types. None is the only
"use the default" value: no `value or default` anywhere, so a 0 is refused, never replaced.
"""

from __future__ import annotations

import argparse
import math

from ..backend import BACKENDS
from ..errors import GanparityError, choose
from ..files import check_output_path
from ..spec.registry import GAN_SPECS

DEVICES = ("cpu", "cuda")


class OneLineParser(argparse.ArgumentParser):
    """argparse, with its errors on one line: 'ganparity train: error: argument --epochs: must be a
    positive integer (1 or more), got '0'' (exit 2), without the usage block before it. Sub-parsers
    inherit the class."""

    def error(self, message: str):
        text = " ".join(message.split())
        self.exit(2, f"{self.prog}: error: {text} (see {self.prog} --help)\n")


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None


def positive_int(text: str) -> int:
    """A count that cannot be zero: epochs, batch size, steps, samples, rounds."""
    value = _int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer (1 or more), got {text!r}")
    return value


def nonnegative_int(text: str) -> int:
    """A count where 0 means none (warm-up steps) or a numpy seed (numpy refuses negative seeds)."""
    value = _int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {text!r}")
    return value


seed = nonnegative_int


def int_at_least(minimum: int):
    """A count with a floor above 1 (the SWD needs 2 images on each side)."""

    def check(text: str) -> int:
        value = _int(text)
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be an integer of at least {minimum}, got {text!r}")
        return value

    check.__name__ = f"int_at_least_{minimum}"
    return check


def port(text: str) -> int:
    """A TCP port number."""
    value = _int(text)
    if not 1 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"must be a TCP port (1 to 65535), got {text!r}")
    return value


def positive_seconds(text: str) -> float:
    """A length of time in seconds, above zero."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
    if not (value > 0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError(f"must be a finite number of seconds above 0, got {text!r}")
    return value


def fraction(text: str) -> float:
    """A share in [0, 1): the part of a data set held out (nan and inf are refused too)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1), got {text!r}") from None
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"must be in [0, 1), got {text!r}")
    return value


def positive_int_list(text: str) -> list[int]:
    """'16,64' -> [16, 64]: each a positive integer, at least one."""
    parts = [t.strip() for t in text.split(",") if t.strip()]
    if not parts:
        raise argparse.ArgumentTypeError(f"expected a comma list of positive integers, got {text!r}")
    for t in parts:
        try:
            ok = int(t) >= 1
        except ValueError:
            ok = False
        if not ok:
            raise argparse.ArgumentTypeError(f"expected a comma list of positive integers, got {t!r} in {text!r}")
    return [int(t) for t in parts]


def backend_name(text: str) -> str:
    try:
        return choose("backend", text, BACKENDS)
    except GanparityError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def backend_list(text: str) -> list[str]:
    names = [b.strip() for b in text.split(",") if b.strip()]
    for b in names:
        choose("backend", b, BACKENDS)
    return names


def output_file(text: str) -> str:
    """A file to write (common/files.py check_output_path, kind 'file'): refused at once if a folder,
    a device, a FIFO or a socket is in the way, a folder above it is a file, or nothing can be
    written where it goes (the folders above it are created by the command)."""
    try:
        check_output_path(text, what="", kind="file")
    except GanparityError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    return text


def output_dir(text: str) -> str:
    """A folder to write into (created if missing; check_output_path, kind 'dir'): refused at once
    if it is `.`, the current folder or one above it, the home folder, the filesystem root, a file,
    a device, or not writable."""
    try:
        check_output_path(text, what="", kind="dir")
    except GanparityError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    return text


def spec_args(p: argparse.ArgumentParser, required: bool = True) -> None:
    p.add_argument("--spec", required=required, metavar="NAME", help=f"one of: {', '.join(GAN_SPECS)}")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", default=[],
                   help="override a width knob, e.g. --set ngf=16 --set image_size=32 (repeatable)")


# -- old spellings, accepted for one release ------------------------------------------------------------------


def deprecation_note(old: str, new: str) -> None:
    """The one line an old spelling prints (to stderr) before it does what the new one does."""
    import sys

    print(f"ganparity: note: {old} is deprecated; use {new}", file=sys.stderr)


class Deprecated(argparse.Action):
    """An old flag, accepted for one release: a one-line note naming the new one, then the new one's
    effect. `value` stores a fixed value (for an old store_true flag that became a choice)."""

    def __init__(self, option_strings, dest, new: str, value=None, **kwargs):
        self.new, self.value = new, value
        if value is not None:
            kwargs["nargs"] = 0
        super().__init__(option_strings, dest, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None):
        deprecation_note(option_string, self.new)
        setattr(namespace, self.dest, self.value if self.value is not None else values)


def choice(flag: str, valid: tuple[str, ...], renamed: dict[str, str] | None = None):
    """A type for one of `valid`; an old value in `renamed` is accepted with a one-line note."""
    renamed = renamed or {}

    def check(text: str) -> str:
        if text in renamed:
            deprecation_note(f"{flag} {text}", f"{flag} {renamed[text]}")
            return renamed[text]
        if text not in valid:
            raise argparse.ArgumentTypeError(f"invalid choice: {text!r} (choose from "
                                             f"{', '.join(map(repr, valid))})")
        return text

    check.__name__ = flag.lstrip("-")
    return check
