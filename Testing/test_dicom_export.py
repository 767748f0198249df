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
    orientation = seg.SharedFunctionalGroupsSequence[0].PlaneOrientationSequence[0].ImageOrientationPatient
    row_dir = np.array(orientation[:3], float)
    col_dir = np.array(orientation[3:], float)
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


# ====================================================================== a PACS can trust it
#
# A repaired copy of the real series (the sample's blank Study/Series/SOP Instance UIDs
# filled in, as any PACS-bound series has them), so that the validators can check
# the CT, SEG and SR together.  The case gets a synthetic left kidney with a tumour
# (laterality), and the AbdomenAtlas `veins` mask (a code of the local scheme).

def _validator(name):
    import shutil

    if shutil.which(name) is None:
        pytest.skip(f"{name} not installed (Debian package {'dcmtk' if name == 'dsrdump' else 'dicom3tools'})")
    return name


@pytest.fixture(scope="module")
def repaired_series(tmp_path_factory):
    pydicom = pytest.importorskip("pydicom")
    from pydicom.uid import generate_uid

    if not SERIES.is_dir():
        pytest.skip(f"real data not available: {SERIES}")
    out = tmp_path_factory.mktemp("ct_series")
    study, series, frame = generate_uid(), generate_uid(), generate_uid()
    for path in sorted(SERIES.iterdir()):
        ds = pydicom.dcmread(str(path))
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study, series, frame
        ds.save_as(str(out / path.name), enforce_file_format=True)
    return out


def _ball(case, centre_ijk, radius_mm, within=None):
    i, j, k = np.ogrid[: case.shape[0], : case.shape[1], : case.shape[2]]
    sp = case.spacing
    ball = (((i - centre_ijk[0]) * sp[0]) ** 2 + ((j - centre_ijk[1]) * sp[1]) ** 2
            + ((k - centre_ijk[2]) * sp[2]) ** 2) <= radius_mm ** 2
    return ball if within is None else ball & within


