"""Masks and findings out as DICOM: a SEG (the masks) and a TID 1500 SR (the numbers).

Public API
----------
:func:`export_dicom` ``(case, findings, dicom_folder, out_dir, structures=None) -> [seg_path, sr_path]``

``case`` must have been built on the CT series in ``dicom_folder`` (e.g. with
:func:`~RadGPTLogic.io.assemble.case_with_dicom_ct` or ``case_from_labelmap(...,
ct_path=dicom_folder)``); ``findings`` is ``Engine(case).compute().to_dict()`` (or a
``findings.json`` read back).  Needs ``highdicom`` (``pip install radgpt-slicer[dicom]``).

DICOM SEG (``<case_id>_seg.dcm``)
---------------------------------
Binary segmentation, one segment per non-empty structure (organs, vessels ...; by
default every non-empty crop of the case that is not a lesion mask) and one segment
per *reported lesion* (``findings["lesions"]``: the lesion's connected component of
its mask, label = lesion id, e.g. ``liver_lesion_1``; tracking id = lesion id).
Segment labels are the canonical names.  Property category / type:

* structures: category Anatomical Structure (91723000, SCT); type the organ's SNOMED
  code from pydicom's code dictionary (Liver 10200004, Spleen 78961009, Pancreas
  15776009, Kidney 64033007, ...; left/right structures get the organ code, the side
  is in the label); names without a known code get type Anatomical Structure
  (91723000, SCT) -- the generic fallback.
* lesions: category Morphologically Altered Structure (49755003, SCT); type Lesion
  (52988006), Neoplasm (108369006, for ``*_tumor``/``pdac``/``pnet``) or Cyst
  (367643001); anatomic region = the organ's code.

Masks go from the canonical RAS frame back to the series' own voxel order with
:func:`~RadGPTLogic.io.nifti.from_canonical` (the exact inverse of the reader's
reorientation, no resampling); frame ``k`` of the SEG is derived from the sorted
file ``k`` of the series (``DicomSeriesInfo.files``).  A series that was read with
``resample=True`` and interpolated cannot be referenced voxel for voxel and is
refused.  Empty frames are omitted (highdicom's default).

DICOM SR (``<case_id>_sr.dcm``)
-------------------------------
Comprehensive 3D SR holding a TID 1500 Measurement Report (highdicom
``MeasurementReport``), procedure reported CT unspecified body region (25045-6, LN).
One TID 1411 volumetric group per lesion, referencing its SEG segment, with
Tracking Identifier (112039, DCM) = lesion id, Tracking UID (112040, DCM) (derived
deterministically from the study UID and the id), Finding (121071, DCM) = the
lesion type code above, Finding Site (363698007, SCT) = organ code, and the
measurements (absent values are left out):

* Long Axis (103339001, SCT), mm (UCUM ``mm``) = ``longest_diameter_mm``
* Short Axis (103340004, SCT), mm = ``perpendicular_diameter_mm``
* Volume (118565006, SCT), mL (UCUM ``ml``) = ``volume_ml``
* Attenuation Coefficient (112031, DCM), derivation Mean (373098007, SCT),
  HU (UCUM ``[hnsf'U]``) = ``mean_hu``

One group per organ in ``findings["organs"]`` that has a segment: tracking id = the
organ name, finding = finding site = the organ's code, Volume (only when the
organ is complete, i.e. ``volume_ml`` is not null) and mean attenuation.

UIDs
----
Source files with blank SOPInstanceUID / SOPClassUID get them from their file meta
(MediaStorageSOPInstanceUID / MediaStorageSOPClassUID); a blank StudyInstanceUID or
SeriesInstanceUID (anonymised data) is replaced, in memory only, by a UID derived
deterministically from the series' SOP instance UIDs, and a warning says so: the
SEG and SR then reference that study/series, which the CT files do not carry.
The SEG's and SR's own UIDs are derived deterministically from the series and the
content, so the same export gives the same UIDs.
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np

from .. import __version__
from .. import vocabulary as vocab
from ..errors import InputError
from ..geometry import GRID_TOLERANCE_MM, from_canonical, grid_deviation_mm
from .atomic import write_files_atomically

INSTALL_HINT = "DICOM SEG/SR export needs highdicom: pip install radgpt-slicer[dicom]"
MANUFACTURER = "RadGPT for 3D Slicer"

# Canonical structure name -> attribute of pydicom's ``codes.SCT`` (checked at run time;
# a name missing there falls back on Anatomical Structure).
_SCT_NAMES = {
    "liver": "Liver",
    "spleen": "Spleen",
    "pancreas": "Pancreas",
    "kidney_left": "Kidney",
    "kidney_right": "Kidney",
    "kidney": "Kidney",
    "gall_bladder": "Gallbladder",
    "stomach": "Stomach",
    "duodenum": "Duodenum",
    "colon": "Colon",
    "intestine": "SmallIntestine",
    "esophagus": "Esophagus",
    "adrenal_gland_left": "AdrenalGland",
    "adrenal_gland_right": "AdrenalGland",
    "aorta": "Aorta",
    "postcava": "InferiorVenaCava",
    "portal_vein": "PortalVein",
    "splenic_vein": "SplenicVein",
    "superior_mesenteric_artery": "SuperiorMesentericArtery",
    "superior_mesenteric_vein": "SuperiorMesentericVein",
    "celiac_trunk": "CeliacArtery",
    "common_hepatic_artery": "CommonHepaticArtery",
    "splenic_artery": "SplenicArtery",
    "hepatic_veins": "HepaticVein",
    "common_bile_duct": "CommonBileDuct",
}
_LESION_TYPE = {"lesion": "Lesion", "tumor": "Neoplasm", "pdac": "Neoplasm", "pnet": "Neoplasm", "cyst": "Cyst"}


def export_dicom(case, findings: dict, dicom_folder, out_dir, structures=None) -> list:
    """Write ``<case_id>_seg.dcm`` (DICOM SEG) and ``<case_id>_sr.dcm`` (TID 1500 SR) into ``out_dir``.

    Parameters
    ----------
    case : Case
        Built on the CT series of ``dicom_folder`` (same grid within 1e-3 mm).
    findings : dict
        ``Findings.to_dict()`` of that case (or ``findings.json``).
    dicom_folder : path
        The CT series the case was built on (its SeriesInstanceUID is taken from
        ``case.sources["ct"]`` when recorded).
    out_dir : path
        Created if needed; both files appear together or not at all.
    structures : iterable of str, optional
        Structure names to export as segments (default: every non-empty structure of
        the case).  A lesion mask name exports one segment per reported lesion of
        that mask.

    Returns
    -------
    list of Path
        ``[seg_path, sr_path]``.

    Raises
    ------
    InputError
        highdicom missing, the case not on the series' grid, a resampled series,
        nothing to export, or an unknown structure name.
    """
    try:
        import highdicom as hd
        from pydicom.uid import generate_uid
    except ImportError:
        raise InputError(None, INSTALL_HINT) from None
    import pydicom

    from .dicom import read_dicom_series_info

    dicom_folder = Path(dicom_folder)
    series_uid = None
    for src in case.sources.get("ct", []) or []:
        series_uid = src.get("series_uid") or None
    volume, info = read_dicom_series_info(dicom_folder, series_uid)
    if info.resampled:
        raise InputError(dicom_folder, "the series was resampled on reading; a SEG cannot reference its slices")
    if grid_deviation_mm(volume.shape, volume.affine, case.shape, case.affine) > GRID_TOLERANCE_MM:
        raise InputError(dicom_folder, f"case '{case.case_id}' does not lie on this series' grid")

    sources, uid_notes = _source_datasets(pydicom, generate_uid, info.files)
    for note in uid_notes:
        warnings.warn(f"{dicom_folder}: {note}", stacklevel=2)

    # ------------------------------------------------------------ segments
    segments = _segments(case, findings, structures)  # [(label, kind, organ_or_name, Crop)]
    if not segments:
        raise InputError(dicom_folder, f"case '{case.case_id}': no non-empty structure to export")
    n_frames = len(sources)
    rows, cols = int(sources[0].Rows), int(sources[0].Columns)
    pixels = np.zeros((n_frames, rows, cols, len(segments)), bool)
    for s, (_label, _kind, _organ, crop) in enumerate(segments):
        pixels[..., s] = canonical_to_frames(crop, case.shape, volume.ornt)
    if pixels.shape[:3] != (n_frames, rows, cols):
        raise InputError(dicom_folder, "series geometry does not match the case")

    from pydicom.sr.codedict import codes

    algorithm = hd.AlgorithmIdentificationSequence(
        name="RadGPT for 3D Slicer (imported masks)", family=codes.cid7162.ArtificialIntelligence,
        version=__version__,
    )
    descriptions = []
    for s, (label, kind, organ, _crop) in enumerate(segments, start=1):
        if kind == "structure":
            category, ptype, regions = _anatomical_structure(), _organ_code(organ), None
        else:
            category = hd.sr.CodedConcept("49755003", "SCT", "Morphologically Altered Structure")
            ptype = getattr(codes.SCT, _LESION_TYPE.get(kind, "Lesion"))
            regions = [_organ_code(organ)]
        descriptions.append(hd.seg.SegmentDescription(
            segment_number=s, segment_label=label[:64], segmented_property_category=category,
            segmented_property_type=ptype, algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
            algorithm_identification=algorithm, tracking_id=label,
            tracking_uid=_uid(generate_uid, sources[0].StudyInstanceUID, "track", label),
            anatomic_regions=regions,
        ))
    study = sources[0].StudyInstanceUID
    seg = hd.seg.Segmentation(
        source_images=sources, pixel_array=pixels, segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=descriptions,
        series_instance_uid=_uid(generate_uid, study, case.case_id, "seg-series"), series_number=9001,
        sop_instance_uid=_uid(generate_uid, study, case.case_id, "seg", *[d[0] for d in segments]),
        instance_number=1, manufacturer=MANUFACTURER, manufacturer_model_name="radgpt",
        software_versions=__version__, device_serial_number="0",
        content_label="RADGPT", content_description=f"RadGPT masks of {case.case_id}"[:64],
    )

    # ------------------------------------------------------------ SR
    groups = []
    seg_number = {label: s for s, (label, *_rest) in enumerate(segments, start=1)}
    for lesion in findings.get("lesions", []) or []:
        lid = lesion.get("id")
        if lid not in seg_number:
            continue
        kind = lesion.get("kind") or "lesion"
        groups.append(_group(hd, codes, generate_uid, seg, study, lid, seg_number[lid],
                             finding=getattr(codes.SCT, _LESION_TYPE.get(kind, "Lesion")),
                             site=_organ_code(lesion.get("organ")),
                             long_mm=lesion.get("longest_diameter_mm"),
                             short_mm=lesion.get("perpendicular_diameter_mm"),
                             volume_ml=lesion.get("volume_ml"), mean_hu=lesion.get("mean_hu")))
    for organ, entry in (findings.get("organs") or {}).items():
        if organ not in seg_number or not isinstance(entry, dict):
            continue
        if entry.get("volume_ml") is None and entry.get("mean_hu") is None:
            continue
        code = _organ_code(organ)
        groups.append(_group(hd, codes, generate_uid, seg, study, organ, seg_number[organ],
                             finding=code, site=code, volume_ml=entry.get("volume_ml"),
                             mean_hu=entry.get("mean_hu")))
    report = hd.sr.MeasurementReport(
        observation_context=hd.sr.ObservationContext(
            observer_device_context=hd.sr.ObserverContext(
                observer_type=codes.cid270.Device,
                observer_identifying_attributes=hd.sr.DeviceObserverIdentifyingAttributes(
                    uid=_uid(generate_uid, "radgpt-device"), name=MANUFACTURER, model_name=__version__,
                ),
            ),
        ),
        procedure_reported=codes.LN.CTUnspecifiedBodyRegion,
        imaging_measurements=groups or None,
    )
    sr = hd.sr.Comprehensive3DSR(
        evidence=list(sources) + [seg], content=report,
        series_instance_uid=_uid(generate_uid, study, case.case_id, "sr-series"), series_number=9002,
        sop_instance_uid=_uid(generate_uid, study, case.case_id, "sr", seg.SOPInstanceUID,
                              repr(sorted(findings.get("lesions", []) or [], key=lambda e: str(e.get("id"))))),
        instance_number=1, manufacturer=MANUFACTURER, is_complete=True,
    )

    name = _safe(case.case_id)
    files = {f"{name}_seg.dcm": _to_bytes(seg), f"{name}_sr.dcm": _to_bytes(sr)}
    return [Path(p) for p in write_files_atomically(out_dir, files)]


# ====================================================================== helpers

def canonical_to_frames(crop, shape, ornt) -> np.ndarray:
    """A canonical-frame :class:`Crop` as (slice, row, column) bool frames of the series.

    Frame ``k`` corresponds to the sorted file ``k`` (``DicomSeriesInfo.files``); the
    source array of the reader has axes (column, row, slice), hence the transpose.
    """
    full = np.zeros(tuple(shape), bool)
    if not crop.is_empty:
        full[crop.slices] = crop.mask
    src = from_canonical(full, ornt)  # (column i, row j, slice k)
    return np.ascontiguousarray(np.transpose(src, (2, 1, 0)))


def _source_datasets(pydicom, generate_uid, files):
    """Headers of the sorted files, blank identifying UIDs filled in (in memory)."""
    sources = [pydicom.dcmread(str(p)) for p in files]
    notes = []
    fixed_sop = 0
    for ds in sources:
        meta = getattr(ds, "file_meta", None)
        if not str(ds.get("SOPInstanceUID", "") or "") and meta is not None and meta.get("MediaStorageSOPInstanceUID"):
            ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
            fixed_sop += 1
        if not str(ds.get("SOPClassUID", "") or "") and meta is not None and meta.get("MediaStorageSOPClassUID"):
            ds.SOPClassUID = meta.MediaStorageSOPClassUID
    missing = [ds for ds in sources if not str(ds.get("SOPInstanceUID", "") or "")]
    if missing:
        raise InputError(files[0].parent, f"{len(missing)} file(s) without a SOPInstanceUID (not even in the file meta)")
    if fixed_sop:
        notes.append(f"{fixed_sop} file(s) with a blank SOPInstanceUID: taken from their file meta")
    sops = [str(ds.SOPInstanceUID) for ds in sources]
    for tag, what in (("StudyInstanceUID", "study"), ("SeriesInstanceUID", "series"),
                      ("FrameOfReferenceUID", "frame-of-reference")):
        values = {str(ds.get(tag, "") or "") for ds in sources}
        if values == {""} or "" in values:
            known = sorted(v for v in values if v)
            uid = known[0] if known else _uid(generate_uid, what, *sops)
            for ds in sources:
                if not str(ds.get(tag, "") or ""):
                    setattr(ds, tag, uid)
            notes.append(f"blank {tag} in the CT files: the SEG/SR use the generated UID {uid}")
    for tag in ("PatientID", "PatientName", "PatientBirthDate", "PatientSex", "StudyID",
                "AccessionNumber", "ReferringPhysicianName", "StudyDate", "StudyTime"):
        if tag not in sources[0]:
            for ds in sources:
                setattr(ds, tag, "")
    return sources, notes


def _segments(case, findings: dict, structures):
    """``[(label, kind, organ, Crop)]``: structures first (case order), then lesions (findings order)."""
    from ..measure.lesions import split_components

    names = list(case.structures) if structures is None else list(structures)
    unknown = [n for n in names if n not in case.structures]
    if unknown:
        raise InputError(None, f"case '{case.case_id}' has no structure {', '.join(map(repr, unknown))}")
    lesion_masks = [n for n in names if n in vocab.LESIONS]
    out = []
    for n in names:
        if n in vocab.LESIONS:
            continue
        crop = case.crop(n)
        if not crop.is_empty:
            out.append((n, "structure", n, crop))
    comps = {}
    for lesion in findings.get("lesions", []) or []:
        mask = lesion.get("mask")
        if mask not in lesion_masks:
            continue
        if mask not in comps:
            # floor 0: components at or above the engine's floor keep their rank
            kept, _n, _ml = split_components(_effective_crop(case, mask), case.voxel_volume_mm3, 0.0)
            comps[mask] = kept
        lid = str(lesion.get("id"))
        try:
            rank = int(lid.rsplit("_", 1)[1])
        except (IndexError, ValueError):
            rank = 0
        kept = comps[mask]
        if not (1 <= rank <= len(kept)) or kept[rank - 1].count != lesion.get("voxel_count", kept[rank - 1].count):
            warnings.warn(f"{case.case_id}: lesion {lid} does not match a component of {mask}; "
                          "its segment is the whole mask", stacklevel=3)
            comp = case.crop(mask)
        else:
            comp = kept[rank - 1]
        organ, kind = vocab.LESION_ORGAN_KIND[mask]
        out.append((lid, kind, lesion.get("organ") or organ, comp))
    return out


def _effective_crop(case, mask: str):
    """The lesion mask as the engine measured it: a generic ``*_lesion`` less its organ's typed masks."""
    from ..case import Crop

    crop = case.crop(mask)
    organ = vocab.LESION_ORGAN_KIND[mask][0]
    if vocab.GENERIC_LESION.get(organ) != mask or crop.is_empty:
        return crop
    typed = [m for m in vocab.LESIONS if m != mask and vocab.LESION_ORGAN_KIND[m][0] == organ and case.has(m)]
    overlap = np.zeros(crop.shape, bool)
    for m in typed:
        overlap |= case.crop(m).in_box(crop.offset, crop.shape)
    if not (overlap & crop.mask).any():
        return crop
    reduced = Crop.from_full(crop.mask & ~overlap)
    if reduced.is_empty:
        return reduced
    return Crop(reduced.mask, tuple(a + b for a, b in zip(reduced.offset, crop.offset)))


