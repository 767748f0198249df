"""Fake ``qt`` (PythonQt's flat module) over PyQt5 (Qt 5.15, the Qt of Slicer 5.x).

PythonQt exposes QtCore, QtGui and QtWidgets classes in one ``qt`` module; this
module does the same with PyQt5's classes, so the RadGPT widget runs on a real Qt
event loop.  The module code keeps to the API both bindings share: methods
(``setText``, ``setEnabled``, ``isChecked``), ``QObject.property(name)`` for
reading properties, and ``signal.connect(callable)``.
"""

from PyQt5.QtCore import *  # noqa: F401,F403
from PyQt5.QtGui import *  # noqa: F401,F403
from PyQt5.QtWidgets import *  # noqa: F401,F403
