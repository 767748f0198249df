"""The measurement side of the panel: case, engine, changed segments -> findings and report.

Everything here runs on the module's worker thread and only touches copies taken on
the GUI thread (:class:`~RadGPTSlicerLib.layers.LayerSnapshot`, the CT copy), so
it never reads Slicer's memory and never blocks the GUI.  One
:class:`MeasurementSession` lives per Compute: it owns the
:class:`~RadGPTLogic.engine.Engine`, the
:class:`~RadGPTSlicerLib.layers.SegmentTracker` and the key-image cache.

An update pushes only the structures whose segments changed into the engine
(``Engine.update_structure``; the engine's content-hash cache recomputes only what
reads them), re-renders the key image of a lesion only when its own masks changed,
and renders the panel's report HTML with images referenced by name (the GUI adds
each new PNG once as a document resource).
"""

from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import dataclass, field

import numpy as np

from RadGPTLogic import vocabulary as vocab
from RadGPTLogic.case import Case, Crop
from RadGPTLogic.case import union_crops as core_union_crops

from .layers import SegmentTracker


@dataclass
class UpdateResult:
    """What the GUI thread swaps in: findings, report HTML, new key images, timings.

    ``images_pending`` lists lesions whose key image is still to be drawn (the HTML
    shows "key image updating" for them); :meth:`MeasurementSession.render_images`
    draws them next, unless another edit comes first.
    """

    findings: dict
    html: str
    changed_segments: tuple
    new_images: dict = field(default_factory=dict)  # resource name -> PPM bytes (QImage reads them as they are)
    timings: dict = field(default_factory=dict)     # step -> seconds
    warnings: list = field(default_factory=list)
    images_pending: tuple = ()


def union_crops(crops: list) -> Crop:
    """Union of crops in one canonical frame (segments that name one structure)."""
    return core_union_crops(crops)


#: Shown in place of a key image being redrawn.
IMAGE_PENDING_NOTE = "key image updating..."


def ppm_bytes(rgb: np.ndarray) -> bytes:
    """An (H, W, 3) uint8 image as binary PPM: no compression, so the GUI decodes it in microseconds."""
    rgb = np.ascontiguousarray(rgb, dtype=np.uint8)
    return b"P6\n%d %d\n255\n" % (rgb.shape[1], rgb.shape[0]) + rgb.tobytes()


class KeyImageCache:
    """Key images per lesion, re-rendered only when what they show changed.

    A lesion's image depends on its mask (and, for a generic ``*_lesion`` mask, the
    typed masks of the same organ subtracted from it), the slice and calipers of
    its finding, and the CT.  That is the cache key; the resource name embeds it,
    so the GUI's text document keeps each image once.  Images go to the GUI as PPM
    (the panel shows them at their size; report.html keeps PNG).
    """

    def __init__(self):
        self._by_key: dict = {}
        self._fresh: dict = {}  # drawn but not yet handed to the GUI: resource name -> PPM bytes
        self.renders = 0

    def _key(self, case, lesion: dict, digests) -> tuple:
        mask = lesion.get("mask") or ""
        organ = vocab.LESION_ORGAN_KIND.get(mask, (None, None))[0]
        generic = vocab.GENERIC_LESION.get(organ) if organ else None
        # a generic mask has its organ's typed masks removed in the image; a typed mask is drawn alone
        if mask == generic:
            related = sorted(m for m, (o, _) in vocab.LESION_ORGAN_KIND.items() if o == organ)
        else:
            related = [mask]
        if not case.has_ct and organ:  # without a CT the organ masks are drawn in grey
            related += list(vocab.LESION_ORGAN_MASKS.get(organ, ()))
        return (lesion["id"], tuple((m, digests(m)) for m in related if case.has(m)), lesion.get("slice_index"),
                repr(lesion.get("calipers_ras_mm")), lesion.get("longest_diameter_mm"),
                lesion.get("perpendicular_diameter_mm"))

    @staticmethod
    def _shown(entry) -> dict:
        name, data, ki = entry
        return {"src": name if data is not None else None, "width": ki.width, "height": ki.height,
                "note": ki.note, "has_ct": ki.has_ct, "labels": ki.labels}

    def lookup(self, case, findings: dict, digests) -> tuple:
        """(images for report_context, ids of lesions whose image must be drawn): nothing is drawn."""
        images, pending = {}, []
        for lesion in findings.get("lesions", []):
            entry = self._by_key.get(self._key(case, lesion, digests))
            if entry is None:
                pending.append(lesion["id"])
                images[lesion["id"]] = {"src": None, "width": 0, "height": 0, "note": IMAGE_PENDING_NOTE,
                                        "has_ct": case.has_ct, "labels": {}}
            else:
                images[lesion["id"]] = self._shown(entry)
        return images, tuple(pending)

    def draw_next(self, case, findings: dict, digests) -> bool:
        """Draw the first missing key image of ``findings``; False when none is missing."""
        from RadGPTLogic.report.keyimages import KeyImage, key_image

        for lesion in findings.get("lesions", []):
            key = self._key(case, lesion, digests)
            if key in self._by_key:
                continue
            try:
                ki = key_image(case, lesion)
            except Exception as exc:  # noqa: BLE001 - one bad picture must not cost the report
                ki = KeyImage(lesion["id"], note=f"no key image ({type(exc).__name__}: {exc})")
            self.renders += 1
            name = "radgpt-key-%08x.ppm" % (abs(hash(key)) & 0xFFFFFFFF)
            data = ppm_bytes(ki.rgb) if ki.rgb is not None else None
            self._by_key[key] = (name, data, ki)
            if data is not None:
                self._fresh[name] = data
            return True
        return False

    def images(self, case, findings: dict, digests, stop=None) -> tuple:
        """(images for report_context, new resource name -> PPM bytes); draws what is missing.

        ``stop()`` is asked before each drawing; when true, the rest stay pending
        (``(None, {})`` is returned and the images drawn so far are kept for later).
        Images of lesions no longer in ``findings`` are dropped.
        """
        while True:
            if stop is not None and stop():
                return None, {}
            if not self.draw_next(case, findings, digests):
                break
        images, keep = {}, {}
        for lesion in findings.get("lesions", []):
            key = self._key(case, lesion, digests)
            keep[key] = self._by_key[key]
            images[lesion["id"]] = self._shown(keep[key])
        self._by_key = keep
        new, self._fresh = self._fresh, {}
        return images, new

    def all_images(self) -> dict:
        return {name: data for name, data, _ in self._by_key.values() if data is not None}