@pytest.fixture(scope="module")
def trusted(repaired_series):
    """The case on the repaired series, its findings and one export."""
    pytest.importorskip("highdicom")
    pytest.importorskip("SimpleITK")
    from RadGPTLogic.case import Crop
    from RadGPTLogic.engine import Engine
    from RadGPTLogic.io.labelmaps import case_from_labelmap

    case = case_from_labelmap(LABELS, table="total", ct_path=repaired_series)
    # A left kidney (patient's left = small canonical i) and a tumour inside it.
    centre = (int(case.shape[0] * 0.28), int(case.shape[1] * 0.3), case.shape[2] // 2)
    kidney = _ball(case, centre, 30.0)
    case.structures["kidney_left"] = Crop.from_full(kidney)
    case.structures["kidney_tumor"] = Crop.from_full(_ball(case, centre, 9.0))
    case.structures["veins"] = Crop.from_full(_ball(case, (centre[0] + 90, centre[1] + 40, centre[2]), 6.0))
    liver = case.crop("liver")
    full = np.zeros(case.shape, bool)
    full[liver.slices] = liver.mask
    case.structures["liver_lesion"] = Crop.from_full(
        _ball(case, np.array(liver.offset) + np.array([80, 90, 10]), 8.0, within=full))
    findings = Engine(case).compute().to_dict()
    return case, findings


def _export(case, findings, series, out, **kw):
    import pydicom

    from RadGPTLogic.io.dicom_export import export_dicom

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        seg_path, sr_path = export_dicom(case, findings, series, out, **kw)
    return pydicom.dcmread(str(seg_path)), pydicom.dcmread(str(sr_path)), [str(w.message) for w in caught]


def _errors(output: str) -> list:
    return [line for line in output.splitlines() if line.lstrip().startswith("Error")]


def test_validators_find_no_error(trusted, repaired_series, tmp_path):
    """dciodvfy on the SEG and the SR, dcentvfy over CT + SEG + SR, dcmtk's dsrdump on the SR: zero errors."""
    import subprocess

    dciodvfy, dcentvfy = _validator("dciodvfy"), _validator("dcentvfy")
    case, findings = trusted
    from RadGPTLogic.io.dicom_export import export_dicom

    # an in-memory case: nothing records how its masks were made, and the export says so
    with pytest.warns(UserWarning, match="exported as MANUAL"):
        paths = export_dicom(case, findings, repaired_series, tmp_path / "out")
    for path in paths:
        proc = subprocess.run([dciodvfy, str(path)], capture_output=True, text=True)
        out = proc.stdout + proc.stderr
        assert ("Segmentation" if path.name.endswith("_seg.dcm") else "Comprehensive3DSR") in out
        assert _errors(out) == [], f"{path.name}: {_errors(out)}"
    # dcmtk reads the SR content tree strictly (no "ignore item errors"): no error, no warning.
    dsrdump = _validator("dsrdump")
    proc = subprocess.run([dsrdump, str(paths[1])], capture_output=True, text=True)
    assert proc.returncode == 0 and "Imaging Measurement Report" in proc.stdout
    assert not [line for line in proc.stderr.splitlines() if line[:2] in ("E:", "F:", "W:")], proc.stderr
    ct = sorted(str(p) for p in repaired_series.iterdir())
    proc = subprocess.run([dcentvfy, *ct, *map(str, paths)], capture_output=True, text=True)
    assert _errors(proc.stdout + proc.stderr) == []
    # The validator does report errors where there are some: the same check over the
    # CT as published (blank UIDs) and the objects referencing the repaired copy.
    proc = subprocess.run([dcentvfy, *sorted(str(p) for p in SERIES.iterdir()), *map(str, paths)],
                          capture_output=True, text=True)
    assert _errors(proc.stdout + proc.stderr)


def _by_label(seg):
    return {s.SegmentLabel: s for s in seg.SegmentSequence}


def test_laterality_in_seg_and_sr(trusted, repaired_series, tmp_path):
    case, findings = trusted
    seg, sr, _ = _export(case, findings, repaired_series, tmp_path / "out")
    segs = _by_label(seg)
    LEFT, RIGHT = "7771000", "24028007"

    def type_modifier(s):
        mods = getattr(s.SegmentedPropertyTypeCodeSequence[0], "SegmentedPropertyTypeModifierCodeSequence", [])
        return [m.CodeValue for m in mods]

    assert type_modifier(segs["kidney_left"]) == [LEFT]
    assert type_modifier(segs["adrenal_gland_right"]) == [RIGHT]
    assert segs["kidney_left"].SegmentedPropertyTypeCodeSequence[0].CodeValue == "64033007"
    assert type_modifier(segs["liver"]) == []
    tumour = next(les for les in findings["lesions"] if les["mask"] == "kidney_tumor")
    assert tumour["side"] == "left"
    region = segs[tumour["id"]].AnatomicRegionSequence[0]
    assert region.CodeValue == "64033007" and [m.CodeValue for m in region.AnatomicRegionModifierSequence] == [LEFT]
    group = _group_by_tracking_id(sr)[tumour["id"]]
    site = next(it for it in group.ContentSequence if _code(it) == FINDING_SITE)
    assert _code(site, "ConceptCodeSequence") == "64033007"
    laterality = [it for it in site.ContentSequence if _code(it) == "272741003"]
    assert [_code(it, "ConceptCodeSequence") for it in laterality] == [LEFT]
    # an organ group with a side: the left kidney
    kidney_site = next(it for it in _group_by_tracking_id(sr)["kidney_left"].ContentSequence
                       if _code(it) == FINDING_SITE)
    assert [_code(it, "ConceptCodeSequence") for it in kidney_site.ContentSequence] == [LEFT]


def _lab_to_rgb(lab16):
    """DICOM CIELab (0..65535 scaled) -> sRGB 0..255, D65 (CIE 1976 and IEC 61966-2-1 formulas)."""
    L = lab16[0] / 65535 * 100.0
    a = lab16[1] / 65535 * 255.0 - 128.0
    b = lab16[2] / 65535 * 255.0 - 128.0
    fy = (L + 16) / 116
    fx, fz = fy + a / 500, fy - b / 200

    def finv(t):
        return t ** 3 if t ** 3 > 216 / 24389 else (116 * t - 16) / (24389 / 27)

    X, Y, Z = 0.95047 * finv(fx), 1.0 * finv(fy), 1.08883 * finv(fz)
    lin = (3.2404542 * X - 1.5371385 * Y - 0.4985314 * Z,
           -0.9692660 * X + 1.8760108 * Y + 0.0415560 * Z,
           0.0556434 * X - 0.2040259 * Y + 1.0572252 * Z)
    gamma = [12.92 * c if c <= 0.0031308 else 1.055 * c ** (1 / 2.4) - 0.055 for c in lin]
    return [min(255.0, max(0.0, 255.0 * c)) for c in gamma]


def test_display_colours_and_series_descriptions(trusted, repaired_series, tmp_path):
    from RadGPTLogic import terminology

    case, findings = trusted
    seg, sr, _ = _export(case, findings, repaired_series, tmp_path / "out")
    lesion_mask = {les["id"]: (les["mask"], les.get("side")) for les in findings["lesions"]}
    for s in seg.SegmentSequence:
        label = s.SegmentLabel
        t = (terminology.lesion_term(*lesion_mask[label]) if label in lesion_mask else terminology.term_for(label))
        rgb = _lab_to_rgb([int(v) for v in s.RecommendedDisplayCIELabValue])
        assert np.allclose(rgb, t.rgb, atol=1.5), (label, rgb, t.rgb)
        assert s.SegmentedPropertyTypeCodeSequence[0].CodeValue == t.type.value
    assert seg.SeriesDescription == "RadGPT segmentation"
    assert sr.SeriesDescription == "RadGPT measurement report"
    # the local scheme is declared when a local code is used (veins)
    assert _by_label(seg)["veins"].SegmentedPropertyTypeCodeSequence[0].CodingSchemeDesignator == "99RADGPT"
    assert [item.CodingSchemeDesignator for item in seg.CodingSchemeIdentificationSequence] == ["99RADGPT"]


def test_uids_follow_the_content(trusted, repaired_series, tmp_path):
    from dataclasses import replace as dc_replace

    from RadGPTLogic.case import Crop

    case, findings = trusted
    seg1, sr1, _ = _export(case, findings, repaired_series, tmp_path / "a")
    seg2, sr2, _ = _export(case, findings, repaired_series, tmp_path / "b")
    for a, b in ((seg1, seg2), (sr1, sr2)):
        assert a.SOPInstanceUID == b.SOPInstanceUID and a.SeriesInstanceUID == b.SeriesInstanceUID
    # One voxel of the liver edited (as in Slicer) -> a new SEG and a new SR.
    edited = dc_replace(case, structures=dict(case.structures))
    liver = case.crop("liver")
    mask = liver.mask.copy()
    idx = tuple(int(v[0]) for v in np.nonzero(mask))
    mask[idx] = False
    edited.structures["liver"] = Crop(mask, liver.offset)
    seg3, sr3, _ = _export(edited, findings, repaired_series, tmp_path / "c")
    assert seg3.SOPInstanceUID != seg1.SOPInstanceUID and seg3.SeriesInstanceUID != seg1.SeriesInstanceUID
    assert sr3.SOPInstanceUID != sr1.SOPInstanceUID and sr3.SeriesInstanceUID != sr1.SeriesInstanceUID
    # Only a reported number changed -> the same SEG, a new SR.
    changed = json_copy(findings)
    changed["lesions"][0]["mean_hu"] = (changed["lesions"][0]["mean_hu"] or 0.0) + 1.0
    seg4, sr4, _ = _export(case, changed, repaired_series, tmp_path / "d")
    assert seg4.SOPInstanceUID == seg1.SOPInstanceUID
    assert sr4.SOPInstanceUID != sr1.SOPInstanceUID and sr4.SeriesInstanceUID != sr1.SeriesInstanceUID
    # The algorithm type is content too.
    seg5, _sr5, _ = _export(case, findings, repaired_series, tmp_path / "e", algorithm_types={"liver": "SEMIAUTOMATIC"})
    assert seg5.SOPInstanceUID != seg1.SOPInstanceUID


def json_copy(obj):
    import json

    return json.loads(json.dumps(obj))


# ====================================================================== algorithm type from provenance

def _algorithm(seg):
    out = {}
    for s in seg.SegmentSequence:
        names = [a.AlgorithmName for a in getattr(s, "SegmentationAlgorithmIdentificationSequence", [])]
        out[s.SegmentLabel] = (s.SegmentAlgorithmType, names[0] if names else None)
    return out


def _radgpt(*args):
    from RadGPTLogic.cli import main

    assert main([str(a) for a in args]) == 0


def test_algorithm_type_from_provenance(tmp_path):
    """Model output -> AUTOMATIC, edited since -> SEMIAUTOMATIC, expert labels (AMOS) -> MANUAL,
    segmentation.json -> AUTOMATIC, nothing recorded -> MANUAL."""
    import json
    import shutil

    import nibabel as nib
    import pydicom

    pytest.importorskip("highdicom")
    pytest.importorskip("SimpleITK")
    if not SERIES.is_dir() or not LABELS.is_file():
        pytest.skip(f"real data not available: {SERIES}")

    def export(case_dir, name):
        _radgpt("report", case_dir, "--out", tmp_path / name, "--phase", "venous")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            _radgpt("export-dicom", case_dir, tmp_path / name, "--dicom", SERIES)
        return _algorithm(pydicom.dcmread(str(next((tmp_path / name / "dicom").glob("*_seg.dcm")))))

    # TotalSegmentator output imported with its table: model output.
    ts = tmp_path / "ts"
    _radgpt("import", LABELS, "--labels", "total", "--ct", SERIES, "--out", ts)
    record = json.loads((ts / "import.json").read_text(encoding="utf-8"))
    assert record["label_table"] == "total" and record["algorithm_type"] == "AUTOMATIC"
    assert set(record["structures"]) == {p.name[:-7] for p in (ts / "segmentations").glob("*.nii.gz")}
    got = export(ts, "ts_out")
    assert got and all(v == ("AUTOMATIC", "TotalSegmentator") for v in got.values()), got

    # The liver edited after the import (one slice cleared): SEMIAUTOMATIC, the rest unchanged.
    liver_file = ts / "segmentations" / "liver.nii.gz"
    img = nib.load(liver_file)
    arr = np.asarray(img.dataobj).copy()
    arr[:, :, int(np.flatnonzero(arr.any(axis=(0, 1)))[0])] = 0
    nib.save(nib.Nifti1Image(arr, img.affine, img.header), liver_file)
    got = export(ts, "ts_edited")
    assert got["liver"] == ("SEMIAUTOMATIC", "TotalSegmentator")
    assert got["spleen"] == ("AUTOMATIC", "TotalSegmentator")

    # The same structures numbered as AMOS (an expert annotation): MANUAL, no algorithm.
    seg = nib.load(LABELS)
    labels = np.asarray(seg.dataobj)
    amos = np.zeros(labels.shape, np.uint8)
    for ts_value, amos_value in ((1, 1), (5, 6), (6, 7), (7, 10), (52, 8), (63, 9), (8, 11)):
        amos[labels == ts_value] = amos_value
    amos_file = tmp_path / "amos_labels.nii.gz"
    nib.save(nib.Nifti1Image(amos, seg.affine), amos_file)
    amos_case = tmp_path / "amos"
    _radgpt("import", amos_file, "--labels", "amos", "--ct", SERIES, "--out", amos_case)
    got = export(amos_case, "amos_out")
    assert {"liver", "spleen", "pancreas"} <= set(got)
    assert all(v == ("MANUAL", None) for v in got.values()), got

    # No record at all: MANUAL; a segmentation.json naming the liver as model output: AUTOMATIC.
    bare = tmp_path / "bare"
    shutil.copytree(ts, bare)
    (bare / "import.json").unlink()
    got = export(bare, "bare_out")
    assert all(v == ("MANUAL", None) for v in got.values()), got
    (bare / "segmentation.json").write_text(json.dumps(
        {"structures": {"liver": {"model": "RadGPT nnU-Net abdomen", "version": "1"}}}))
    got = export(bare, "model_out")
    assert got["liver"] == ("AUTOMATIC", "RadGPT nnU-Net abdomen")
    assert got["spleen"] == ("MANUAL", None)
    # ... and edited since the model wrote it (a recorded hash that no longer matches).
    (bare / "segmentation.json").write_text(json.dumps(
        {"structures": {"liver": {"model": "RadGPT nnU-Net abdomen", "sha256": "0" * 64}}}))
    assert export(bare, "model_edited")["liver"] == ("SEMIAUTOMATIC", "RadGPT nnU-Net abdomen")
