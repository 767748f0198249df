"""Number formats of every report: the one place a measurement is rounded for display.

Templates reach these as jinja2 filters (:data:`RadGPTLogic.report.structured.FILTERS`);
key-image labels and other texts call them directly.  ``None`` shows as ``n/a``.
Units: lengths in mm in, cm or mm out; volumes in mL; HU; degrees.
"""

from __future__ import annotations


def _fixed(value, decimals: int) -> str:
    text = f"{float(value):.{decimals}f}"
    if text.startswith("-") and float(text) == 0.0:
        text = text[1:]
    return text


def fmt_cm(mm) -> str:
    """Millimetres shown as centimetres, 1 decimal: 29.53 -> '3.0'."""
    return "n/a" if mm is None else _fixed(float(mm) / 10.0, 1)


def fmt_mm(mm) -> str:
    """Millimetres, 1 decimal (caliper labels)."""
    return "n/a" if mm is None else _fixed(mm, 1)


def fmt_ml(ml) -> str:
    """Millilitres, 1 decimal."""
    return "n/a" if ml is None else _fixed(ml, 1)


def fmt_mm3(ml) -> str:
    """A volume in mL shown in cubic millimetres, 1 decimal."""
    return "n/a" if ml is None else _fixed(float(ml) * 1000.0, 1)


def fmt_hu(hu) -> str:
    """Hounsfield units, whole numbers."""
    return "n/a" if hu is None else _fixed(hu, 0)


def fmt_deg(deg) -> str:
    """Contact angle in whole degrees; 1 decimal near 180 so the number never contradicts
    the abutment (<= 180) / encasement (> 180) word."""
    if deg is None:
        return "n/a"
    d = float(deg)
    return _fixed(d, 1) if 179.5 <= d <= 180.5 and d != 180.0 else _fixed(d, 0)


def fmt_pct(fraction) -> str:
    """A fraction 0..1 as a whole percentage (no % sign)."""
    return "n/a" if fraction is None else _fixed(float(fraction) * 100.0, 0)


def fmt_ratio(value) -> str:
    """A ratio, 2 decimals."""
    return "n/a" if value is None else _fixed(value, 2)


def fmt_num(value) -> str:
    """A rule threshold as written in the rules (``%g``)."""
    return "n/a" if value is None else f"{float(value):g}"
