"""Key images for report.html: one axial crop per lesion with its contour and calipers.

Each image is drawn from the findings (``canonical_slice``, ``calipers_ras_mm``, the
lesion's ``mask`` name) and the case's arrays; nothing is measured here.  The labels
print the diameters of findings.json rounded to 0.1 mm.

Display convention (radiological): the patient's right on the image's left, anterior
at the top.  The canonical frame has array axis 0 -> patient Right and axis 1 ->
Anterior, so a canonical axial slice ``s[i, j]`` is shown as ``s[::-1, ::-1].T``
(rows run from anterior to posterior, columns from the patient's right to left).

Pixels: the CT in an abdominal window (W400/L40) or, without a CT, the masks in grey;
upscaled bilinearly to about ``TARGET_PX`` pixels on the longer side with square
pixels in millimetres; the lesion's contour is the 2-pixel inner band of the
upscaled (bilinear, thresholded at 0.5) mask; calipers are solid 2-pixel lines.
"""

from __future__ import annotations

import base64
import math
from dataclasses import dataclass, field

import numpy as np

from ..findings import FindingsDict, LesionEntry
from .format import fmt_mm
from .png import encode_png

WINDOW_WIDTH = 400.0
WINDOW_LEVEL = 40.0
TARGET_PX = 360
MIN_HALF_WIDTH_MM = 30.0
MIN_MARGIN_MM = 15.0

CONTOUR_RGB = (255, 64, 64)
LONGEST_RGB = (255, 230, 0)
PERPENDICULAR_RGB = (0, 220, 255)
TEXT_RGB = (235, 235, 235)
CALIPER_COLORS = {"longest": LONGEST_RGB, "perpendicular": PERPENDICULAR_RGB}
NO_CT_NOTE = "mask-only image (no CT)"

# A 5 x 7 bitmap font: digits, '.', 'm', ' ', '-' and the orientation letters.
_GLYPHS = {
    "0": (".###.", "#...#", "#..##", "#.#.#", "##..#", "#...#", ".###."),
    "1": ("..#..", ".##..", "..#..", "..#..", "..#..", "..#..", ".###."),
    "2": (".###.", "#...#", "....#", "...#.", "..#..", ".#...", "#####"),
    "3": ("#####", "...#.", "..#..", "...#.", "....#", "#...#", ".###."),
    "4": ("...#.", "..##.", ".#.#.", "#..#.", "#####", "...#.", "...#."),
    "5": ("#####", "#....", "####.", "....#", "....#", "#...#", ".###."),
    "6": ("..##.", ".#...", "#....", "####.", "#...#", "#...#", ".###."),
    "7": ("#####", "....#", "...#.", "..#..", ".#...", ".#...", ".#..."),
    "8": (".###.", "#...#", "#...#", ".###.", "#...#", "#...#", ".###."),
    "9": (".###.", "#...#", "#...#", ".####", "....#", "...#.", ".##.."),
    ".": (".....", ".....", ".....", ".....", ".....", ".##..", ".##.."),
    "m": (".....", ".....", "##.#.", "#.#.#", "#.#.#", "#.#.#", "#.#.#"),
    " ": (".....",) * 7,
    "-": (".....", ".....", ".....", ".###.", ".....", ".....", "....."),
    "R": ("####.", "#...#", "#...#", "####.", "#.#..", "#..#.", "#...#"),
    "L": ("#....", "#....", "#....", "#....", "#....", "#....", "#####"),
    "A": (".###.", "#...#", "#...#", "#####", "#...#", "#...#", "#...#"),
    "P": ("####.", "#...#", "#...#", "####.", "#....", "#....", "#...."),
}
_GLYPH_BITS = {c: np.array([[ch == "#" for ch in row] for row in rows], bool) for c, rows in _GLYPHS.items()}


def text_bitmap(text: str, scale: int = 2) -> np.ndarray:
    """Bool (H, W) bitmap of ``text`` in the built-in 5 x 7 font (1 blank column between characters)."""
    cols = []
    for n, ch in enumerate(text):
        glyph = _GLYPH_BITS.get(ch)
        if glyph is None:
            raise ValueError(f"no glyph for {ch!r} in the key-image font")
        if n:
            cols.append(np.zeros((7, 1), bool))
        cols.append(glyph)
    bits = np.hstack(cols) if cols else np.zeros((7, 0), bool)
    return np.kron(bits, np.ones((scale, scale), bool)).astype(bool)


