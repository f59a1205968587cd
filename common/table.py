"""Markdown tables: the one text format the CLI, the report and the docs share."""

from __future__ import annotations


def fmt(x, digits: int = 2) -> str:
    if isinstance(x, bool):
        return "pass" if x else "FAIL"
    if isinstance(x, float):
        if x != x:
            return "-"
        if x == 0 or 1e-3 <= abs(x) < 1e5:
            return f"{x:.{digits + 1}g}" if abs(x) < 1 else f"{x:,.{digits}f}"
        return f"{x:.{digits}e}"
    if isinstance(x, int):
        return f"{x:,}"
    return "-" if x is None else str(x)


def md_table(headers: list[str], rows: list[list]) -> str:
    cells = [[fmt(c) for c in row] for row in rows]
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in cells]
    return "\n".join(lines)
