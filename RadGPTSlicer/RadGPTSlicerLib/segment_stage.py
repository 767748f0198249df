"""The Segment button: the segmentation stage's runner in its own process, polled from the GUI.

Like SlicerNNUnet and SlicerMONAIAuto3DSeg, inference never runs in Slicer's
process: :class:`SegmentRun` writes the CT to a temporary case folder, starts the
runner (``RadGPTLogic.segment.runner.SegmentationRunner``; see its interface:
``start``, non-blocking ``poll`` of ``RunnerEvent``s, ``cancel``), polls it from a
GUI timer, and loads the case folder it writes as segments with canonical names,
colours, standard terminology and ``DICOM.SegmentAlgorithmType`` = AUTOMATIC.
Lesion probabilities from ``segmentation.json`` become the panel's confidence.
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np

from RadGPTLogic import vocabulary as vocab

#: Canonical name -> (SNOMED CT code, meaning) of the segment's type; lesions use their own category.
SNOMED = {
    "liver": ("10200004", "Liver"), "spleen": ("78961009", "Spleen"), "pancreas": ("15776009", "Pancreas"),
    "kidney_left": ("18639004", "Left kidney"), "kidney_right": ("9846003", "Right kidney"),
    "gall_bladder": ("28231008", "Gallbladder"), "stomach": ("69695003", "Stomach"),
    "aorta": ("15825003", "Aorta"), "postcava": ("64131007", "Inferior vena cava"),
}
#: Display colours (RGB 0-1) by structure group.
COLOURS = {"liver": (0.86, 0.55, 0.42), "spleen": (0.62, 0.38, 0.62), "pancreas": (0.98, 0.83, 0.54),
           "kidney_left": (0.73, 0.4, 0.33), "kidney_right": (0.73, 0.4, 0.33), "lesion": (1.0, 0.2, 0.2)}


def terminology_entry(canonical: str) -> str:
    """Slicer's serialised terminology entry (vtkSlicerTerminologiesModuleLogic::SerializeTerminologyEntry)."""
    context = "Segmentation category and type - 3D Slicer General Anatomy list"
    region = "~Anatomic codes - DICOM master list~^^~^^"
    if canonical in vocab.LESION_ORGAN_KIND:
        organ = vocab.LESION_ORGAN_KIND[canonical][0]
        return (f"{context}~SCT^49755003^Morphologically Altered Structure~SCT^52988006^Lesion~^^"
                f"~Anatomic codes - DICOM master list~SCT^{SNOMED.get(organ, ('', ''))[0]}^"
                f"{SNOMED.get(organ, ('', organ or ''))[1]}~^^")
    code, meaning = SNOMED.get(canonical, ("", canonical.replace("_", " ")))
    return f"{context}~SCT^123037004^Anatomical Structure~SCT^{code}^{meaning}~^^{region}"


def python_executable() -> str:
    """The interpreter for the worker process: PythonSlicer inside Slicer, else this Python."""
    return shutil.which("PythonSlicer") or sys.executable


def make_runner(device: str = "auto", models=("default",)):
    """The segmentation stage's runner (import deferred: torch and nnU-Net stay out of Slicer)."""
    from RadGPTLogic.segment.runner import SegmentationRunner

    return SegmentationRunner(list(models), device=device, python_executable=python_executable())


def progress_of(event):
    """(fraction or None, one line) for a progress event; None fraction = total unknown."""
    where = " ".join(p for p in (event.stage, event.model, f"fold {event.fold}" if event.fold else "") if p)
    if event.total:
        return event.done / float(event.total), f"{where}: {event.done}/{event.total}"
    return None, where or event.message


