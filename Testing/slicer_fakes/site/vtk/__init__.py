"""Fake ``vtk`` for the Slicer-module tests: only what the module and the MRML fakes use.

Behaviour reproduced from VTK's Python wrapping (as Slicer ships it):

* ``obj.AddObserver(event, callback, priority)`` returns an integer tag;
  ``RemoveObserver(tag)`` removes it; ``InvokeEvent(event, callData)`` calls the
  observers in priority order.  A callback is called as ``callback(caller, event)``
  unless it carries a ``CallDataType`` attribute (set by ``@vtk.calldata_type``),
  in which case the call data is passed as a third argument: for ``VTK_STRING`` a
  Python ``str`` (the C ``char*`` Slicer passes, e.g. a segment ID).
* ``GetMTime()`` is a global, strictly increasing modification counter.

Anything not defined here raises ``AttributeError`` when the module under test
touches it, which is the point: the module may only use what the fakes model.
"""

from __future__ import annotations

import itertools
import threading

import numpy as np

VTK_STRING = 13
VTK_OBJECT = 14
VTK_INT = 6

_mtime = itertools.count(1)
_mtime_lock = threading.Lock()


def _next_mtime() -> int:
    with _mtime_lock:
        return next(_mtime)


def calldata_type(type_):
    """Decorator marking an observer that receives call data (vtkmodules.util.misc.calldata_type)."""

    def wrap(function):
        function.CallDataType = type_
        return function

    return wrap


class vtkCommand:
    DeleteEvent = 1
    ModifiedEvent = 33
    UserEvent = 1000


class vtkObject:
    """Observer bookkeeping and modification time, as vtkObject does."""

    def __init__(self):
        self._observers = {}  # tag -> (event, callback, priority, order)
        self._observer_tag = itertools.count(1)
        self._mtime = _next_mtime()
        #: every event invoked on this object: (event, callData) (for tests)
        self.invoked = []

    def GetClassName(self):
        return type(self).__name__

    def AddObserver(self, event, callback, priority=0.0):
        if isinstance(event, str):
            event = getattr(vtkCommand, event)
        tag = next(self._observer_tag)
        self._observers[tag] = (int(event), callback, float(priority), tag)
        return tag

    def RemoveObserver(self, tag):
        self._observers.pop(tag, None)

    def RemoveAllObservers(self):
        self._observers.clear()

    def HasObserver(self, event):
        return any(e == event for e, _, _, _ in self._observers.values())

    def NumberOfObservers(self) -> int:
        """Fake-only: how many observers are attached (tests check that none leak)."""
        return len(self._observers)

    def InvokeEvent(self, event, callData=None):
        self.invoked.append((event, callData))
        observers = sorted((o for o in self._observers.values() if o[0] == event), key=lambda o: (-o[2], o[3]))
        for _, callback, _, tag in observers:
            if tag not in self._observers:  # removed by an earlier observer
                continue
            if getattr(callback, "CallDataType", None) is not None:
                callback(self, event, callData)
            else:
                callback(self, event)

    def Modified(self):
        self._mtime = _next_mtime()
        self.InvokeEvent(vtkCommand.ModifiedEvent)

    def GetMTime(self):
        return self._mtime


class vtkMatrix4x4(vtkObject):
    def __init__(self):
        super().__init__()
        self._m = np.eye(4)

    def SetElement(self, r, c, v):
        self._m[r, c] = float(v)

    def GetElement(self, r, c):
        return float(self._m[r, c])

    def DeepCopy(self, other):
        self._m = np.array(other._m, dtype=float)

    def Identity(self):
        self._m = np.eye(4)


class vtkStringArray(vtkObject):
    def __init__(self):
        super().__init__()
        self._values = []

    def InsertNextValue(self, value):
        self._values.append(str(value))
        return len(self._values) - 1

    def GetNumberOfValues(self):
        return len(self._values)

    def GetValue(self, index):
        return self._values[index]


def mutable(value):
    """vtk.mutable (VTK's reference wrapper for output arguments)."""
    return _Mutable(value)


class _Mutable:
    def __init__(self, value):
        self._value = value

    def get(self):
        return self._value

    def set(self, value):
        self._value = value

    def __str__(self):
        return str(self._value)