def mm_label(mm: float) -> str:
    """A caliper's label: its length from findings rounded to 0.1 mm (the reports' ``mm`` filter)."""
    return f"{fmt_mm(mm)} mm"


@dataclass
class KeyImage:
    """One lesion's key image (or why there is none).

    ``rgb`` is (H, W, 3) uint8; ``endpoints_px`` maps ``longest``/``perpendicular`` to
    the two end points as (x, y) = (column, row) in pixel-centre coordinates;
    ``contour`` is the bool contour band; ``labels`` the texts printed next to each
    caliper; ``note`` says what the image shows (or why it is missing).
    """

    lesion_id: str
    rgb: np.ndarray | None = None
    note: str = ""
    has_ct: bool = False
    endpoints_px: dict = field(default_factory=dict)
    labels: dict = field(default_factory=dict)
    label_boxes: dict = field(default_factory=dict)
    contour: np.ndarray | None = None
    window_voxels: tuple = ()
    _png: bytes | None = None

    @property
    def png(self) -> bytes | None:
        if self.rgb is None:
            return None
        if self._png is None:
            self._png = encode_png(self.rgb)
        return self._png

    @property
    def width(self) -> int:
        return 0 if self.rgb is None else int(self.rgb.shape[1])

    @property
    def height(self) -> int:
        return 0 if self.rgb is None else int(self.rgb.shape[0])

    def data_uri(self) -> str | None:
        png = self.png
        return None if png is None else "data:image/png;base64," + base64.b64encode(png).decode("ascii")


# ------------------------------------------------------------------- geometry
def _resample_matrix(n_in: int, n_out: int) -> np.ndarray:
    """(n_out, n_in) bilinear weights: output pixel p samples input coordinate (p + .5) n_in / n_out - .5."""
    u = (np.arange(n_out) + 0.5) * (n_in / n_out) - 0.5
    u = np.clip(u, 0.0, n_in - 1)
    lo = np.floor(u).astype(int)
    hi = np.minimum(lo + 1, n_in - 1)
    frac = u - lo
    m = np.zeros((n_out, n_in))
    rows = np.arange(n_out)
    np.add.at(m, (rows, lo), 1.0 - frac)
    np.add.at(m, (rows, hi), frac)
    return m


def _display(arr: np.ndarray) -> np.ndarray:
    """Canonical (i: R, j: A) plane -> display (rows: anterior->posterior, columns: right->left)."""
    return arr[::-1, ::-1].T


def _inner_band(mask: np.ndarray, width: int = 2) -> np.ndarray:
    """Pixels of ``mask`` within ``width`` 4-connected steps of its outside."""
    inner = mask.copy()
    for _ in range(width):
        p = np.pad(inner, 1, constant_values=False)
        inner = p[1:-1, 1:-1] & p[:-2, 1:-1] & p[2:, 1:-1] & p[1:-1, :-2] & p[1:-1, 2:]
    return mask & ~inner


def _draw_segment(rgb: np.ndarray, a, b, color, occupied: np.ndarray | None = None) -> None:
    """A solid line about 2 pixels wide from a to b ((x, y) pixel-centre coordinates)."""
    h, w = rgb.shape[:2]
    length = math.hypot(b[0] - a[0], b[1] - a[1])
    t = np.linspace(0.0, 1.0, max(2, int(math.ceil(length * 3)) + 1))
    x = a[0] + (b[0] - a[0]) * t
    y = a[1] + (b[1] - a[1]) * t
    xs = np.floor(x - 0.5).astype(int)
    ys = np.floor(y - 0.5).astype(int)
    xs = np.concatenate([xs, xs + 1, xs, xs + 1])
    ys = np.concatenate([ys, ys, ys + 1, ys + 1])
    ok = (xs >= 0) & (xs < w) & (ys >= 0) & (ys < h)
    rgb[ys[ok], xs[ok]] = color
    if occupied is not None:
        occupied[ys[ok], xs[ok]] = True


def _stamp_text(rgb: np.ndarray, text: str, x0: int, y0: int, color, pad: int = 3, scale: int = 2) -> tuple:
    """Text on a black box whose top-left corner is (x0, y0); returns the box (x0, y0, x1, y1)."""
    bits = text_bitmap(text, scale)
    h, w = rgb.shape[:2]
    bh, bw = bits.shape[0] + 2 * pad, bits.shape[1] + 2 * pad
    x0 = int(min(max(x0, 0), max(w - bw, 0)))
    y0 = int(min(max(y0, 0), max(h - bh, 0)))
    x1, y1 = min(x0 + bw, w), min(y0 + bh, h)
    rgb[y0:y1, x0:x1] = 0
    sub = bits[: y1 - y0 - pad, : x1 - x0 - pad]
    region = rgb[y0 + pad: y0 + pad + sub.shape[0], x0 + pad: x0 + pad + sub.shape[1]]
    region[sub] = color
    return (x0, y0, x1, y1)