class SegmentRun:
    """One Segment click: temp case -> runner -> poll -> load (GUI thread; the heavy work is elsewhere)."""

    def __init__(self, runner, volume_node, logic, *, timer_factory, on_progress, on_done, on_error,
                 poll_ms: int = 200):
        self.runner = runner
        self.volume_node = volume_node
        self.logic = logic
        self.on_progress, self.on_done, self.on_error = on_progress, on_done, on_error
        self._timer = timer_factory(poll_ms, False, self.poll)
        self._tmp = None
        self.finished = False

    def start(self) -> None:
        import slicer

        self._tmp = Path(tempfile.mkdtemp(prefix="radgpt_seg_"))
        ct_path = self._tmp / "ct.nii.gz"
        if not slicer.util.saveNode(self.volume_node, str(ct_path)):
            raise RuntimeError(f"{ct_path}: the CT could not be written for the segmentation process")
        self.runner.start(str(ct_path), str(self._tmp / "case"))
        self._timer.start()

    def cancel(self) -> None:
        self.runner.cancel()

    def poll(self) -> None:
        if self.finished:
            return
        for event in self.runner.poll():
            if event.kind == "progress":
                self.on_progress(*progress_of(event))
            elif event.kind == "done":
                self._finish()
                try:
                    node, confidence = self.logic_load(event.result)
                except Exception as exc:  # noqa: BLE001 - reported as one line
                    self.on_error(" ".join(str(exc).split()))
                    return
                self.on_done(node, confidence)
                return
            elif event.kind == "error":
                self._finish()
                self.on_error(event.message)
                return
            elif event.kind == "cancelled":
                self._finish()
                self.on_error("Segmentation cancelled; nothing was loaded.", cancelled=True)
                return

    def _finish(self) -> None:
        self.finished = True
        self._timer.stop()

    def logic_load(self, case_dir):
        try:
            return load_case_segments(case_dir, self.volume_node)
        finally:
            shutil.rmtree(self._tmp, ignore_errors=True)


def load_case_segments(case_dir, volume_node):
    """Load ``case_dir/segmentations/*.nii.gz`` as segments of a new segmentation node.

    Returns ``(segmentation node, {canonical lesion mask: probability})``.  Masks must be
    on the volume's own voxel grid (the runner writes them on the CT's grid).
    """
    import slicer
    import vtk

    from RadGPTLogic.errors import InputError
    from RadGPTLogic.geometry import from_canonical
    from RadGPTLogic.io.nifti import read_nifti

    from .adapter import ijk_to_ras

    case_dir = Path(case_dir)
    meta_path = case_dir / "segmentation.json"
    meta = json.loads(meta_path.read_text(encoding="utf-8")) if meta_path.is_file() else {}
    structures = meta.get("structures", {}) if isinstance(meta, dict) else {}
    shape_ijk = tuple(reversed(slicer.util.arrayFromVolume(volume_node).shape))
    affine = ijk_to_ras(volume_node, vtk.vtkMatrix4x4)
    node = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLSegmentationNode", f"{volume_node.GetName()} RadGPT")
    node.CreateDefaultDisplayNodes()
    node.SetReferenceImageGeometryParameterFromVolumeNode(volume_node)
    segmentation = node.GetSegmentation()
    confidence = {}
    for path in sorted((case_dir / "segmentations").glob("*.nii.gz")):
        name = path.name[:-len(".nii.gz")]
        canonical = vocab.canonical_name(name) or name
        vol = read_nifti(path)
        source = np.asarray(from_canonical(vol.array, vol.ornt))
        if tuple(source.shape) != shape_ijk or not np.allclose(vol.affine, _canonical_affine(affine, vol), atol=1e-3):
            raise InputError(path, f"mask grid {source.shape} is not the CT's grid {shape_ijk}")
        group = "lesion" if canonical in vocab.LESION_ORGAN_KIND else canonical
        segment_id = segmentation.AddEmptySegment(canonical, canonical, list(COLOURS.get(group, (0.5, 0.7, 0.9))))
        slicer.util.updateSegmentBinaryLabelmapFromArray(np.ascontiguousarray((source != 0).transpose(2, 1, 0))
                                                         .astype(np.uint8), node, segment_id, volume_node)
        segment = segmentation.GetSegment(segment_id)
        info = structures.get(canonical, {}) if isinstance(structures, dict) else {}
        segment.SetTag("TerminologyEntry", terminology_entry(canonical))
        segment.SetTag("DICOM.SegmentAlgorithmType", "AUTOMATIC")
        segment.SetTag("DICOM.SegmentAlgorithmName", f"RadGPT {info.get('model', 'segmentation')}")
        if isinstance(info, dict) and info.get("probability") is not None:
            confidence[canonical] = float(info["probability"])
            segment.SetTag("RadGPT.Confidence", f"{float(info['probability']):.3f}")
    return node, confidence


def _canonical_affine(ijk_to_ras, vol):
    from RadGPTLogic.geometry import canonical_affine

    return canonical_affine(ijk_to_ras, vol.source_shape, vol.ornt)
