"""Fake slicer.parameterNodeWrapper (Slicer/Slicer Base/Python/slicer/parameterNodeWrapper).

Reproduces what the module relies on: a decorated class wraps a
``vtkMRMLScriptedModuleNode``; annotated fields are stored in it (node references
for MRML node types, parameters for the rest), defaults are written on first
wrap; ``connectGui(ui)`` binds every widget whose dynamic property
``SlicerParameterName`` names a field (``gui.__dict__`` values, as for the object
``slicer.util.childWidgetVariables`` returns), both ways; ``disconnectGui(tag)``
undoes it.  Connectors: qMRMLNodeComboBox (``currentNodeChanged``), QComboBox with
``Choice`` (items filled from the choices), QCheckBox (``toggled``).
"""

import typing

import qt

from .mrml import vtkMRMLNode

SlicerParameterNamePropertyName = "SlicerParameterName"


class Choice:
    def __init__(self, choices):
        self.choices = list(choices)


def _node_type(annotation):
    return isinstance(annotation, type) and issubclass(annotation, vtkMRMLNode)


def parameterNodeWrapper(cls):
    hints = typing.get_type_hints(cls, include_extras=True)
    fields = {}
    for name, hint in hints.items():
        base, extras = hint, []
        if typing.get_origin(hint) is typing.Annotated:
            base, *extras = typing.get_args(hint)
        fields[name] = (base, extras, getattr(cls, name, None))

    class Wrapped:
        _fields = fields

        def __init__(self, parameterNode):
            object.__setattr__(self, "parameterNode", parameterNode)
            object.__setattr__(self, "_guis", {})
            for name, (base, extras, default) in fields.items():
                if not _node_type(base) and parameterNode.GetParameter(name) == "" and default is not None:
                    parameterNode.SetParameter(name, _encode(base, default))

        def __getattr__(self, name):
            if name not in fields:
                raise AttributeError(name)
            base = fields[name][0]
            node = object.__getattribute__(self, "parameterNode")
            if _node_type(base):
                return node.GetNodeReference(name)
            return _decode(base, node.GetParameter(name))

        def __setattr__(self, name, value):
            if name not in fields:
                raise AttributeError(f"{name} is not a parameter")
            base = fields[name][0]
            if _node_type(base):
                self.parameterNode.SetNodeReferenceID(name, value.GetID() if value is not None else None)
            else:
                self.parameterNode.SetParameter(name, _encode(base, value))

        def AddObserver(self, event, callback, priority=0.0):
            return self.parameterNode.AddObserver(event, callback, priority)

        def RemoveObserver(self, tag):
            self.parameterNode.RemoveObserver(tag)

        def connectGui(self, gui):
            widgets = {}
            for widget in gui.__dict__.values():
                name = widget.property(SlicerParameterNamePropertyName)
                if name:
                    widgets[str(name)] = widget
            connections = []
            for name, widget in widgets.items():
                connections.append(_connect(self, name, fields[name], widget))
            tag = object()
            self._guis[tag] = connections
            return tag

        def disconnectGui(self, tag):
            for disconnect in self._guis.pop(tag, []):
                disconnect()

    Wrapped.__name__ = cls.__name__
    Wrapped.__doc__ = cls.__doc__
    return Wrapped


def _encode(base, value):
    if base is bool:
        return "true" if value else "false"
    return str(value)


def _decode(base, text):
    if base is bool:
        return text == "true"
    return text


def _connect(wrapper, name, field, widget):
    base, extras, _ = field
    node = wrapper.parameterNode
    state = {"updating": False}

    def from_param(*_args):
        if state["updating"]:
            return
        state["updating"] = True
        try:
            value = getattr(wrapper, name)
            if _node_type(base):
                widget.setCurrentNode(value)
            elif isinstance(widget, qt.QCheckBox):
                widget.setChecked(bool(value))
            elif isinstance(widget, qt.QComboBox):
                widget.setCurrentIndex(max(widget.findText(value), 0))
        finally:
            state["updating"] = False

    def to_param(*_args):
        if state["updating"]:
            return
        state["updating"] = True
        try:
            if _node_type(base):
                setattr(wrapper, name, widget.currentNode())
            elif isinstance(widget, qt.QCheckBox):
                setattr(wrapper, name, widget.isChecked())
            elif isinstance(widget, qt.QComboBox):
                setattr(wrapper, name, widget.currentText())
        finally:
            state["updating"] = False

    if isinstance(widget, qt.QComboBox) and not _node_type(base):
        choices = next((e.choices for e in extras if isinstance(e, Choice)), None)
        if choices is not None:
            widget.blockSignals(True)
            widget.clear()
            widget.addItems([str(c) for c in choices])
            widget.blockSignals(False)
    if _node_type(base):
        signal = widget.currentNodeChanged
    elif isinstance(widget, qt.QCheckBox):
        signal = widget.toggled
    elif isinstance(widget, qt.QComboBox):
        signal = widget.currentIndexChanged
    else:
        raise TypeError(f"no GUI connector for {type(widget).__name__} ({name})")
    signal.connect(to_param)
    tag = node.AddObserver(33, from_param)
    from_param()

    def disconnect():
        signal.disconnect(to_param)
        node.RemoveObserver(tag)

    return disconnect
