"""DICOM SEG + TID 1500 SR export (RadGPTLogic.io.dicom_export).

Real-data checks use ../shared/data/real/totalsegmentator/dicom_upper_abdomen (the CT
series and TotalSegmentator's labels on it), with a synthetic lesion (a sphere of
radius 8 mm inside the liver) added to the case so the SR has a lesion group.
Skipped without highdicom, SimpleITK or the data.  The SEG is read back with plain
pydicom and its frames are placed in space from their own ImagePositionPatient /
ImageOrientationPatient / PixelSpacing, independently of the exporter's mapping.
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

from RadGPTLogic.errors import InputError

REAL = Path(__file__).resolve().parents[2] / "shared" / "data" / "real"
SERIES = REAL / "totalsegmentator" / "dicom_upper_abdomen" / "ct_dicom"
LABELS = REAL / "totalsegmentator" / "dicom_upper_abdomen" / "example_seg_dicom.nii.gz"

SCT_LIVER = "10200004"
SCT_LESION = "52988006"
LONG_AXIS, SHORT_AXIS, VOLUME = "103339001", "103340004", "118565006"
ATTENUATION, FINDING_SITE, FINDING = "112031", "363698007", "121071"
TRACKING_ID, TRACKING_UID = "112039", "112040"


def test_missing_highdicom_is_a_one_line_input_error(monkeypatch):
    from RadGPTLogic.io.dicom_export import export_dicom

    monkeypatch.setitem(sys.modules, "highdicom", None)
    with pytest.raises(InputError) as exc:
        export_dicom(None, {}, "nowhere", "out")
    assert "pip install radgpt-slicer[dicom]" in str(exc.value)
    assert "\n" not in str(exc.value)


# ====================================================================== real case

@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    pytest.importorskip("highdicom")
    pytest.importorskip("SimpleITK")
    if not SERIES.is_dir() or not LABELS.is_file():
        pytest.skip(f"real data not available: {SERIES}")
    from RadGPTLogic.case import Crop
    from RadGPTLogic.engine import Engine
    from RadGPTLogic.io.dicom_export import export_dicom
    from RadGPTLogic.io.labelmaps import case_from_labelmap

    case = case_from_labelmap(LABELS, table="total", ct_path=SERIES)
    liver = case.crop("liver")
    full = np.zeros(case.shape, bool)
    full[liver.slices] = liver.mask
    centre = np.array(liver.offset) + np.array([80, 90, 10])
    assert full[tuple(centre)]
    i, j, k = np.ogrid[: case.shape[0], : case.shape[1], : case.shape[2]]
    sp = case.spacing
    sphere = ((i - centre[0]) * sp[0]) ** 2 + ((j - centre[1]) * sp[1]) ** 2 + ((k - centre[2]) * sp[2]) ** 2 <= 64
    case.structures["liver_lesion"] = Crop.from_full(sphere & full)
    findings = Engine(case).compute().to_dict()
    assert [les["id"] for les in findings["lesions"]] == ["liver_lesion_1"]
    out = tmp_path_factory.mktemp("dicom_export")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        paths = export_dicom(case, findings, SERIES, out)
    return case, findings, paths, [str(w.message) for w in caught]


@pytest.fixture(scope="module")
def seg(exported):
    import pydicom

    return pydicom.dcmread(str(exported[2][0]))


@pytest.fixture(scope="module")
def sr(exported):
    import pydicom

    return pydicom.dcmread(str(exported[2][1]))


def _ct_headers():
    import pydicom

    out = {}
    for p in sorted(SERIES.iterdir()):
        ds = pydicom.dcmread(str(p), stop_before_pixels=True)
        out[str(ds.file_meta.MediaStorageSOPInstanceUID)] = ds
    return out


def test_files_and_uid_warnings(exported):
    case, _findings, paths, messages = exported
    assert [p.name for p in paths] == [f"{case.case_id}_seg.dcm", f"{case.case_id}_sr.dcm"]
    assert all(p.is_file() for p in paths)
    # the sample files have blank study/series/SOP instance UIDs: generated and said so
    assert any("StudyInstanceUID" in m for m in messages)
    assert any("SeriesInstanceUID" in m for m in messages)


def test_seg_segments_labels_and_codes(exported, seg):
    case, findings, _paths, _ = exported
    assert seg.Modality == "SEG" and seg.SegmentationType == "BINARY"
    labels = [s.SegmentLabel for s in seg.SegmentSequence]
    expected = [n for n, c in case.structures.items() if not c.is_empty and n != "liver_lesion"]
    assert labels == expected + ["liver_lesion_1"]
    by_label = {s.SegmentLabel: s for s in seg.SegmentSequence}
    liver = by_label["liver"]
    assert liver.SegmentedPropertyTypeCodeSequence[0].CodeValue == SCT_LIVER
    assert liver.SegmentedPropertyTypeCodeSequence[0].CodingSchemeDesignator == "SCT"
    lesion = by_label["liver_lesion_1"]
    assert lesion.SegmentedPropertyTypeCodeSequence[0].CodeValue == SCT_LESION
    assert lesion.AnatomicRegionSequence[0].CodeValue == SCT_LIVER
    assert lesion.TrackingID == "liver_lesion_1"


def _segment_in_canonical(seg, number, case, headers):
    """Canonical bool volume of SEG segment ``number``, placed from the frames' own geometry."""
    pix = seg.pixel_array
    if pix.ndim == 2:
        pix = pix[None]
    row_dir = np.array(seg.SharedFunctionalGroupsSequence[0].PlaneOrientationSequence[0].ImageOrientationPatient[:3], float)
    col_dir = np.array(seg.SharedFunctionalGroupsSequence[0].PlaneOrientationSequence[0].ImageOrientationPatient[3:], float)
    dr, dc = (float(v) for v in seg.SharedFunctionalGroupsSequence[0].PixelMeasuresSequence[0].PixelSpacing)
    inv = np.linalg.inv(case.affine)
    out = np.zeros(case.shape, bool)
    n_frames = 0
    for f, group in enumerate(seg.PerFrameFunctionalGroupsSequence):
        if int(group.SegmentIdentificationSequence[0].ReferencedSegmentNumber) != number:
            continue
        n_frames += 1
        ipp = np.array(group.PlanePositionSequence[0].ImagePositionPatient, float)
        ref = group.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID
        # the frame lies on the CT slice it says it was derived from
        np.testing.assert_allclose(ipp, np.array(headers[str(ref)].ImagePositionPatient, float), atol=1e-3)
        r, c = np.nonzero(pix[f])
        lps = ipp + np.outer(c * dc, row_dir) + np.outer(r * dr, col_dir)
        ras = lps * np.array([-1.0, -1.0, 1.0])
        ijk = np.rint(ras @ inv[:3, :3].T + inv[:3, 3]).astype(int)
        out[ijk[:, 0], ijk[:, 1], ijk[:, 2]] = True
    assert n_frames > 0
    return out


