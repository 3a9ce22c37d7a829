"""Errors the pipeline reports to people, without tracebacks.

`UsageError` is a problem with what the user asked for (a missing folder, a bad
flag, an unreadable config): the CLI exits 2. `StorageError` (raised by
ocr_tasks/storage/s3.py) lives here too, so the CLI can catch it without importing
boto3: `ocr-retrain read` runs in consumer runtimes that have none. Problems *in the data* are never
exceptions: they become rows of a validation report.
"""


class UsageError(Exception):
    """Bad arguments, missing or unreadable input: exit code 2."""


class StorageError(Exception):
    """A storage operation failed. The message names the s3:// URI and the problem,
    never credentials. `code` is the S3 error code when there was one."""

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.code = code
