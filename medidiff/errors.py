"""Exceptions that the CLI reports as one clear line (no traceback)."""

from __future__ import annotations


class MedidiffError(Exception):
    """Base class: a user-facing problem whose message says what is wrong and where."""


class DataError(MedidiffError, ValueError):
    """Bad input data; the message names the file and the problem."""

    def __init__(self, path: object, problem: str) -> None:
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")

    def __reduce__(self):  # DataLoader workers re-raise exceptions by pickling them
        return (type(self), (self.path, self.problem))