@pytest.mark.parametrize("label", ["liver", "pancreas", "liver_lesion_1"])
def test_seg_frames_overlay_the_case_masks(exported, seg, label):
    case, findings, _paths, _ = exported
    headers = _ct_headers()
    labels = [s.SegmentLabel for s in seg.SegmentSequence]
    got = _segment_in_canonical(seg, labels.index(label) + 1, case, headers)
    crop = case.crop("liver_lesion" if label == "liver_lesion_1" else label)
    want = np.zeros(case.shape, bool)
    want[crop.slices] = crop.mask
    assert got.sum() == want.sum()
    assert np.array_equal(got, want)
    # the SEG references the CT instances of the series
    refs = {str(r.ReferencedSOPInstanceUID)
            for s in seg.ReferencedSeriesSequence for r in s.ReferencedInstanceSequence}
    assert refs == set(headers)


def _walk(items):
    for it in items:
        yield it
        yield from _walk(getattr(it, "ContentSequence", []))


def _code(item, attr="ConceptNameCodeSequence"):
    seq = getattr(item, attr, None)
    return str(seq[0].CodeValue) if seq else None


def _groups(sr):
    return [it for it in _walk(sr.ContentSequence) if it.ValueType == "CONTAINER" and _code(it) == "125007"]


def _group_by_tracking_id(sr):
    out = {}
    for g in _groups(sr):
        ids = [it.TextValue for it in g.ContentSequence if _code(it) == TRACKING_ID]
        out[ids[0]] = g
    return out


def _numbers(group):
    out = {}
    for it in group.ContentSequence:
        if it.ValueType == "NUM":
            mv = it.MeasuredValueSequence[0]
            out[_code(it)] = (float(mv.NumericValue), str(mv.MeasurementUnitsCodeSequence[0].CodeValue))
    return out


