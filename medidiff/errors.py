"""Exceptions that the CLI reports as one clear line (no traceback)."""

from __future__ import annotations


class MedidiffError(Exception):
    """Base class: a user-facing problem whose message says what is wrong and where."""


class DataError(MedidiffError, ValueError):
    """Bad input data; the message names the file and the problem."""

    def __init__(self, path: object, problem: str | None = None) -> None:
        if problem is None:
            # Re-raised from a DataLoader worker: torch rebuilds the exception from one string,
            # the worker's traceback text, whose last line is "...DataError: <path>: <problem>".
            path, problem = _from_worker_text(str(path))
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")

    def __reduce__(self):  # DataLoader workers re-raise exceptions by pickling them
        return (type(self), (self.path, self.problem))


def _from_worker_text(text: str) -> tuple[str, str]:
    marker = "DataError: "
    lines = [ln for ln in text.strip().splitlines() if marker in ln]
    if not lines:
        return "<unknown file>", text.strip()
    rest = lines[-1].split(marker, 1)[1]
    path, sep, problem = rest.partition(": ")
    return (path, problem) if sep else ("<unknown file>", rest)
