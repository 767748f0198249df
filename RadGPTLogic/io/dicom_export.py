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
Segment labels are the canonical names.  Every segment is coded from the one
terminology table, :mod:`RadGPTLogic.terminology` (shared with the 3D Slicer
terminology files):

* structures: category Anatomical Structure (91723000, SCT); type the structure's
  own code (Liver 10200004, Celiac trunk 57850000, Portal vein and splenic vein
  110765007, Head of pancreas 64163001, ...; no structure gets the generic
  Anatomical Structure type); left/right organs (kidneys, adrenal glands) carry the
  SNOMED laterality modifier (Left 7771000, Right 24028007) in
  SegmentedPropertyTypeModifierCodeSequence.  Codes of the local scheme ``99RADGPT``
  (three combined or computed structures without a SNOMED concept) are declared in
  CodingSchemeIdentificationSequence.
* lesions: category Morphologically Abnormal Structure (49755003, SCT); type Lesion
  (52988006), Neoplasm (108369006), Cyst (367643001), Adenocarcinoma (35917007,
  ``pancreatic_pdac``) or Neuroendocrine tumor (255046005, ``pancreatic_pnet``);
  anatomic region = the organ's code, with the lesion's side (findings ``side``) as
  AnatomicRegionModifierSequence.
* RecommendedDisplayCIELabValue: the table's display colour, sRGB converted to
  CIELab (D65).
* SegmentAlgorithmType from the masks' provenance (:mod:`RadGPTLogic.io.origin`):
  AUTOMATIC for model output (``segmentation.json``, or a TotalSegmentator import),
  SEMIAUTOMATIC once edited (the mask file changed since the model wrote it) or for
  AI-assisted annotations (AbdomenAtlas), MANUAL for expert labels (AMOS) and for
  masks nothing records an algorithm for; the algorithm identification names the
  model.  A lesion segment takes the type of its lesion mask.

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
lesion type code above, Finding Site (363698007, SCT) = organ code with the
lesion's side as Laterality (272741003, SCT), and the measurements (absent values
are left out):

