"""The 0.5 iso-contour of a binary 2-D mask, as vertices and line segments.

For a binary image, marching squares at level 0.5 puts every contour vertex at the
midpoint between a foreground and a background pixel centre, i.e. on the pixel
edge between them.  We only need the vertex set (for the longest chord) and the
unordered segments (for chords perpendicular to it), so no contour tracing is
done: everything is vectorised per slice.

Coordinates are (row, col) pixel indices of the input array, floats, with pixel
centres at integers.
"""

from __future__ import annotations

import numpy as np


def contour_vertices(mask2d: np.ndarray) -> np.ndarray:
    """All iso-contour vertices of a 2-D bool mask, shape (N, 2), in pixel index coordinates.

    A vertex sits half-way between each pair of 4-adjacent pixels where one is
    inside and the other outside (the image is treated as zero-padded).
    """
    m = np.pad(np.asarray(mask2d, bool), 1)
    rows_h, cols_h = np.nonzero(m[:, :-1] != m[:, 1:])  # horizontal neighbours differ
    rows_v, cols_v = np.nonzero(m[:-1, :] != m[1:, :])  # vertical neighbours differ
    pts = np.concatenate(
        [
            np.stack([rows_h, cols_h + 0.5], axis=1),
            np.stack([rows_v + 0.5, cols_v], axis=1),
        ]
    )
    return pts - 1.0  # undo the padding


def contour_segments(mask2d: np.ndarray) -> np.ndarray:
    """Iso-contour line segments of a 2-D bool mask, shape (S, 2, 2): S segments x 2 ends x (row, col).

    Marching squares over each 2x2 cell of pixel centres a=(r,c), b=(r,c+1),
    c=(r+1,c+1), d=(r+1,c).  Ambiguous saddle cells (diagonal pairs inside) join
    the inside pixels, matching the 8-connected in-plane view of a 26-connected
    3-D component.
    """
    m = np.pad(np.asarray(mask2d, bool), 1)
    a, b = m[:-1, :-1], m[:-1, 1:]
    d, c = m[1:, :-1], m[1:, 1:]
    r, q = np.mgrid[0: a.shape[0], 0: a.shape[1]].astype(float)
    # Midpoints of the four cell edges: top (a-b), right (b-c), bottom (d-c), left (a-d).
    edges = np.stack([a != b, b != c, d != c, a != d])  # (4, R, C)
    points = np.stack(
        [
            np.stack([r, q + 0.5], -1),
            np.stack([r + 0.5, q + 1.0], -1),
            np.stack([r + 1.0, q + 0.5], -1),
            np.stack([r + 0.5, q], -1),
        ]
    )  # (4, R, C, 2)
    n_edges = edges.sum(axis=0)
    out = []
    two = n_edges == 2
    if two.any():
        e = edges[:, two].T  # (n, 4) bool, exactly two True per row
        p = points[:, two].transpose(1, 0, 2)  # (n, 4, 2)
        idx = np.nonzero(e)[1].reshape(-1, 2)
        rows = np.arange(len(idx))
        out.append(np.stack([p[rows, idx[:, 0]], p[rows, idx[:, 1]]], axis=1))
    four = n_edges == 4
    if four.any():
        p = points[:, four].transpose(1, 0, 2)  # (n, 4, 2): T, R, B, L
        inside_ac = a[four]  # a and c inside, b and d outside: cut off corners b and d
        top, right, bottom, left = p[:, 0], p[:, 1], p[:, 2], p[:, 3]
        seg1 = np.where(inside_ac[:, None, None], np.stack([top, right], 1), np.stack([top, left], 1))
        seg2 = np.where(inside_ac[:, None, None], np.stack([left, bottom], 1), np.stack([right, bottom], 1))
        out.extend([seg1, seg2])
    if not out:
        return np.zeros((0, 2, 2))
    return np.concatenate(out) - 1.0  # undo the padding
