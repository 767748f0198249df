"""The Segment button: the segmentation stage's runner in its own process, driven from GUI timers.

Like SlicerNNUnet and SlicerMONAIAuto3DSeg, inference never runs in Slicer's process.
One :class:`SegmentRun` goes through four steps, none of which blocks the GUI for long:

1. **write CT** (worker thread): the CT voxels, copied on the GUI thread, are written
   as ``ct.nii.gz`` on the volume's own grid (Slicer's IJK-to-RAS is the NIfTI affine);
2. **segment** (separate process): the runner
   (``RadGPTLogic.segment.runner.SegmentationRunner``; interface: ``start``,
   non-blocking ``poll`` of ``RunnerEvent``\\ s, ``cancel``) is polled from a GUI timer;
   its progress events drive the progress bar;
3. **read masks** (worker thread): the case folder it writes is read and checked
   against the CT's grid, and the masks are packed into as few labelmap layers as
   their overlaps allow (an organ and its lesions go to different layers, as
   AbdomenAtlas masks overlap);
4. **load** (GUI thread, one small step per timer tick): a segmentation node with
   one segment per mask, canonical names (segment ID = name), Slicer's standard
   terminology and colours, ``DICOM.SegmentAlgorithmType`` = AUTOMATIC and the
   model as ``DICOM.SegmentAlgorithmName``; each layer is imported in one call
   (``ImportLabelmapToSegmentationNode`` with segment IDs), as Slicer loads a
   multi-label file.

Lesion probabilities in the runner's ``segmentation.json`` become the panel's
confidence (``structures`` -> ``<name>`` -> ``probability``).  Cancel works in every
step; nothing half-made stays in the scene or on disk.
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from RadGPTLogic import vocabulary as vocab

#: Terminology contexts of Slicer's terminology module (Modules/Loadable/Terminologies/Resources).
GENERAL_ANATOMY = "Segmentation category and type - 3D Slicer General Anatomy list"
DICOM_MASTER = "Segmentation category and type - DICOM master list"
ANATOMIC_CONTEXT = "Anatomic codes - DICOM master list"
ANATOMICAL_STRUCTURE = ("SCT", "123037004", "Anatomical Structure")
ALTERED_STRUCTURE = ("SCT", "49755003", "Morphologically Altered Structure")
LEFT, RIGHT = ("SCT", "7771000", "Left"), ("SCT", "24028007", "Right")

#: Canonical structure -> (terminology context, SNOMED CT type code, meaning, type modifier, RGB 0-255).
#: Codes and colours as listed in Slicer's General Anatomy and DICOM master lists (checked
#: against pydicom's code dictionary in the tests).
STRUCTURE_TERMS = {
    "liver": (GENERAL_ANATOMY, "10200004", "Liver", None, (221, 130, 101)),
    "spleen": (GENERAL_ANATOMY, "78961009", "Spleen", None, (157, 108, 162)),
    "pancreas": (GENERAL_ANATOMY, "15776009", "Pancreas", None, (249, 180, 111)),
    "kidney_left": (GENERAL_ANATOMY, "64033007", "Kidney", LEFT, (185, 102, 83)),
    "kidney_right": (GENERAL_ANATOMY, "64033007", "Kidney", RIGHT, (185, 102, 83)),
    "gall_bladder": (GENERAL_ANATOMY, "28231008", "Gallbladder", None, (139, 150, 98)),
    "stomach": (GENERAL_ANATOMY, "69695003", "Stomach", None, (216, 132, 105)),
    "duodenum": (GENERAL_ANATOMY, "38848004", "Duodenum", None, (255, 253, 229)),
    "colon": (GENERAL_ANATOMY, "71854001", "Colon", None, (204, 168, 143)),
    "intestine": (GENERAL_ANATOMY, "30315005", "Small Intestine", None, (205, 167, 142)),
    "esophagus": (GENERAL_ANATOMY, "32849002", "Esophagus", None, (211, 171, 143)),
    "adrenal_gland_left": (GENERAL_ANATOMY, "23451007", "Adrenal gland", LEFT, (249, 186, 150)),
    "adrenal_gland_right": (GENERAL_ANATOMY, "23451007", "Adrenal gland", RIGHT, (249, 186, 150)),
    "aorta": (GENERAL_ANATOMY, "15825003", "Aorta", None, (224, 97, 76)),
    "postcava": (DICOM_MASTER, "64131007", "Inferior vena cava", None, (0, 151, 206)),
    "portal_vein": (DICOM_MASTER, "32764006", "Portal vein", None, (0, 112, 165)),
    "splenic_vein": (DICOM_MASTER, "35819009", "Splenic vein", None, (0, 122, 171)),
    "superior_mesenteric_vein": (DICOM_MASTER, "90771006", "Superior Mesenteric Vein", None, (0, 132, 180)),
    "superior_mesenteric_artery": (DICOM_MASTER, "42258001", "Superior mesenteric artery", None, (216, 101, 79)),
    "celiac_trunk": (DICOM_MASTER, "57850000", "Truncus coeliacus", None, (230, 110, 80)),
    "common_hepatic_artery": (DICOM_MASTER, "66559000", "Common Hepatic Artery", None, (220, 90, 70)),
    "splenic_artery": (DICOM_MASTER, "22083002", "Splenic artery", None, (210, 95, 75)),
    "hepatic_veins": (DICOM_MASTER, "8993003", "Hepatic vein", None, (0, 140, 190)),
}
#: Lesion kind -> (terminology context, type code, meaning, RGB 0-255); the organ is the anatomic region.
LESION_TERMS = {
    "lesion": (GENERAL_ANATOMY, "4147007", "Mass", (144, 238, 144)),
    "tumor": (DICOM_MASTER, "108369006", "Neoplasm", (255, 215, 0)),
    "pdac": (DICOM_MASTER, "108369006", "Neoplasm", (255, 165, 0)),
    "pnet": (DICOM_MASTER, "108369006", "Neoplasm", (255, 140, 0)),
    "cyst": (GENERAL_ANATOMY, "367643001", "Cyst", (205, 205, 100)),
}
#: Colour of a structure with no entry above (organ parts, unknown names).
OTHER_RGB = (128, 174, 128)
#: Segments per labelmap layer (uint8 labels).
MAX_LABELS_PER_LAYER = 255


def _code(triple) -> str:
    return "^".join(triple) if triple else "^^"


def terminology_entry(canonical: str) -> str:
    """Slicer's serialised terminology entry of a structure
    (vtkSlicerTerminologiesModuleLogic::SerializeTerminologyEntry: context~category~type~type
    modifier~region context~region~region modifier), or "" when RadGPT has no code for it."""
    if canonical in vocab.LESION_ORGAN_KIND:
        organ, kind = vocab.LESION_ORGAN_KIND[canonical]
        context, code, meaning, _rgb = LESION_TERMS.get(kind, LESION_TERMS["lesion"])
        region = STRUCTURE_TERMS.get(organ if organ != "kidney" else "kidney_left")
        region_code = ("SCT", region[1], region[2]) if region else None
        return "~".join([context, _code(ALTERED_STRUCTURE), _code(("SCT", code, meaning)), _code(None),
                         ANATOMIC_CONTEXT, _code(region_code), _code(None)])
    term = STRUCTURE_TERMS.get(canonical)
    if term is None:
        return ""
    context, code, meaning, modifier, _rgb = term
    return "~".join([context, _code(ANATOMICAL_STRUCTURE), _code(("SCT", code, meaning)), _code(modifier),
                     ANATOMIC_CONTEXT, _code(None), _code(None)])


def display_color(canonical: str) -> tuple:
    """RGB (0-1) of a structure's segment: the terminology's recommended colour."""
    if canonical in vocab.LESION_ORGAN_KIND:
        rgb = LESION_TERMS.get(vocab.LESION_ORGAN_KIND[canonical][1], LESION_TERMS["lesion"])[3]
    else:
        rgb = STRUCTURE_TERMS.get(canonical, (None, None, None, None, OTHER_RGB))[4]
    return tuple(c / 255.0 for c in rgb)


def segment_order(names) -> list:
    """Organs, vessels, organ parts, lesions, then anything else (alphabetical within each)."""
    def rank(name):
        if name in vocab.ORGANS:
            return 0
        if name in vocab.VESSELS:
            return 1
        if name in vocab.LESION_ORGAN_KIND:
            return 3
        return 2 if vocab.canonical_name(name) else 4
    return sorted(names, key=lambda n: (rank(n), n))


# ------------------------------------------------------------------ runner
def python_executable() -> str:
    """The interpreter for the worker process: PythonSlicer inside Slicer, else this Python."""
    return shutil.which("PythonSlicer") or sys.executable


def make_runner(device: str = "auto", models=("total",)):
    """The segmentation stage's runner for ``models`` (presets or nnU-Net results folders, in
    precedence order).  Only the runner is imported here: torch and nnunetv2 load in its worker
    process, never in Slicer's."""
    from RadGPTLogic.segment.runner import SegmentationRunner

    return SegmentationRunner(list(models), device=device, python_executable=python_executable())


