"""Generated regions of the docs: the measured tables of README.md and docs/*.md are written by code
from the committed data (reports/results.json, benchmarks/results/*.json, the spec registry), never
by hand. A region is

    <!-- generated: NAME -->
    ...whatever the renderer NAME returns...
    <!-- end generated -->

`ganparity docs` rewrites every region (and the files generated whole, docs/differences.md);
tests/test_docs.py renders them in memory and fails when a file and its data disagree.
Text only: the renderers are the caller's (common/cli/docs.py)."""

from __future__ import annotations

import re
from collections.abc import Callable

from .errors import GanparityError

END = "<!-- end generated -->"
_REGION = re.compile(r"<!-- generated: ([a-z0-9-]+) -->\n(.*?)" + re.escape(END), re.S)


def names(text: str) -> list[str]:
    """The regions' names, in the order they appear."""
    return [m.group(1) for m in _REGION.finditer(text)]


def fill(text: str, renderers: dict[str, Callable[[], str]], where: str = "") -> str:
    """`text` with every region's body replaced by its renderer's output; a region whose name has
    no renderer, or a marker without its end, is an error naming it."""
    opened = text.count("<!-- generated: ")
    if opened != text.count(END) or opened != len(names(text)):
        raise GanparityError(f"{where}: {opened} '<!-- generated: NAME -->' markers and {text.count(END)} "
                             f"'{END}' markers do not pair up")

    def body(m: re.Match) -> str:
        name = m.group(1)
        if name not in renderers:
            raise GanparityError(f"{where}: no generator named {name!r}; known: {', '.join(sorted(renderers))}")
        return f"<!-- generated: {name} -->\n{renderers[name]().rstrip()}\n{END}"

    return _REGION.sub(body, text)