def render_panel_html(findings: dict, images: dict) -> str:
    """The report page of the panel (the shipped HTML template; images by resource name)."""
    from RadGPTLogic.report.structured import get_environment, report_context

    return get_environment(None).get_template("report.html.j2").render(report_context(findings, images, None))


class MeasurementSession:
    """Case + engine + tracker for one CT and segmentation (worker thread only).

    Parameters
    ----------
    case_id : str
    ct_ijk : ndarray
        The CT as ``[i, j, k]`` (a copy; may be None for a segmentation without CT).
    ijk_to_ras : ndarray
        (4, 4) voxel-to-RAS matrix of the CT (Slicer's ``GetIJKToRASMatrix``).
    phase : str
    """

    def __init__(self, case_id: str, ct_ijk, ijk_to_ras, phase: str, source_name: str = ""):
        from RadGPTLogic.engine import Engine

        self.case = Case.from_arrays(case_id, np.asarray(ijk_to_ras, float), {}, ct=ct_ijk)
        if source_name:
            self.case.sources["ct"] = [{"name": source_name}]
        self.engine = Engine(self.case, phase)
        self.tracker = SegmentTracker(self.case.source_shape, self.case.ornt)
        self.images = KeyImageCache()
        self.names: dict = OrderedDict()  # segment ID -> segment name (what the engine reflects)
        self._digests: dict = {}
        self.updates = 0
        self.findings: dict = {}  # what the last update computed
        self._drawing = (0.0, 0.0)  # seconds (wall, CPU) spent drawing key images one by one

    # ----------------------------------------------------------------- helpers
    def _digest(self, name: str):
        crop = self.case.crop(name)
        if crop is None:
            return None
        held = self._digests.get(name)
        if held is None or held[0] is not crop:
            held = (crop, crop.digest())
            self._digests[name] = held
        return held[1]

    def _canonical(self, name):
        return vocab.canonical_name(name) if name else None

    def _notes(self, names: dict) -> None:
        """case.ignored / warnings for segment names that are not RadGPT structures."""
        self.case.ignored = [n for n in names.values() if self._canonical(n) is None and vocab.is_known_unused(n)]
        base = [w for w in self.case.warnings if not w.endswith("unknown structure name (ignored)")]
        base += [f"{n}: unknown structure name (ignored)" for n in names.values()
                 if self._canonical(n) is None and not vocab.is_known_unused(n)]
        self.case.warnings = base

    # ------------------------------------------------------------------- update
    def apply(self, snapshots, names: dict, full_crops=None, force: bool = False):
        """Bring the engine up to date; return an :class:`UpdateResult` or None (nothing changed).

        ``snapshots``: layer copies of the segments that may have changed (or of all).
        ``names``: segment ID -> name for *all* segments now in the segmentation.
        ``full_crops``: segment ID -> canonical Crop read through the full-extent
        export (segments whose layer is off the CT lattice).
        """
        t0, cpu0 = time.perf_counter(), time.thread_time()
        changed = set(self.tracker.update(snapshots))
        for sid, crop in (full_crops or {}).items():
            if self.tracker.set_crop(sid, crop):
                changed.add(sid)
        removed = [sid for sid in self.names if sid not in names]
        renamed = [sid for sid, name in names.items() if sid in self.names and self.names[sid] != name]
        added = [sid for sid in names if sid not in self.names]
        self.tracker.forget(removed)
        affected = set()
        for sid in list(changed) + renamed + added + removed:
            for name in (self.names.get(sid), names.get(sid)):
                canonical = self._canonical(name)
                if canonical:
                    affected.add(canonical)
        t1 = time.perf_counter()
        self.names = OrderedDict(names)
        self._notes(names)
        for canonical in sorted(affected):
            members = [sid for sid, name in names.items() if self._canonical(name) == canonical]
            if not members:
                self.engine.remove_structure(canonical)
                continue
            self.engine.update_structure(canonical, union_crops([self.tracker.crop(s) for s in members]))
            self.case.sources[canonical] = [{"name": names[s], "segment_id": s} for s in members]
        if not affected and not force:
            return None
        findings = self.engine.compute().to_dict()
        t2 = time.perf_counter()
        images, pending = self.images.lookup(self.case, findings, self._digest)
        html = render_panel_html(findings, images)
        t3 = time.perf_counter()
        self.updates += 1
        self.findings = findings
        return UpdateResult(findings, html, tuple(sorted(changed)), {},
                            {"track": t1 - t0, "compute": t2 - t1, "report": t3 - t2,
                             "cpu": time.thread_time() - cpu0}, images_pending=pending)

    def render_images(self, stop=None):
        """Draw the key images the last update left pending; an :class:`UpdateResult` or None (stopped).

        Its timings include the images drawn one by one before (:meth:`draw_next_image`).
        """
        t0, cpu0 = time.perf_counter(), time.thread_time()
        findings = self.findings
        images, new = self.images.images(self.case, findings, self._digest, stop)
        if images is None:
            return None
        t1 = time.perf_counter()
        html = render_panel_html(findings, images)
        drawn, drawn_cpu = self._drawing
        self._drawing = (0.0, 0.0)
        return UpdateResult(findings, html, (), new, {"images": drawn + t1 - t0, "report": time.perf_counter() - t1,
                                                      "cpu": drawn_cpu + time.thread_time() - cpu0})

    def draw_next_image(self) -> bool:
        """Draw one pending key image of the last update; False when none is left (see :meth:`render_images`)."""
        t0, cpu0 = time.perf_counter(), time.thread_time()
        drew = self.images.draw_next(self.case, self.findings, self._digest)
        wall, cpu = self._drawing
        self._drawing = (wall + time.perf_counter() - t0, cpu + time.thread_time() - cpu0)
        return drew

    def set_phase(self, phase: str):
        self.engine.set_phase(phase)
        return self.apply([], dict(self.names), force=True)

    @property
    def phase(self) -> str:
        return self.engine.phase

    def stats(self) -> dict:
        """Counters for tests and benchmarks: updates, key images drawn, segments changed last."""
        return {"updates": self.updates, "renders": self.images.renders,
                "last_changed": sorted(self.tracker.last_changed)}

    # ------------------------------------------------------------------- export
    def save_case(self, folder, case_id="", narrative=None) -> dict:
        from .export import save_case

        saved = save_case(self, folder, case_id, narrative)
        return {k: v for k, v in saved.items() if k != "findings"}

    def add_to_dataset(self, folder, dataset, case_id="", narrative=None) -> dict:
        from .export import add_to_dataset

        added = add_to_dataset(self, folder, dataset, case_id, narrative)
        return {k: v for k, v in added.items() if k != "findings"}

    def export_dicom(self, dicom_files, folder, case_id="") -> tuple:
        from .export import export_dicom

        return export_dicom(self, dicom_files, folder, case_id)

    def close(self) -> None:
        """Nothing to release in-process (the remote session ends its process)."""