def progress_of(event):
    """(fraction or None, one line) for a progress event; None fraction = total unknown."""
    where = " ".join(p for p in (event.stage, event.model, f"fold {event.fold}" if event.fold else "") if p)
    if event.total:
        return event.done / float(event.total), f"{where}: {event.done}/{event.total}"
    return None, where or event.message


# ------------------------------------------------------------- worker-thread steps
def write_ct(ct_kji: np.ndarray, ijk_to_ras: np.ndarray, path) -> Path:
    """Write the CT (a ``[k, j, i]`` copy) as NIfTI on its own grid: affine = Slicer's IJK-to-RAS."""
    from RadGPTLogic.io.atomic import atomic_write_file
    from RadGPTLogic.io.nifti import source_nifti_gz_bytes

    ijk = np.asarray(ct_kji).transpose(2, 1, 0)
    return atomic_write_file(path, source_nifti_gz_bytes(ijk, np.asarray(ijk_to_ras, float)))


@dataclass
class LoadPlan:
    """Masks of a case folder ready for import: labelmap layers, the segments on each, metadata."""

    layers: list = field(default_factory=list)      # (labels [k, j, i] uint8, [canonical names, label n+1 = name n])
    models: dict = field(default_factory=dict)      # canonical -> model name
    confidence: dict = field(default_factory=dict)  # canonical lesion mask -> probability
    ignored: list = field(default_factory=list)     # mask files that are not RadGPT structures


