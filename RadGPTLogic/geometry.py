"""Voxel-grid geometry: orientations, affines and grid comparison (numpy only).

Frames used throughout the package:

* **source** frame: array axes exactly as stored in a file (or as Slicer hands an
  array over).
* **canonical** frame: the same voxels with axes permuted and flipped, never
  resampled, so that array axis 0 runs towards patient Right, axis 1 towards
  Anterior and axis 2 towards Superior (RAS+, the "closest canonical" orientation).
  Axis 2 is the axial slice axis of every measurement.

An *orientation* ``ornt`` is a (3, 2) float array: row ``s`` holds the canonical
axis that source axis ``s`` becomes and ``+1``/``-1`` for kept/flipped direction
(the layout nibabel uses, so values interoperate).  Every affine maps voxel indices
to RAS millimetres.

This module deliberately needs nothing but numpy: the measurement path (a case
built from in-memory arrays, as the Slicer module does) must run in a Python that
has no nibabel.
"""

from __future__ import annotations

import numpy as np

#: Two grids whose corresponding voxel centres lie within this distance (mm) are one grid.
GRID_TOLERANCE_MM = 1e-3


def canonical_orientation(affine: np.ndarray) -> np.ndarray:
    """Orientation taking the source axes of ``affine`` to the closest RAS+ axes.

    The rotation part of the affine (columns normalised to unit length) is replaced
    by its closest orthogonal matrix (polar decomposition through the SVD), so that
    shear or obliquity does not decide an axis by accident.  Source axes are then
    taken from the most decisive (largest single direction component) to the least,
    and each is assigned the world axis it moves along most; a world axis once taken
    is not offered again, which settles near-45-degree cases deterministically.
    (The same result as nibabel's ``io_orientation``, which the tests check.)

    Parameters
    ----------
    affine : (4, 4) array
        Voxel index -> RAS mm.

    Returns
    -------
    (3, 2) float array
        ``[canonical axis, +1 or -1]`` for each source axis.
    """
    linear = np.asarray(affine, float)[:3, :3]
    lengths = np.sqrt((linear * linear).sum(axis=0))
    lengths[lengths == 0] = 1.0
    directions = linear / lengths
    u, singular, vt = np.linalg.svd(directions, full_matrices=False)
    tol = singular.max() * 3 * np.finfo(singular.dtype).eps
    keep = singular > tol
    closest = u[:, keep] @ vt[keep]
    ornt = np.full((3, 2), np.nan)
    most_decisive_first = np.argsort(-np.max(closest**2, axis=0), kind="stable")
    for source_axis in most_decisive_first:
        column = closest[:, source_axis]
        if np.allclose(column, 0):
            continue
        world_axis = int(np.argmax(np.abs(column)))
        ornt[source_axis] = (world_axis, -1.0 if column[world_axis] < 0 else 1.0)
        closest[world_axis, :] = 0.0  # taken
    return ornt


def canonical_to_source_index(ornt: np.ndarray, source_shape) -> np.ndarray:
    """(4, 4) matrix taking canonical voxel indices to source voxel indices."""
    ornt = np.asarray(ornt, float)
    matrix = np.zeros((4, 4))
    matrix[3, 3] = 1.0
    for source_axis, (canonical_axis, direction) in enumerate(ornt):
        a = int(canonical_axis)
        if direction < 0:
            # Flipped: source index n-1-c for canonical index c.
            matrix[source_axis, a] = -1.0
            matrix[source_axis, 3] = source_shape[source_axis] - 1
        else:
            matrix[source_axis, a] = 1.0
    return matrix


def canonical_affine(affine: np.ndarray, source_shape, ornt: np.ndarray) -> np.ndarray:
    """Voxel-to-RAS affine of the canonical-frame array obtained with ``ornt``."""
    return np.asarray(affine, float) @ canonical_to_source_index(ornt, source_shape)


def source_affine(affine: np.ndarray, ornt: np.ndarray, source_shape) -> np.ndarray:
    """Voxel-to-RAS affine of the source frame; the inverse of :func:`canonical_affine`."""
    return np.asarray(affine, float) @ np.linalg.inv(canonical_to_source_index(ornt, source_shape))


def to_canonical(array: np.ndarray, ornt: np.ndarray) -> np.ndarray:
    """View of a source-frame ``array`` in the canonical frame (flips and a transpose; no copy)."""
    ornt = np.asarray(ornt, float)
    view = array
    for source_axis, direction in enumerate(ornt[:, 1]):
        if direction < 0:
            view = np.flip(view, axis=source_axis)
    # Canonical axis a is the source axis whose ornt row names a.
    return view.transpose(tuple(int(i) for i in np.argsort(ornt[:, 0])))


def from_canonical(array: np.ndarray, ornt: np.ndarray) -> np.ndarray:
    """Inverse of :func:`to_canonical`: a canonical-frame array as a source-frame view."""
    ornt = np.asarray(ornt, float)
    view = array.transpose(tuple(int(a) for a in ornt[:, 0]))
    for source_axis, direction in enumerate(ornt[:, 1]):
        if direction < 0:
            view = np.flip(view, axis=source_axis)
    return view


def canonical_box(ornt: np.ndarray, source_shape, source_box) -> tuple:
    """The canonical-frame slices covering the source-frame box ``source_box``.

    ``source_box`` holds one ``(start, stop)`` voxel range per source axis (stop
    exclusive); the result is a tuple of ``slice`` per canonical axis (R, A, S), so
    that ``to_canonical(a, ornt)[result]`` holds exactly the voxels of
    ``a[source ranges]``.
    """
    ornt = np.asarray(ornt, float)
    box = [slice(0, 0)] * len(source_box)
    for source_axis, (start, stop) in enumerate(source_box):
        canonical_axis, direction = int(ornt[source_axis, 0]), ornt[source_axis, 1]
        n = int(source_shape[source_axis])
        if direction < 0:  # source index s is canonical index n-1-s
            start, stop = n - stop, n - start
        box[canonical_axis] = slice(int(start), int(stop))
    return tuple(box)


def source_index_of_canonical_k(ornt: np.ndarray, source_shape, k: int) -> int:
    """Index along the source axis that became canonical axis 2 (S) of canonical slice ``k``."""
    source_axis = int(np.flatnonzero(np.asarray(ornt)[:, 0] == 2)[0])
    n = int(source_shape[source_axis])
    return int(n - 1 - k) if ornt[source_axis][1] < 0 else int(k)


def grid_deviation_mm(shape_a, affine_a, shape_b, affine_b) -> float:
    """Largest distance (mm) between corresponding corner voxel centres of two grids.

    ``inf`` when the shapes differ.  Two canonical grids describe the same physical
    voxels when this is within :data:`GRID_TOLERANCE_MM`.
    """
    if tuple(shape_a) != tuple(shape_b):
        return float("inf")
    corners = np.array(
        [[i, j, k, 1.0] for i in (0, shape_a[0] - 1) for j in (0, shape_a[1] - 1) for k in (0, shape_a[2] - 1)]
    )
    pa = corners @ np.asarray(affine_a, float).T
    pb = corners @ np.asarray(affine_b, float).T
    return float(np.max(np.linalg.norm(pa[:, :3] - pb[:, :3], axis=1)))


def orientation_code(ornt: np.ndarray) -> str:
    """Three letters naming where each source axis points, e.g. ``"LPS"`` or ``"RAS"``."""
    letters = (("L", "R"), ("P", "A"), ("I", "S"))
    return "".join(letters[int(a)][1 if d > 0 else 0] for a, d in np.asarray(ornt, float))