def _text_size(text: str, pad: int = 3, scale: int = 2) -> tuple:
    bits_w = (6 * len(text) - 1) * scale if text else 0
    return bits_w + 2 * pad, 7 * scale + 2 * pad


def _place_label(size, a, b, shape, taken: list, busy: np.ndarray) -> tuple:
    """Top-left corner for a label of ``size`` next to segment a-b: beyond either end or beside the middle.

    Picks the candidate inside the image that overlaps the fewest already placed
    labels and drawn pixels (contour, calipers).
    """
    bw, bh = size
    h, w = shape
    d = np.subtract(b, a).astype(float)
    n = float(np.hypot(*d)) or 1.0
    d /= n
    normal = np.array([-d[1], d[0]])
    gap = 7.0
    centres = []
    for end, sign in ((b, 1.0), (a, -1.0)):
        anchor = np.asarray(end, float) + sign * d * gap
        centres.append(anchor + sign * np.array([d[0] * bw / 2, d[1] * bh / 2]))
    mid = (np.asarray(a, float) + np.asarray(b, float)) / 2
    for s in (1.0, -1.0):
        centres.append(mid + s * normal * (gap + abs(normal[0]) * bw / 2 + abs(normal[1]) * bh / 2))
    best, best_score = None, None
    for rank, c in enumerate(centres):
        x0 = int(round(c[0] - bw / 2))
        y0 = int(round(c[1] - bh / 2))
        x0c = min(max(x0, 0), max(w - bw, 0))
        y0c = min(max(y0, 0), max(h - bh, 0))
        moved = abs(x0c - x0) + abs(y0c - y0)
        overlap = 0
        for tx0, ty0, tx1, ty1 in taken:
            ox = max(0, min(x0c + bw, tx1) - max(x0c, tx0))
            oy = max(0, min(y0c + bh, ty1) - max(y0c, ty0))
            overlap += ox * oy
        covered = int(busy[y0c: y0c + bh, x0c: x0c + bw].sum())
        score = (overlap * 100 + covered * 4 + moved, rank)
        if best_score is None or score < best_score:
            best, best_score = (x0c, y0c), score
    assert best is not None  # four candidates: one is always chosen
    return best


# ---------------------------------------------------------------- key images
def _lesion_plane(case, lesion: LesionEntry, k: int):
    """(plane, offset_ij): the lesion's mask in axial slice k over the mask's crop (typed masks removed
    from a generic ``*_lesion`` mask, as the engine does)."""
    from .. import vocabulary as vocab

    mask_name = lesion.get("mask") or ""
    crop = case.crop(mask_name)
    if crop is None or crop.is_empty or not (crop.offset[2] <= k < crop.offset[2] + crop.shape[2]):
        return None, (0, 0)
    plane = crop.mask[:, :, k - crop.offset[2]].copy()
    organ = vocab.LESION_ORGAN_KIND.get(mask_name, (None, None))[0]
    if organ is not None and vocab.GENERIC_LESION.get(organ) == mask_name:
        for other, (o, _) in vocab.LESION_ORGAN_KIND.items():
            typed = case.crop(other) if other != mask_name and o == organ else None
            if typed is not None and not typed.is_empty:
                box_start, box_shape = (crop.offset[0], crop.offset[1], k), (plane.shape[0], plane.shape[1], 1)
                plane &= ~typed.in_box(box_start, box_shape)[:, :, 0]
    return plane, (crop.offset[0], crop.offset[1])


def _select_component(plane: np.ndarray, offset_ij, points_ij: list) -> np.ndarray:
    """The 2-D components (8-connected) of ``plane`` within 1.5 voxels of any caliper end point."""
    from scipy import ndimage

    labels, n = ndimage.label(plane, structure=np.ones((3, 3), bool))
    if n <= 1:
        return plane
    keep: set[int] = set()  # component labels
    idx = np.argwhere(plane)
    for p in points_ij:
        d = np.hypot(idx[:, 0] + offset_ij[0] - p[0], idx[:, 1] + offset_ij[1] - p[1])
        near = idx[d <= 1.5]
        keep.update(int(labels[i, j]) for i, j in near)
    if not keep:
        return plane
    return np.isin(labels, sorted(keep))


