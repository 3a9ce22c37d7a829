"""Errors the pipeline reports to people, without tracebacks.

`UsageError` is a problem with what the user asked for (a missing folder, a bad
flag, an unreadable config): the CLI exits 2. Problems *in the data* are never
exceptions: they become rows of a validation report.
"""


class UsageError(Exception):
    """Bad arguments, missing or unreadable input: exit code 2."""