def _anatomical_structure():
    from pydicom.sr.codedict import codes

    return codes.SCT.AnatomicalStructure


def _organ_code(name):
    """SNOMED code of a canonical structure/organ name; Anatomical Structure when unknown."""
    from pydicom.sr.codedict import codes

    attr = _SCT_NAMES.get(str(name))
    if attr:
        try:
            return getattr(codes.SCT, attr)
        except AttributeError:
            pass
    return codes.SCT.AnatomicalStructure


def _group(hd, codes, generate_uid, seg, study, tracking_id, segment_number, *, finding, site,
           long_mm=None, short_mm=None, volume_ml=None, mean_hu=None):
    ml = hd.sr.CodedConcept("ml", "UCUM", "milliliter")
    measurements = []
    if long_mm is not None:
        measurements.append(hd.sr.Measurement(name=codes.SCT.LongAxis, value=float(long_mm),
                                              unit=codes.UCUM.Millimeter))
    if short_mm is not None:
        measurements.append(hd.sr.Measurement(name=codes.SCT.ShortAxis, value=float(short_mm),
                                              unit=codes.UCUM.Millimeter))
    if volume_ml is not None:
        measurements.append(hd.sr.Measurement(name=codes.SCT.Volume, value=float(volume_ml), unit=ml))
    if mean_hu is not None:
        measurements.append(hd.sr.Measurement(name=codes.DCM.AttenuationCoefficient, value=float(mean_hu),
                                              unit=codes.UCUM.HounsfieldUnit, derivation=codes.SCT.Mean))
    return hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(
            uid=_uid(generate_uid, study, "track", tracking_id), identifier=str(tracking_id)),
        referenced_segment=hd.sr.ReferencedSegment.from_segmentation(seg, segment_number=segment_number),
        finding_type=finding,
        finding_sites=[hd.sr.FindingSite(anatomic_location=site)],
        measurements=measurements or None,
    )


def _uid(generate_uid, *parts) -> str:
    return str(generate_uid(entropy_srcs=[str(p) for p in parts]))


def _safe(name: str) -> str:
    keep = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in str(name))
    return keep or "case"


def _to_bytes(ds) -> bytes:
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


__all__ = ["export_dicom", "canonical_to_frames", "INSTALL_HINT"]