def key_image(case, lesion: LesionEntry, target_px: int = TARGET_PX) -> KeyImage:
    """The key image of one lesion (see the module docstring)."""
    lid = lesion.get("id", "lesion")
    k = lesion.get("canonical_slice")
    calipers = lesion.get("calipers_ras_mm") or {}
    if k is None or not calipers.get("longest"):
        return KeyImage(lid, note="no key image (no caliper data in the findings)")
    k = int(k)
    if not 0 <= k < case.shape[2]:
        return KeyImage(lid, note="no key image (slice outside the case grid)")
    inv = np.linalg.inv(np.asarray(case.affine, float))
    vox = {}
    for name in ("longest", "perpendicular"):
        pair = calipers.get(name)
        if pair:
            vox[name] = [inv[:3, :3] @ np.asarray(p, float) + inv[:3, 3] for p in pair]
    points_ij = [p[:2] for pair in vox.values() for p in pair]

    plane, off = _lesion_plane(case, lesion, k)
    comp = None
    if plane is not None and plane.any():
        comp = _select_component(plane, off, points_ij)
        idx = np.argwhere(comp) + off
        lo = np.minimum(idx.min(axis=0), np.min(points_ij, axis=0))
        hi = np.maximum(idx.max(axis=0), np.max(points_ij, axis=0))
    else:
        lo, hi = np.min(points_ij, axis=0), np.max(points_ij, axis=0)

    sp = np.asarray(case.spacing, float)[:2]
    centre_mm = (lo + hi) / 2.0 * sp
    extent_mm = (hi - lo + 1) * sp
    margin = max(MIN_MARGIN_MM, 0.5 * float(lesion.get("longest_diameter_mm") or 0.0))
    half = max(MIN_HALF_WIDTH_MM, float(extent_mm.max()) / 2 + margin)
    start = np.floor((centre_mm - half) / sp + 0.5).astype(int)
    stop = np.floor((centre_mm + half) / sp + 0.5).astype(int) + 1
    start = np.maximum(start, 0)
    stop = np.minimum(stop, np.asarray(case.shape[:2]))
    (i0, j0), (i1, j1) = start, stop
    ni, nj = int(i1 - i0), int(j1 - j0)

    # Lesion mask over the window.
    lesion_win = np.zeros((ni, nj), bool)
    if comp is not None:
        a0, b0 = max(i0, off[0]), max(j0, off[1])
        a1, b1 = min(i1, off[0] + comp.shape[0]), min(j1, off[1] + comp.shape[1])
        if a1 > a0 and b1 > b0:
            lesion_win[a0 - i0: a1 - i0, b0 - j0: b1 - j0] = comp[a0 - off[0]: a1 - off[0], b0 - off[1]: b1 - off[1]]

    if case.has_ct:
        hu = case.hu((slice(i0, i1), slice(j0, j1), slice(k, k + 1)))[:, :, 0].astype(float)
        lo_hu = WINDOW_LEVEL - WINDOW_WIDTH / 2
        grey = np.clip((hu - lo_hu) / WINDOW_WIDTH, 0.0, 1.0) * 255.0
        note = f"axial, W{WINDOW_WIDTH:g}/L{WINDOW_LEVEL:g}"
    else:
        from .. import vocabulary as vocab

        grey = np.zeros((ni, nj))
        for organ_mask in vocab.LESION_ORGAN_MASKS.get(lesion.get("organ") or "", ()):
            c = case.crop(organ_mask)
            if c is not None and not c.is_empty:
                grey[c.in_box((i0, j0, k), (ni, nj, 1))[:, :, 0]] = 90.0
        grey[lesion_win] = 140.0
        note = NO_CT_NOTE

    # Display orientation and upscaling (square pixels in mm).
    zoom = target_px / max(ni * sp[0], nj * sp[1])
    out_w = max(1, int(round(ni * sp[0] * zoom)))
    out_h = max(1, int(round(nj * sp[1] * zoom)))
    mx = _resample_matrix(ni, out_w)
    my = _resample_matrix(nj, out_h)
    grey_up = my @ _display(grey) @ mx.T
    mask_up = (my @ _display(lesion_win.astype(float)) @ mx.T) >= 0.5
    rgb = np.repeat(np.clip(np.rint(grey_up), 0, 255).astype(np.uint8)[:, :, None], 3, axis=2)
    contour = _inner_band(mask_up, 2)
    rgb[contour] = CONTOUR_RGB
    busy = contour.copy()

    def to_px(p):
        col = (ni - 1) - (p[0] - i0)
        row = (nj - 1) - (p[1] - j0)
        return (float((col + 0.5) * out_w / ni - 0.5), float((row + 0.5) * out_h / nj - 0.5))

    endpoints, labels, boxes = {}, {}, {}
    for name, pair in vox.items():
        a, b = to_px(pair[0]), to_px(pair[1])
        endpoints[name] = (a, b)
        _draw_segment(rgb, a, b, CALIPER_COLORS[name], busy)
    taken: list[tuple[int, int, int, int]] = []  # placed labels: (x0, y0, x1, y1) pixels
    diameters_mm = {"longest": lesion.get("longest_diameter_mm"),
                    "perpendicular": lesion.get("perpendicular_diameter_mm")}
    for name, (a, b) in endpoints.items():
        mm = diameters_mm.get(name)
        if mm is None:
            continue
        text = mm_label(mm)
        x0, y0 = _place_label(_text_size(text), a, b, rgb.shape[:2], taken, busy)
        box = _stamp_text(rgb, text, x0, y0, CALIPER_COLORS[name])
        taken.append(box)
        labels[name], boxes[name] = text, box
    _orientation_marks(rgb, taken)
    _scale_bar(rgb, zoom, taken)
    return KeyImage(
        lid, rgb=rgb, note=note, has_ct=case.has_ct, endpoints_px=endpoints, labels=labels, label_boxes=boxes,
        contour=contour, window_voxels=((int(i0), int(i1)), (int(j0), int(j1)), k),
    )


