"""`ganparity`: the parser and main(). Every subcommand has --help; a bad value exits 2 with one
line. Each module of this package registers its own subcommands; none imports a framework until a
command runs."""

from __future__ import annotations

import argparse
import sys

from ..errors import GanparityError
from . import bench, compare, core, docs, finetune, port, report, train
from .args import OneLineParser, deprecation_note

# Subcommands live beside their code: module.register(subparsers) adds them, in this order.
COMMANDS = (port, compare, bench, train, report, core, finetune, docs)


def build_parser() -> argparse.ArgumentParser:
    p = OneLineParser(prog="ganparity", description=(
        "Port an MXNet Gluon model to PyTorch with its proof (port), check your own port (compare), and "
        "measure what a training step costs in each framework (bench); one framework-neutral spec per GAN "
        "model, PyTorch and Gluon backends that train it, and the parity report that says they agree."))
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in COMMANDS:
        module.register(sub)
    return p


# Old command names, accepted for one release with a one-line note: old -> the new words.
RENAMED = {"porting": ["differences"], "gpu-check": ["bench", "gpu-check"]}


def renamed(argv: list[str]) -> list[str]:
    """argv with an old command spelled the new way (after its one-line note): `porting` is
    `differences`, `gpu-check` is `bench gpu-check`, and `bench` with no sub-command is `bench step`."""
    if argv and argv[0] in RENAMED:
        new = RENAMED[argv[0]]
        deprecation_note(f"ganparity {argv[0]}", f"ganparity {' '.join(new)}")
        return [*new, *argv[1:]]
    if argv[:1] == ["bench"] and (len(argv) == 1 or argv[1] not in (*bench.SUBCOMMANDS, "-h", "--help")):
        deprecation_note("ganparity bench without a sub-command", "ganparity bench step")
        return ["bench", "step", *argv[1:]]
    return argv


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(renamed(list(sys.argv[1:] if argv is None else argv)))
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
