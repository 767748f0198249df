"""A batch's cases, held compactly, and the queue of those still to start.

A batch of 10,000 cases should not hold 10,000 task dicts while the first case
runs: :class:`CaseTable` keeps what discovery found as plain strings (about 200
bytes a case instead of 600 for :class:`~.discovery.CaseFolder` objects with their
paths), and :class:`CaseQueue` keeps the numbers of the cases still to start (8
bytes each) and makes a case's task dict only when an executor looks at it.
"""

from __future__ import annotations

from array import array
from typing import Callable, Iterable, Iterator


class CaseTable:
    """The case folders of a batch, numbered 0 .. n-1 in the order given.

    ``case_ids[i]``, ``case_dirs[i]`` (str), ``problems`` (``{i: one line}`` for the
    cases that cannot run) and whether case ``i`` needs segmentation first.
    """

    def __init__(self, found: Iterable):
        self.case_ids: list[str] = []
        self.case_dirs: list[str] = []
        self.problems: dict[int, str] = {}
        self._segment = bytearray()
        for index, case in enumerate(found):
            self.case_ids.append(case.case_id)
            self.case_dirs.append(str(case.path))
            self._segment.append(bool(case.needs_segmentation))
            if case.problem:
                self.problems[index] = case.problem

    def __len__(self) -> int:
        return len(self.case_ids)

    def needs_segmentation(self, index: int) -> bool:
        return bool(self._segment[index])

    def runnable(self) -> Iterator[int]:
        """The cases without a problem, in order."""
        return (i for i in range(len(self.case_ids)) if i not in self.problems)


class CaseQueue:
    """``(index, task)`` pairs for the case numbers ``indices``, in order; ``make_task(index)``
    builds a task when the pair is asked for.

    What the executors use of a :class:`collections.deque`: ``queue[0]`` (the next
    pair, not taken), ``popleft()``, ``len()``, truth and iteration over the pairs
    not yet taken.
    """

    def __init__(self, indices: Iterable[int], make_task: Callable[[int], dict]):
        self._indices = array("q", indices)
        self._next = 0
        self._make_task = make_task
        self._head: tuple | None = None  # the next pair, once made (peeking twice gives the same dict)

    def __len__(self) -> int:
        return len(self._indices) - self._next

    def __bool__(self) -> bool:
        return self._next < len(self._indices)

    def __getitem__(self, position: int) -> tuple:
        if position != 0:
            raise IndexError("a case queue shows only its next case")
        if not self:
            raise IndexError("the case queue is empty")
        if self._head is None:
            index = self._indices[self._next]
            self._head = (index, self._make_task(index))
        return self._head

    def popleft(self) -> tuple:
        pair = self[0]
        self._next += 1
        self._head = None
        return pair

    def __iter__(self) -> Iterator[tuple]:
        for position in range(self._next, len(self._indices)):
            index = self._indices[position]
            yield (self._head if position == self._next and self._head is not None
                   else (index, self._make_task(index)))