def test_sr_lesion_group_values_equal_findings(exported, sr):
    _case, findings, _paths, _ = exported
    assert sr.Modality == "SR" and sr.ContentTemplateSequence[0].TemplateIdentifier == "1500"
    lesion = findings["lesions"][0]
    group = _group_by_tracking_id(sr)["liver_lesion_1"]
    assert any(_code(it) == TRACKING_UID for it in group.ContentSequence)
    nums = _numbers(group)
    assert nums[LONG_AXIS][1] == "mm" and nums[LONG_AXIS][0] == pytest.approx(lesion["longest_diameter_mm"], abs=1e-3)
    assert nums[SHORT_AXIS][1] == "mm"
    assert nums[SHORT_AXIS][0] == pytest.approx(lesion["perpendicular_diameter_mm"], abs=1e-3)
    assert nums[VOLUME][1] == "ml" and nums[VOLUME][0] == pytest.approx(lesion["volume_ml"], rel=1e-6)
    assert nums[ATTENUATION][1] == "[hnsf'U]" and nums[ATTENUATION][0] == pytest.approx(lesion["mean_hu"], abs=1e-3)
    sites = [it for it in group.ContentSequence if _code(it) == FINDING_SITE]
    assert _code(sites[0], "ConceptCodeSequence") == SCT_LIVER
    finding = [it for it in group.ContentSequence if _code(it) == FINDING]
    assert _code(finding[0], "ConceptCodeSequence") == SCT_LESION


def test_sr_organ_groups(exported, sr):
    _case, findings, _paths, _ = exported
    groups = _group_by_tracking_id(sr)
    liver = _numbers(groups["liver"])
    assert liver[ATTENUATION][0] == pytest.approx(findings["organs"]["liver"]["mean_hu"], abs=1e-3)
    # the sample covers 20 slices: organs are incomplete, so no volume is reported
    assert findings["organs"]["liver"]["volume_ml"] is None and VOLUME not in liver


def test_sr_references_seg_segment_and_ct(exported, seg, sr):
    headers = _ct_headers()
    group = _group_by_tracking_id(sr)["liver_lesion_1"]
    images = [it for it in _walk(group.ContentSequence) if it.ValueType == "IMAGE"]
    refs = [it.ReferencedSOPSequence[0] for it in images]
    seg_refs = [r for r in refs if str(r.ReferencedSOPInstanceUID) == str(seg.SOPInstanceUID)]
    assert seg_refs, "lesion group does not reference the SEG"
    labels = [s.SegmentLabel for s in seg.SegmentSequence]
    assert int(seg_refs[0].ReferencedSegmentNumber) == labels.index("liver_lesion_1") + 1
    evidence = {str(i.ReferencedSOPInstanceUID)
                for st in sr.CurrentRequestedProcedureEvidenceSequence
                for se in st.ReferencedSeriesSequence for i in se.ReferencedSOPSequence}
    assert str(seg.SOPInstanceUID) in evidence
    assert set(headers) <= evidence
    assert sr.StudyInstanceUID == seg.StudyInstanceUID


def test_grid_mismatch_is_refused(exported, tmp_path):
    from RadGPTLogic.io.dicom_export import export_dicom

    case, findings, _paths, _ = exported
    moved = type(case)(case_id=case.case_id, shape=case.shape, affine=case.affine.copy(), ornt=case.ornt,
                       source_shape=case.source_shape, structures=dict(case.structures))
    moved.affine[0, 3] += 5.0
    with pytest.raises(InputError, match="grid"):
        export_dicom(moved, findings, SERIES, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_export_dicom_command(tmp_path):
    """radgpt import (DICOM CT) -> report -> export-dicom writes a SEG and an SR that pydicom reads."""
    import os
    import subprocess
    import sys

    pytest.importorskip("highdicom")
    pytest.importorskip("SimpleITK")
    real = Path(__file__).resolve().parents[2] / "shared" / "data" / "real" / "totalsegmentator" / "dicom_upper_abdomen"
    if not real.exists():
        pytest.skip("real DICOM data not available")
    repo = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": str(repo)}

    def radgpt(*args):
        proc = subprocess.run([sys.executable, "-m", "RadGPTLogic.cli", *map(str, args)],
                              capture_output=True, text=True, cwd=repo, env=env)
        assert proc.returncode == 0, proc.stderr
        return proc

    radgpt("import", real / "example_seg_dicom.nii.gz", "--labels", "total", "--ct", real / "ct_dicom",
           "--out", tmp_path / "case")
    radgpt("report", tmp_path / "case", "--out", tmp_path / "out", "--phase", "venous")
    proc = radgpt("export-dicom", tmp_path / "case", tmp_path / "out", "--dicom", real / "ct_dicom")
    import pydicom

    files = sorted((tmp_path / "out" / "dicom").glob("*.dcm"))
    assert len(files) == 2 and all(str(f) in proc.stdout for f in files)
    modalities = {pydicom.dcmread(f).Modality for f in files}
    assert modalities == {"SEG", "SR"}