def _orientation_marks(rgb: np.ndarray, taken: list) -> None:
    """R (left edge), L (right edge), A (top), P (bottom), small and grey."""
    h, w = rgb.shape[:2]
    tw, th = _text_size("R", pad=2)
    spots = {"R": (0, (h - th) // 2), "L": (w - tw, (h - th) // 2),
             "A": ((w - tw) // 2, 0), "P": ((w - tw) // 2, h - th)}
    for letter, (x, y) in spots.items():
        if any(x < x1 and x + tw > x0 and y < y1 and y + th > y0 for x0, y0, x1, y1 in taken):
            continue
        _stamp_text(rgb, letter, x, y, TEXT_RGB, pad=2)


def _scale_bar(rgb: np.ndarray, zoom: float, taken: list) -> None:
    """A 5/10/20/50 mm bar (the first at least 40 pixels long) in the bottom-right corner."""
    h, w = rgb.shape[:2]
    mm = next((m for m in (5, 10, 20, 50, 100) if m * zoom >= 40), None)
    if mm is None or mm * zoom > w / 2:
        return
    length = int(round(mm * zoom))
    text = f"{mm} mm"
    tw, th = _text_size(text, pad=2)
    x1, y = w - 6, h - 6
    x0 = x1 - length
    box = (min(x0, x1 - tw) - 2, y - th - 6, x1 + 2, y + 3)
    if any(box[0] < b[2] and box[2] > b[0] and box[1] < b[3] and box[3] > b[1] for b in taken):
        return
    rgb[y - 1: y + 2, x0: x1] = TEXT_RGB
    rgb[y - 5: y + 2, x0: x0 + 2] = TEXT_RGB
    rgb[y - 5: y + 2, x1 - 2: x1] = TEXT_RGB
    _stamp_text(rgb, text, x1 - tw, y - th - 4, TEXT_RGB, pad=2)


def key_images(case, findings: FindingsDict, target_px: int = TARGET_PX, only=None) -> dict:
    """lesion id -> :class:`KeyImage` for every lesion of ``findings`` (or those whose id is in
    ``only``); empty without a case."""
    if case is None:
        return {}
    out = {}
    wanted = None if only is None else set(only)
    for lesion in findings.get("lesions", []):
        if wanted is not None and lesion.get("id") not in wanted:
            continue
        try:
            out[lesion["id"]] = key_image(case, lesion, target_px)
        except Exception as exc:  # noqa: BLE001 - one bad picture must not cost the whole report
            out[lesion["id"]] = KeyImage(lesion["id"], note=f"no key image ({type(exc).__name__}: {exc})")
    return out
