"""`ganparity`: the parser and main(). Every subcommand has --help; a bad value exits 2 with one
line. Each module of this package registers its own subcommands; none imports a framework until a
command runs."""

from __future__ import annotations

import argparse
import sys

from ..errors import GanparityError
from . import bench, compare, core, finetune, port, report, train
from .args import OneLineParser

# Subcommands live beside their code: module.register(subparsers) adds them, in this order.
COMMANDS = (core, train, finetune, bench, report, compare, port)


def build_parser() -> argparse.ArgumentParser:
    p = OneLineParser(prog="ganparity", description=(
        "One framework-neutral spec per model; PyTorch and MXNet Gluon backends; proof, with "
        "numbers, that they agree; and what each costs."))
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in COMMANDS:
        module.register(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.fn(args)
    except GanparityError as e:
        print(f"ganparity: error: {str(e).replace(chr(10), ' ')}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("ganparity: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `ganparity specs | head`: the reader left, nothing more to say
        sys.stderr.close()
        return 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