def read_case_masks(case_dir, shape_kji, ijk_to_ras, should_stop=None) -> LoadPlan:
    """Read ``case_dir/segmentations/*.nii.gz`` (on the CT's grid) into labelmap layers.

    A mask goes to the first layer where it overlaps nothing already there.  Raises
    :class:`RadGPTLogic.errors.InputError` naming the file for a mask off the CT's grid.
    """
    from RadGPTLogic.errors import InputError
    from RadGPTLogic.geometry import from_canonical, source_affine
    from RadGPTLogic.io.casefolder import case_folder_files
    from RadGPTLogic.io.nifti import read_nifti

    from .layers import GRID_TOLERANCE_MM

    files = case_folder_files(case_dir)
    meta_path = Path(case_dir) / "segmentation.json"
    meta = {}
    if meta_path.is_file():
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
        except ValueError as exc:
            raise InputError(meta_path, f"not valid JSON ({exc})") from None
    structures = meta.get("structures", {}) if isinstance(meta, dict) else {}
    plan = LoadPlan()
    masks = {}
    shape_ijk = tuple(reversed(tuple(shape_kji)))
    for mask in files.masks:
        if should_stop is not None and should_stop():
            return plan
        if mask.structure is None:
            plan.ignored.append(mask.path.name)
            continue
        vol = read_nifti(mask.path)
        source = np.asarray(from_canonical(vol.array, vol.ornt))
        affine = source_affine(vol.affine, vol.ornt, source.shape)
        if tuple(source.shape) != shape_ijk or not np.allclose(affine, ijk_to_ras, atol=GRID_TOLERANCE_MM):
            raise InputError(mask.path, f"mask grid {tuple(source.shape)} is not the CT's grid {shape_ijk}")
        masks[mask.structure] = np.ascontiguousarray(source.transpose(2, 1, 0) != 0)
        info = structures.get(mask.structure) if isinstance(structures, dict) else None
        if isinstance(info, dict):
            if info.get("model"):
                plan.models[mask.structure] = str(info["model"])
            if info.get("probability") is not None and mask.structure in vocab.LESION_ORGAN_KIND:
                plan.confidence[mask.structure] = float(info["probability"])
    for name in segment_order(masks):
        mask = masks.pop(name)
        for labels, names in plan.layers:
            if len(names) < MAX_LABELS_PER_LAYER and not labels[mask].any():
                names.append(name)
                labels[mask] = len(names)
                break
        else:
            labels = np.zeros(mask.shape, np.uint8)
            labels[mask] = 1
            plan.layers.append((labels, [name]))
    return plan