* Long Axis (103339001, SCT), mm (UCUM ``mm``) = ``longest_diameter_mm``
* Short Axis (103340004, SCT), mm = ``perpendicular_diameter_mm``
* Volume (118565006, SCT), mL (UCUM ``ml``) = ``volume_ml``
* Attenuation Coefficient (112031, DCM), derivation Mean (373098007, SCT),
  HU (UCUM ``[hnsf'U]``) = ``mean_hu``

One group per organ in ``findings["organs"]`` that has a segment: tracking id = the
organ name, finding = finding site = the organ's code (with laterality for the
kidneys and adrenal glands), Volume (only when the organ is complete, i.e.
``volume_ml`` is not null) and mean attenuation.

SeriesDescription: "RadGPT segmentation" (SEG) and "RadGPT measurement report" (SR).

UIDs
----
Source files with blank SOPInstanceUID / SOPClassUID get them from their file meta
(MediaStorageSOPInstanceUID / MediaStorageSOPClassUID); a blank StudyInstanceUID or
SeriesInstanceUID (anonymised data) is replaced, in memory only, by a UID derived
deterministically from the series' SOP instance UIDs, and a warning says so: the
SEG and SR then reference that study/series, which the CT files do not carry.
The SEG's and SR's own SOP Instance UIDs and Series Instance UIDs are derived
from a digest of their content: the referenced CT instances, every segment's
voxels (the content digest of its mask), codes, label, colour and algorithm, and
for the SR the SEG's UID and every reported value and code.  The same content gives
the same UIDs (a re-export is recognised as the same object); any change, e.g. a
mask edited in Slicer and exported again, gives new ones, so a PACS never holds two
different objects under one UID.
"""

from __future__ import annotations

import hashlib
import io
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .. import __version__
from .. import terminology as term
from .. import vocabulary as vocab
from ..errors import InputError
from ..findings import FindingsDict
from ..geometry import GRID_TOLERANCE_MM, from_canonical, grid_deviation_mm
from .atomic import write_files_atomically

INSTALL_HINT = "DICOM SEG/SR export needs highdicom: pip install radgpt-slicer[dicom]"
MANUFACTURER = "RadGPT for 3D Slicer"

SEG_SERIES_DESCRIPTION = "RadGPT segmentation"
SR_SERIES_DESCRIPTION = "RadGPT measurement report"
ALGORITHM_TYPES = ("AUTOMATIC", "SEMIAUTOMATIC", "MANUAL")


def export_dicom(case, findings: FindingsDict, dicom_folder, out_dir, structures=None, algorithm_types=None,
                 case_dir=None) -> list:
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
    algorithm_types : dict, optional
        Structure name -> ``"AUTOMATIC"`` / ``"SEMIAUTOMATIC"`` / ``"MANUAL"`` (or a
        :class:`~RadGPTLogic.io.origin.MaskOrigin`), overriding the provenance rule of
        :mod:`RadGPTLogic.io.origin` for those structures (e.g. segments edited in Slicer).
    case_dir : path, optional
        The case folder whose ``segmentation.json`` / ``import.json`` record the
        masks' origin (default: the folder the case was loaded from).

    Returns
    -------
    list of Path
        ``[seg_path, sr_path]``.

    Raises
    ------
    InputError
        highdicom missing, the case not on the series' grid, a resampled series,
        nothing to export, an unknown structure name or algorithm type.
    """
    try:
        import highdicom as hd
        from pydicom.uid import generate_uid
    except ImportError:
        raise InputError(None, INSTALL_HINT) from None
    import pydicom

    from .dicom import read_dicom_series_info
    from .origin import MANUAL, MaskOrigin, mask_origins

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
    segments = _segments(case, findings, structures)
    if not segments:
        raise InputError(dicom_folder, f"case '{case.case_id}': no non-empty structure to export")
    origins = mask_origins(case, case_dir)
    for name, given in (algorithm_types or {}).items():
        if isinstance(given, MaskOrigin):
            origins[name] = given
        elif str(given).upper() in ALGORITHM_TYPES:
            kind = str(given).upper()
            origins[name] = MaskOrigin(kind, None if kind == MANUAL else "unnamed algorithm", None,
                                       "given by the caller")
        else:
            raise InputError(None, f"algorithm type for '{name}' must be one of {', '.join(ALGORITHM_TYPES)}, "
                                   f"not {given!r}")
    unrecorded = sorted({item.mask for item in segments
                         if origins.get(item.mask, MaskOrigin(MANUAL)).why.startswith("no record")})
    if unrecorded:
        warnings.warn(f"{case.case_id}: nothing records how {len(unrecorded)} mask(s) were made "
                      f"({', '.join(unrecorded[:5])}{', ...' if len(unrecorded) > 5 else ''}): "
                      "their segments are exported as MANUAL", stacklevel=2)

    n_frames = len(sources)
    rows, cols = int(sources[0].Rows), int(sources[0].Columns)
    pixels = np.zeros((n_frames, rows, cols, len(segments)), bool)
    for s, item in enumerate(segments):
        pixels[..., s] = canonical_to_frames(item.crop, case.shape, volume.ornt)
    if pixels.shape[:3] != (n_frames, rows, cols):
        raise InputError(dicom_folder, "series geometry does not match the case")

    from pydicom.sr.codedict import codes

    study = str(sources[0].StudyInstanceUID)
    descriptions, seg_digest = [], _Digest(study, str(sources[0].SeriesInstanceUID),
                                           *sorted(str(ds.SOPInstanceUID) for ds in sources), __version__)
    for number, item in enumerate(segments, start=1):
        origin = origins.get(item.mask) or MaskOrigin(MANUAL)
        algorithm = None
        if origin.algorithm_type != MANUAL:
            algorithm = hd.AlgorithmIdentificationSequence(
                name=(origin.algorithm_name or "unnamed algorithm")[:64],
                family=codes.cid7162.ArtificialIntelligence, version=(origin.algorithm_version or "unknown")[:64])
        t = item.term
        description = hd.seg.SegmentDescription(
            segment_number=number, segment_label=item.label[:64], segmented_property_category=_coded(hd, t.category),
            segmented_property_type=_coded(hd, t.type), algorithm_type=origin.algorithm_type,
            algorithm_identification=algorithm, tracking_id=item.label,
            tracking_uid=_uid(generate_uid, study, "track", item.label),
            anatomic_regions=[_coded(hd, t.region)] if t.region is not None else None,
            display_color=hd.color.CIELabColor.from_rgb(*t.rgb),
        )
        if t.type_modifier is not None:
            description.SegmentedPropertyTypeCodeSequence[0].SegmentedPropertyTypeModifierCodeSequence = [
                _coded(hd, t.type_modifier)]
        if t.region is not None and t.region_modifier is not None:
            description.AnatomicRegionSequence[0].AnatomicRegionModifierSequence = [_coded(hd, t.region_modifier)]
        descriptions.append(description)
        seg_digest.add(item.label, item.crop.digest(), origin.algorithm_type, origin.algorithm_name,
                       origin.algorithm_version, t.rgb,
                       *[(c.scheme, c.value, c.meaning) if c else None
                         for c in (t.category, t.type, t.type_modifier, t.region, t.region_modifier)])
    schemes = _coding_schemes(hd, [item.term for item in segments])
    seg = hd.seg.Segmentation(
        source_images=sources, pixel_array=pixels, segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=descriptions,
        series_instance_uid=_uid(generate_uid, "seg-series", seg_digest.hex()), series_number=9001,
        sop_instance_uid=_uid(generate_uid, "seg", seg_digest.hex()),
        instance_number=1, manufacturer=MANUFACTURER, manufacturer_model_name="radgpt",
        software_versions=__version__, device_serial_number="0",
        content_label="RADGPT", content_description=f"RadGPT masks of {case.case_id}"[:64],
        series_description=SEG_SERIES_DESCRIPTION, coding_schemes=schemes,
    )

    # ------------------------------------------------------------ SR
    groups = []
    sr_digest = _Digest(str(seg.SOPInstanceUID), __version__)
    seg_number = {item.label: s for s, item in enumerate(segments, start=1)}
    for lesion in findings.get("lesions", []) or []:
        lid = lesion.get("id")
        if lid not in seg_number:
            continue
        t = segments[seg_number[lid] - 1].term
        site, laterality = term.organ_term(str(lesion.get("organ")), lesion.get("side"))
        values = {k: lesion.get(k)
                  for k in ("longest_diameter_mm", "perpendicular_diameter_mm", "volume_ml", "mean_hu")}
        groups.append(_group(hd, codes, generate_uid, seg, study, lid, seg_number[lid],
                             finding=_coded(hd, t.type), site=_coded(hd, site),
                             laterality=_coded(hd, laterality) if laterality else None,
                             long_mm=values["longest_diameter_mm"], short_mm=values["perpendicular_diameter_mm"],
                             volume_ml=values["volume_ml"], mean_hu=values["mean_hu"]))
        sr_digest.add("lesion", lid, seg_number[lid], t.type.value, site.value, laterality and laterality.value,
                      *[values[k] for k in sorted(values)])
    for organ, entry in (findings.get("organs") or {}).items():
        if organ not in seg_number or not isinstance(entry, dict):
            continue
        if entry.get("volume_ml") is None and entry.get("mean_hu") is None:
            continue
        code, laterality = term.organ_term(organ)
        groups.append(_group(hd, codes, generate_uid, seg, study, organ, seg_number[organ],
                             finding=_coded(hd, code), site=_coded(hd, code),
                             laterality=_coded(hd, laterality) if laterality else None,
                             volume_ml=entry.get("volume_ml"), mean_hu=entry.get("mean_hu")))
        sr_digest.add("organ", organ, seg_number[organ], code.value, laterality and laterality.value,
                      entry.get("volume_ml"), entry.get("mean_hu"))
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
        series_instance_uid=_uid(generate_uid, "sr-series", sr_digest.hex()), series_number=9002,
        sop_instance_uid=_uid(generate_uid, "sr", sr_digest.hex()),
        instance_number=1, manufacturer=MANUFACTURER, is_complete=True,
        series_description=SR_SERIES_DESCRIPTION,
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
        raise InputError(files[0].parent,
                         f"{len(missing)} file(s) without a SOPInstanceUID (not even in the file meta)")
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


@dataclass(frozen=True)
class _Segment:
    """One SEG segment: its label (structure name or lesion id), the mask it comes
    from (for its origin), its coded terminology and its voxels."""

    label: str
    mask: str
    term: "term.Term"
    crop: object


def _segments(case, findings: FindingsDict, structures) -> list:
    """Structures first (case order), then lesions (findings order)."""
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
            out.append(_Segment(n, n, term.term_for(n), crop))
    comps = {}
    for lesion in findings.get("lesions", []) or []:
        mask = lesion.get("mask")
        if mask is None or mask not in lesion_masks:
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
        out.append(_Segment(lid, mask, term.lesion_term(mask, lesion.get("side")), comp))
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


def _coded(hd, code: "term.Code"):
    """A terminology :class:`~RadGPTLogic.terminology.Code` as highdicom's CodedConcept."""
    return hd.sr.CodedConcept(code.value, code.scheme, code.meaning)


def _coding_schemes(hd, terms):
    """CodingSchemeIdentificationSequence items for the local scheme, when any term uses it."""
    if not term.local_codes_used(terms):
        return None
    return [hd.coding_schemes.CodingSchemeIdentificationItem(
        term.LOCAL_SCHEME, name=term.LOCAL_SCHEME_NAME, responsible_organization=MANUFACTURER)]


class _Digest:
    """SHA-256 over a sequence of values (their ``repr``), the content key of a UID."""

    def __init__(self, *parts):
        self._h = hashlib.sha256()
        self.add(*parts)

    def add(self, *parts) -> None:
        for part in parts:
            self._h.update(repr(part).encode("utf-8"))
            self._h.update(b"\x00")

    def hex(self) -> str:
        return self._h.hexdigest()


def _group(hd, codes, generate_uid, seg, study, tracking_id, segment_number, *, finding, site,
           laterality=None, long_mm=None, short_mm=None, volume_ml=None, mean_hu=None):
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
        finding_sites=[hd.sr.FindingSite(anatomic_location=site, laterality=laterality)],
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
