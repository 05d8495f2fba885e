"""Errors a user can act on.

A `UserError` is bad input (config, data, a server that fails): the CLI prints its message,
without a traceback, and exits with status 2. Bugs in longrl raise anything else and keep
their traceback.
"""


class UserError(Exception):
    """Bad input the user can fix; the message says where and how."""


class ConfigError(UserError):
    """A config file or override that does not validate."""


class DataError(UserError):
    """A malformed data file: the message names the file, the line or row, and the field."""

    def __init__(self, path: str, where: str, field: str | None, problem: str):
        self.path, self.where, self.field, self.problem = str(path), where, field, problem
        loc = f"{self.path}, {where}" + (f", field {field!r}" if field else "")
        super().__init__(f"{loc}: {problem}")


class OutputError(UserError):
    """An output the operating system refused: a read-only or full disk, a file where a folder belongs."""

    def __init__(self, path: str, problem: str):
        self.path, self.problem = str(path), problem
        super().__init__(f"cannot write {self.path}: {problem}")