# ------------------------------------------------------------------- one run
class SegmentRun:
    """One Segment click: write CT -> runner process -> read masks -> load segments (see the module doc).

    GUI thread only (its timers call :meth:`_tick`); heavy work runs in ``jobs``
    (a :class:`~RadGPTSlicerLib.jobs.JobRunner`) and in the runner's process.

    Callbacks (GUI thread): ``on_progress(fraction or None, text)``,
    ``on_done(segmentation node, confidence)``, ``on_error(message, cancelled=False)``.
    """

    def __init__(self, runner, volume_node, *, jobs, timer_factory, on_progress, on_done, on_error,
                 poll_ms: int = 100):
        self.runner = runner
        self.volume_node = volume_node
        self.jobs = jobs
        self.on_progress, self.on_done, self.on_error = on_progress, on_done, on_error
        self._timer = timer_factory(poll_ms, False, self._tick)
        self._tmp = None
        self._job = None
        self._plan = None
        self._node = None
        self._layer = 0
        self._cancelled = False
        self.step = "idle"
        self.finished = False

    # ------------------------------------------------------------- control
    def start(self) -> None:
        """Copy the CT (GUI thread) and queue its writing; the runner starts once it is written."""
        import slicer
        import vtk

        from .adapter import ijk_to_ras

        ct = np.array(slicer.util.arrayFromVolume(self.volume_node), copy=True)
        affine = ijk_to_ras(self.volume_node, vtk.vtkMatrix4x4)
        self._tmp = Path(tempfile.mkdtemp(prefix="radgpt_seg_"))
        ct_path = self._tmp / "ct.nii.gz"
        self.step = "write CT"
        self.on_progress(None, "Writing the CT for the segmentation process...")
        self._job = self.jobs.submit(lambda ctx: write_ct(ct, affine, ct_path), on_done=self._ct_written,
                                     on_error=self._failed, name="write CT")

    def cancel(self) -> None:
        """Stop whatever step runs; nothing is loaded (a partly built node is removed)."""
        if self.finished:
            return
        self._cancelled = True
        if self.step == "segment":
            self.runner.cancel()  # its "cancelled" event ends the run
            return
        if self._job is not None:
            self._job.cancel()
        if self.step == "load":
            self._finish(cancelled=True)

    # ------------------------------------------------------------- steps
    def _ct_written(self, ct_path) -> None:
        self._job = None
        if self._cancelled:
            self._finish(cancelled=True)
            return
        self.step = "segment"
        try:
            self.runner.start(str(ct_path), str(self._tmp / "case"))
        except Exception as exc:  # noqa: BLE001 - one line to the user
            self._failed(exc)
            return
        self._timer.start()

    def _tick(self) -> None:
        if self.finished:
            return
        if self.step == "segment":
            self._poll_runner()
        elif self.step == "load":
            self._load_step()

    def _poll_runner(self) -> None:
        for event in self.runner.poll():
            if event.kind == "progress":
                self.on_progress(*progress_of(event))
            elif event.kind == "log":
                import logging

                logging.getLogger("RadGPT").info("segmentation: %s", event.message)
            elif event.kind == "done":
                self._timer.stop()
                self.step = "read masks"
                self.on_progress(None, "Reading the masks...")
                shape = np.asarray(self._ct_shape())
                affine = self._affine()
                self._job = self.jobs.submit(
                    lambda ctx: read_case_masks(event.result, shape, affine, should_stop=ctx.cancelled),
                    on_done=self._masks_read, on_error=self._failed, name="read masks")
                return
            elif event.kind == "error":
                self._finish(message=event.message or "the segmentation process failed")
                return
            elif event.kind == "cancelled":
                self._finish(cancelled=True)
                return

    def _ct_shape(self):
        import slicer

        return slicer.util.arrayFromVolume(self.volume_node).shape

    def _affine(self):
        import vtk

        from .adapter import ijk_to_ras

        return ijk_to_ras(self.volume_node, vtk.vtkMatrix4x4)

    def _masks_read(self, plan) -> None:
        self._job = None
        if self._cancelled:
            self._finish(cancelled=True)
            return
        if not plan.layers:
            self._finish(message=f"{self._tmp / 'case' / 'segmentations'}: no mask with a RadGPT structure name")
            return
        self._plan = plan
        self.step = "load"
        self._layer = -1
        self._timer.start()

    def _load_step(self) -> None:
        """One piece of the import per tick: the node, then one labelmap layer, then the tags."""
        import slicer
        import vtk

        try:
            plan = self._plan
            if self._layer == -1:
                name = f"{self.volume_node.GetName()} RadGPT segmentation"
                node = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLSegmentationNode", name)
                self._node = node
                node.CreateDefaultDisplayNodes()
                node.SetReferenceImageGeometryParameterFromVolumeNode(self.volume_node)
                node.SetAndObserveTransformNodeID(self.volume_node.GetTransformNodeID())
                segmentation = node.GetSegmentation()
                for _labels, names in plan.layers:
                    for canonical in names:
                        segmentation.AddEmptySegment(canonical, canonical, list(display_color(canonical)))
            elif self._layer < len(plan.layers):
                labels, names = plan.layers[self._layer]
                matrix = vtk.vtkMatrix4x4()
                self.volume_node.GetIJKToRASMatrix(matrix)
                labelNode = slicer.util.addVolumeFromArray(labels, matrix, "RadGPT import",
                                                           "vtkMRMLLabelMapVolumeNode")
                try:
                    ids = vtk.vtkStringArray()
                    for canonical in names:
                        ids.InsertNextValue(canonical)
                    if not slicer.modules.segmentations.logic().ImportLabelmapToSegmentationNode(
                            labelNode, self._node, ids):
                        raise RuntimeError(f"segments {', '.join(names)} could not be imported")
                finally:
                    slicer.mrmlScene.RemoveNode(labelNode)
            else:
                self._tag_segments()
                node, confidence = self._node, dict(plan.confidence)
                self._node = None  # handed over
                self._finish()
                self.on_done(node, confidence)
                return
            self.on_progress((self._layer + 2) / float(len(plan.layers) + 2), "Loading the segments...")
            self._layer += 1
        except Exception as exc:  # noqa: BLE001 - one line to the user
            self._failed(exc)

    def _tag_segments(self) -> None:
        import slicer

        segmentation = self._node.GetSegmentation()
        tag = slicer.vtkSegment.GetTerminologyEntryTagName()
        for _labels, names in self._plan.layers:
            for canonical in names:
                segment = segmentation.GetSegment(canonical)
                entry = terminology_entry(canonical)
                if entry:
                    segment.SetTag(tag, entry)
                segment.SetTag("DICOM.SegmentAlgorithmType", "AUTOMATIC")
                segment.SetTag("DICOM.SegmentAlgorithmName",
                               f"RadGPT {self._plan.models.get(canonical, 'segmentation')}")
                if canonical in self._plan.confidence:
                    segment.SetTag("RadGPT.Confidence", f"{self._plan.confidence[canonical]:.3f}")

    # ------------------------------------------------------------- endings
    def _failed(self, exc) -> None:
        from .findings_view import one_line_error
        from .jobs import Cancelled

        self._job = None
        if isinstance(exc, Cancelled) or self._cancelled:
            self._finish(cancelled=True)
        else:
            self._finish(message=one_line_error(exc))

    def _finish(self, message: str = "", cancelled: bool = False) -> None:
        if self.finished:
            return
        self.finished = True
        self._timer.stop()
        if self._node is not None:  # a half-loaded node never stays in the scene
            import slicer

            slicer.mrmlScene.RemoveNode(self._node)
            self._node = None
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)
        self.step = "finished"
        if cancelled:
            self.on_error("Segmentation cancelled; nothing was loaded.", cancelled=True)
        elif message:
            self.on_error(message)
