"""The one exception type that reaches users: bad input, named by file."""

from __future__ import annotations

import os


class InputError(Exception):
    """Bad input: the CLI prints ``<path>: <problem>`` on one line and exits non-zero.

    ``path`` names the file or folder at fault; ``problem`` says what is wrong with it
    in words a user can act on.
    """

    def __init__(self, path: str | os.PathLike | None, problem: str):
        self.path = os.fspath(path) if path is not None else None
        self.problem = problem
        super().__init__(self.one_line())

    def one_line(self) -> str:
        text = f"{self.path}: {self.problem}" if self.path else self.problem
        return " ".join(text.split())
