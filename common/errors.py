"""The one exception type the CLI turns into a one-line message (no traceback)."""


class GanparityError(ValueError):
    """A bad value from the user: a name, a width, a file. The message names the value and the
    valid choices, so the CLI can print it alone."""


def choose(kind: str, value: str, choices) -> str:
    """Return value if it is one of choices, else raise naming the bad value and the valid ones."""
    choices = list(choices)
    if value not in choices:
        raise GanparityError(f"unknown {kind} {value!r}; valid: {', '.join(map(str, choices))}")
    return value
