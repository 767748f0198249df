"""Fake slicer.i18n: no translation."""


def tr(text):
    return text


def translate(context, text):
    return text
