"""Errors the pipeline reports to people in one line, without a traceback.

`UsageError` is a problem with what the user asked for (a missing folder, a bad
flag, an unreadable config, an unknown version): the CLI prints its message and exits 2.
`StorageError` (raised by ocr_tasks/storage/s3.py) is the store the user's environment
points at failing (endpoint unreachable, credentials refused, an object missing); its message
names the s3:// URI and the problem, so the CLI reports it the same way. It lives here so the
CLI can catch it without importing boto3: `ocr-retrain read` runs in consumer runtimes that
have none. Any other exception (ValueError, KeyError, ...) is a bug: the CLI lets its traceback
show. Problems *in the data* are never exceptions: they become rows of a validation report.
"""


class UsageError(Exception):
    """Bad arguments, missing or unreadable input: exit code 2."""


class StorageError(Exception):
    """A storage operation failed. The message names the s3:// URI and the problem,
    never credentials. `code` is the S3 error code when there was one."""

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.code = code
