"""The `ganparity` command: the application layer's front door, and the only place in common/
that names the benchmarks (`ganparity bench`, the report's step-cost section, `ganparity docs`)."""

from .main import build_parser, main  # noqa: F401
