"""Importers: multi-label NIfTI + label tables, Slicer .seg.nrrd, and writing case folders.

Real-data checks use ../shared/data/real (skipped when absent); expected numbers come
from that folder's README and TotalSegmentator's own statistics.json, and positions
are recomputed here from the raw files with nibabel, independently of the project code.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from RadGPTLogic.case import Case
from RadGPTLogic.errors import InputError
from RadGPTLogic.io.casefolder import load_case, write_case_folder
from RadGPTLogic.io.label_tables import (
    ABDOMENATLAS_3_0,
    AMOS,
    DERIVED,
    TABLES,
    TOTALSEGMENTATOR_TOTAL,
    LabelTable,
    load_table,
)
from RadGPTLogic.io.labelmaps import case_from_labelmap, read_embedded_label_names
from RadGPTLogic.io.segnrrd import case_from_seg_nrrd

REAL = Path(__file__).resolve().parents[2] / "shared" / "data" / "real"
LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])


def real(*parts) -> Path:
    p = REAL.joinpath(*parts)
    if not p.exists():
        pytest.skip(f"real data not available: {p}")
    return p


def volume_ml(case: Case, name: str) -> float:
    return case.crop(name).count * case.voxel_volume_mm3 / 1000.0


def crop_centroid_ras(case: Case, name: str) -> np.ndarray:
    crop = case.crop(name)
    ijk = np.argwhere(crop.mask).mean(axis=0) + np.asarray(crop.offset)
    return (case.affine @ np.append(ijk, 1.0))[:3]


def full_canonical(case: Case, name: str) -> np.ndarray:
    out = np.zeros(case.shape, bool)
    crop = case.crop(name)
    if not crop.is_empty:
        out[crop.slices] = crop.mask
    return out


def assert_same_crops(a: Case, b: Case) -> None:
    assert sorted(a.structures) == sorted(b.structures)
    for name in a.structures:
        ca, cb = a.crop(name), b.crop(name)
        assert ca.offset == cb.offset, name
        assert ca.shape == cb.shape, name
        assert np.array_equal(ca.mask, cb.mask), name


def save_nifti(path: Path, data: np.ndarray, affine: np.ndarray) -> Path:
    nib.save(nib.Nifti1Image(data, affine), str(path))
    return path


# Small synthetic grid stored in LPS: axis 0 -> patient Left, 1 -> Posterior, 2 -> Superior.
LPS_AFFINE = np.array([
    [-2.0, 0.0, 0.0, 40.0],
    [0.0, -1.5, 0.0, 25.0],
    [0.0, 0.0, 3.0, -60.0],
    [0.0, 0.0, 0.0, 1.0],
])
SMALL_SHAPE = (20, 16, 10)


def small_label_map() -> np.ndarray:
    lab = np.zeros(SMALL_SHAPE, np.uint8)
    lab[2:8, 3:9, 2:6] = 1      # parenchyma only (named only as part of a region)
    lab[4:6, 5:7, 3:5] = 2      # tumour inside it
    lab[12:17, 4:10, 1:8] = 3   # pancreas
    lab[18, 14, 9] = 7          # a value no table names
    return lab


def ras_centroid_of_value(data: np.ndarray, affine: np.ndarray, value: int) -> np.ndarray:
    ijk = np.argwhere(data == value).mean(axis=0)
    return (affine @ np.append(ijk, 1.0))[:3]


# ============================================================================ AMOS

AMOS_LABEL = ("amos", "amos_0013_label.nii.gz")


def test_amos_structures_and_volumes():
    case = case_from_labelmap(real(*AMOS_LABEL), table="amos")
    expected = {
        "liver", "spleen", "kidney_right", "kidney_left", "pancreas", "aorta", "postcava",
        "gall_bladder", "stomach", "duodenum", "esophagus", "adrenal_gland_right",
        "adrenal_gland_left", "bladder",
    }
    assert expected <= set(case.structures)
    assert "prostate_uterus" in case.ignored
    assert case.warnings == []
    readme_ml = {
        "spleen": 288, "kidney_right": 93, "kidney_left": 123, "liver": 1139,
        "pancreas": 42.5, "aorta": 62.8, "postcava": 60.2,
    }
    for name, ml in readme_ml.items():
        assert volume_ml(case, name) == pytest.approx(ml, rel=0.005), name
    assert case.case_id == "amos_0013_label"


def test_amos_laterality_from_raw_file():
    path = real(*AMOS_LABEL)
    img = nib.load(str(path))
    data = np.asarray(img.dataobj)
    right = ras_centroid_of_value(data, img.affine, 2)   # AMOS 2 = right kidney
    left = ras_centroid_of_value(data, img.affine, 3)    # AMOS 3 = left kidney
    # RAS+: x grows towards the patient's right.
    assert right[0] > left[0] + 50

    case = case_from_labelmap(path, table="amos")
    np.testing.assert_allclose(crop_centroid_ras(case, "kidney_right"), right, atol=1e-6)
    np.testing.assert_allclose(crop_centroid_ras(case, "kidney_left"), left, atol=1e-6)


# ================================================================ TotalSegmentator

TS_SEG = ("totalsegmentator", "ct_sm", "example_seg_fast.nii.gz")
TS_CT = ("totalsegmentator", "ct_sm", "example_ct_sm.nii.gz")
TS_STATS = ("totalsegmentator", "ct_sm", "example_seg_fast_statistics.json")


def test_total_table_equals_names_embedded_by_totalsegmentator():
    assert len(TOTALSEGMENTATOR_TOTAL) == 117
    assert read_embedded_label_names(real(*TS_SEG)) == TOTALSEGMENTATOR_TOTAL


def test_totalsegmentator_embedded_names_equal_total_table():
    path = real(*TS_SEG)
    embedded = case_from_labelmap(path)
    tabled = case_from_labelmap(path, table="total")
    assert_same_crops(embedded, tabled)
    assert embedded.ignored == tabled.ignored
    assert {"liver", "spleen", "pancreas", "postcava", "intestine", "gall_bladder"} <= set(embedded.structures)
    # Lesion classes of the table that the image lacks are "looked for, none found".
    assert embedded.crop("kidney_cyst").is_empty
    assert any(n.startswith("vertebrae_") for n in embedded.ignored)


def test_totalsegmentator_volumes_and_hu_match_its_statistics():
    stats = json.loads(real(*TS_STATS).read_text(encoding="utf-8"))
    case = case_from_labelmap(real(*TS_SEG), ct_path=real(*TS_CT))
    assert case.has_ct and case.sources["ct"][0]["path"] == str(real(*TS_CT))
    assert len(case.sources["ct"][0]["sha256"]) == 64
    pairs = {
        "liver": "liver", "spleen": "spleen", "pancreas": "pancreas",
        "kidney_right": "kidney_right", "kidney_left": "kidney_left", "aorta": "aorta",
        "postcava": "inferior_vena_cava",
        "portal_vein_and_splenic_vein": "portal_vein_and_splenic_vein",
        "gall_bladder": "gallbladder",
    }
    for ours, theirs in pairs.items():
        mm3 = case.crop(ours).count * case.voxel_volume_mm3
        assert mm3 == pytest.approx(stats[theirs]["volume"], rel=0.001), ours
        crop = case.crop(ours)
        mean_hu = float(case.hu(crop.slices)[crop.mask].mean())
        assert mean_hu == pytest.approx(stats[theirs]["intensity"], abs=0.01), ours


# ================================================================== label tables

def test_registry_tables():
    assert TABLES["amos"] is AMOS and TABLES["abdomenatlas3"] is ABDOMENATLAS_3_0
    t = load_table("AMOS")
    assert t.names[9] == "postcava" and t.unions == {}
    t3 = load_table("abdomenatlas3")
    assert t3.unions == {"liver": list(range(24, 32)), "pancreas": [32, 33, 34]}
    assert sorted(t3.names_for(33)) == ["pancreas", "pancreas_body"]
    # Passing the registry dict itself keeps its derived unions.
    assert load_table(ABDOMENATLAS_3_0).unions == DERIVED["abdomenatlas3"]
    assert load_table({"1": "liver", 2: "spleen"}).names == {1: "liver", 2: "spleen"}


def test_abdomenatlas3_derives_liver_and_pancreas(tmp_path):
    lab = np.zeros(SMALL_SHAPE, np.uint8)
    for n in range(8):
        lab[2 + 2 * n: 4 + 2 * n, 2:6, 2:4] = 24 + n   # liver segments 1..8
    lab[2:5, 10:14, 6:9] = 32                            # pancreas head
    lab[5:9, 10:14, 6:9] = 33                            # body
    lab[9:12, 10:14, 6:9] = 34                           # tail
    path = save_nifti(tmp_path / "atlas3.nii.gz", lab, np.diag([1.0, 1.0, 2.0, 1.0]))
    case = case_from_labelmap(path, table="abdomenatlas3")
    assert case.crop("liver").count == np.count_nonzero((lab >= 24) & (lab <= 31))
    assert case.crop("pancreas").count == np.count_nonzero(lab >= 32)
    assert case.crop("liver_segment_3").count == np.count_nonzero(lab == 26)
    assert case.crop("pancreas_tail").count == np.count_nonzero(lab == 34)


def test_nnunet_dataset_json_with_regions_on_lps_map(tmp_path):
    lab = small_label_map()
    path = save_nifti(tmp_path / "case_007.nii.gz", lab, LPS_AFFINE)
    assert nib.aff2axcodes(LPS_AFFINE) == ("L", "P", "S")
    dataset = {
        "channel_names": {"0": "CT"},
        "labels": {"background": 0, "liver": [1, 2], "liver tumor": 2, "Pancreas": 3},
        "regions_class_order": [1, 2, 3],
        "numTraining": 1,
        "file_ending": ".nii.gz",
    }
    (tmp_path / "dataset.json").write_text(json.dumps(dataset))
    # Value 7 is in the file but not in the table: the table does not fit (never a silent drop).
    with pytest.raises(InputError, match=r"label value 7 .* not in the label table"):
        case_from_labelmap(path, table=tmp_path / "dataset.json", case_id="c7")
    lab = np.where(lab == 7, 0, lab)
    path = save_nifti(tmp_path / "case_007.nii.gz", lab, LPS_AFFINE)
    case = case_from_labelmap(path, table=tmp_path / "dataset.json", case_id="c7")
    assert case.case_id == "c7"
    assert set(case.structures) == {"liver", "liver_tumor", "pancreas"}
    assert case.crop("liver").count == np.count_nonzero((lab == 1) | (lab == 2))
    assert case.crop("liver_tumor").count == np.count_nonzero(lab == 2)
    # Every tumour voxel is also a liver voxel (regions overlap by design).
    assert np.all(full_canonical(case, "liver")[full_canonical(case, "liver_tumor")])
    for name, value in (("liver_tumor", 2), ("pancreas", 3)):
        np.testing.assert_allclose(
            crop_centroid_ras(case, name), ras_centroid_of_value(lab, LPS_AFFINE, value), atol=1e-9
        )


def test_plain_json_colour_table_and_itksnap_tables(tmp_path):
    lab = small_label_map()
    path = save_nifti(tmp_path / "lab.nii.gz", lab, LPS_AFFINE)

    (tmp_path / "plain.json").write_text(
        json.dumps({"1": "liver", "2": "hepatic tumor", "3": "pancreas", "7": "mystery organ"}))
    (tmp_path / "colours.ctbl").write_text(
        "# Slicer colour table\n0 Background 0 0 0 0\n1 liver 200 100 50 255\n"
        "2 liver_tumor 255 0 0 255\n3 pancreas 0 255 0 255\n\n"
    )
    (tmp_path / "itksnap.txt").write_text(
        '# ITK-SNAP Label Description File\n'
        '    0     0    0    0        0  0  0    "Clear Label"\n'
        '    1   255    0    0        1  1  1    "Liver"\n'
        '    2     0  255    0        1  1  1    "Liver Tumor"\n'
        '    3     0    0  255        1  1  1    "Pancreas"\n'
    )
    for table in ("plain.json", "colours.ctbl", "itksnap.txt"):
        case = case_from_labelmap(path, table=tmp_path / table)
        assert {"liver", "liver_tumor", "pancreas"} <= set(case.structures), table
        assert case.crop("liver").count == np.count_nonzero(lab == 1), table
        assert case.crop("liver_tumor").count == np.count_nonzero(lab == 2), table
    case = case_from_labelmap(path, table=tmp_path / "plain.json")
    assert any("mystery organ" in w for w in case.warnings)


def test_table_errors_name_the_file(tmp_path):
    with pytest.raises(InputError, match="no-such-table"):
        load_table("no-such-table")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(InputError, match="bad.json"):
        load_table(bad)
    dup = tmp_path / "dup.txt"
    dup.write_text("1 liver 1 1 1 1\n1 spleen 1 1 1 1\n")
    with pytest.raises(InputError, match="dup.txt.*given twice"):
        load_table(dup)


def test_float_label_map_with_integral_values_and_odd_values(tmp_path):
    lab = small_label_map().astype(np.float32)
    lab[0, 0, 0] = 70000.0   # large value: not in the table
    lab[0, 1, 0] = -3.0      # negative value: not in the table
    path = save_nifti(tmp_path / "float_labels.nii.gz", lab, LPS_AFFINE)
    case = case_from_labelmap(path, table={1: "liver", 2: "liver_tumor", 3: "pancreas"})
    assert case.crop("liver").count == np.count_nonzero(lab == 1)
    assert case.crop("pancreas").count == np.count_nonzero(lab == 3)
    warned = " ".join(case.warnings)
    for value in ("70000", "-3", "7"):
        assert f"label value {value} " in warned


def test_scaled_integer_label_map(tmp_path):
    lab = small_label_map()
    img = nib.Nifti1Image((lab * 2).astype(np.int16), LPS_AFFINE)
    img.header.set_slope_inter(0.5, 0.0)   # stored 2*label, read back as label
    path = tmp_path / "scaled.nii.gz"
    nib.save(img, str(path))
    assert nib.load(str(path)).dataobj.slope == 0.5
    case = case_from_labelmap(path, table={"1": "liver", "3": "pancreas"})
    assert case.crop("pancreas").count == np.count_nonzero(lab == 3)


# ==================================================================== bad inputs

def test_non_integral_labels_are_an_error_naming_the_file(tmp_path):
    lab = small_label_map().astype(np.float32)
    lab[5, 5, 5] = 0.5
    path = save_nifti(tmp_path / "probabilities.nii.gz", lab, LPS_AFFINE)
    with pytest.raises(InputError, match=r"probabilities\.nii\.gz.*non-integer value 0\.5"):
        case_from_labelmap(path, table="amos")


def test_label_map_off_the_ct_grid_is_an_error_naming_the_label_file(tmp_path):
    lab_path = save_nifti(tmp_path / "labels.nii.gz", small_label_map(), LPS_AFFINE)
    ct = np.zeros(SMALL_SHAPE, np.int16)
    shifted = LPS_AFFINE.copy()
    shifted[0, 3] += 0.5
    ct_path = save_nifti(tmp_path / "ct.nii.gz", ct, shifted)
    with pytest.raises(InputError, match=r"labels\.nii\.gz.*not on the grid") as err:
        case_from_labelmap(lab_path, table="amos", ct_path=ct_path)
    assert err.value.path == str(lab_path)
    other_shape = save_nifti(tmp_path / "ct2.nii.gz", np.zeros((20, 16, 11), np.int16), LPS_AFFINE)
    with pytest.raises(InputError, match=r"labels\.nii\.gz.*shape"):
        case_from_labelmap(lab_path, table="amos", ct_path=other_shape)


def test_label_map_on_ct_grid_in_another_orientation_is_accepted(tmp_path):
    lab = small_label_map()
    lab_path = save_nifti(tmp_path / "labels.nii.gz", lab, LPS_AFFINE)
    # The CT stored RAS: flip axes 0 and 1 of the data and the affine accordingly.
    ras_affine = LPS_AFFINE.copy()
    ras_affine[:, 0] *= -1
    ras_affine[:, 1] *= -1
    ras_affine[:3, 3] = LPS_AFFINE[:3, :3] @ [SMALL_SHAPE[0] - 1, SMALL_SHAPE[1] - 1, 0] + LPS_AFFINE[:3, 3]
    ct = np.arange(np.prod(SMALL_SHAPE), dtype=np.int16).reshape(SMALL_SHAPE)[::-1, ::-1]
    ct_path = save_nifti(tmp_path / "ct.nii.gz", np.ascontiguousarray(ct), ras_affine)
    case = case_from_labelmap(lab_path, table={"3": "pancreas"}, ct_path=ct_path)
    assert nib.aff2axcodes(nib.load(str(ct_path)).affine) == ("R", "A", "S")
    np.testing.assert_allclose(crop_centroid_ras(case, "pancreas"), ras_centroid_of_value(lab, LPS_AFFINE, 3),
                               atol=1e-9)


def test_nan_ct_is_an_error_naming_the_ct(tmp_path):
    lab_path = save_nifti(tmp_path / "labels.nii.gz", small_label_map(), LPS_AFFINE)
    ct = np.zeros(SMALL_SHAPE, np.float32)
    ct[1, 1, 1] = np.nan
    ct_path = save_nifti(tmp_path / "nan_ct.nii.gz", ct, LPS_AFFINE)
    with pytest.raises(InputError, match=r"nan_ct\.nii\.gz.*NaN"):
        case_from_labelmap(lab_path, table="amos", ct_path=ct_path)


def test_missing_files_are_errors_naming_them(tmp_path):
    with pytest.raises(InputError, match=r"nothere\.nii\.gz.*not found"):
        case_from_labelmap(tmp_path / "nothere.nii.gz", table="amos")
    with pytest.raises(InputError, match=r"nothere\.seg\.nrrd.*not found"):
        case_from_seg_nrrd(tmp_path / "nothere.seg.nrrd")
    with pytest.raises(InputError, match=r"labels\.json"):
        case_from_labelmap(tmp_path / "x.nii.gz", table=tmp_path / "labels.json")
    lab_path = save_nifti(tmp_path / "labels.nii.gz", small_label_map(), LPS_AFFINE)
    with pytest.raises(InputError, match=r"noct\.nii\.gz.*not found"):
        case_from_labelmap(lab_path, table="amos", ct_path=tmp_path / "noct.nii.gz")


def test_no_table_and_no_embedded_names_asks_for_labels(tmp_path):
    path = save_nifti(tmp_path / "bare.nii.gz", small_label_map(), LPS_AFFINE)
    with pytest.raises(InputError, match=r"bare\.nii\.gz.*--labels"):
        case_from_labelmap(path)


def test_no_known_structure_is_an_error(tmp_path):
    path = save_nifti(tmp_path / "bones.nii.gz", small_label_map(), LPS_AFFINE)
    with pytest.raises(InputError, match=r"bones\.nii\.gz.*no label maps to a known structure"):
        case_from_labelmap(path, table={1: "femur_left", 2: "vertebrae_L1", 3: "rib_left_1"})


# ====================================================================== .seg.nrrd

def _slicer_segmentation(tmp_path, ijk_to_lps, shape, masks: dict, name="seg.seg.nrrd") -> Path:
    slicerio = pytest.importorskip("slicerio")
    seg = slicerio.create_segmentation(shape, ijk_to_lps)
    for seg_name, mask in masks.items():
        slicerio.add_segment(seg, mask, {"name": seg_name})
    path = tmp_path / name
    slicerio.write_segmentation(str(path), seg)
    return path


# i -> posterior, j -> superior, k -> right (LPS -x): exercises axis permutation and flips.
NRRD_IJK_TO_LPS = np.array([
    [0.0, 0.0, -2.5, 30.0],
    [1.5, 0.0, 0.0, -10.0],
    [0.0, 2.0, 0.0, 5.0],
    [0.0, 0.0, 0.0, 1.0],
])
NRRD_SHAPE = (12, 14, 10)


def _overlapping_masks():
    liver = np.zeros(NRRD_SHAPE, bool)
    liver[2:10, 3:12, 1:8] = True
    lesion = np.zeros(NRRD_SHAPE, bool)
    lesion[4:7, 5:8, 2:5] = True          # inside the liver
    lesion[9:11, 10:13, 7:9] = True       # partly outside it
    return liver, lesion


def ras_centroid_ijk(mask: np.ndarray, ijk_to_ras: np.ndarray) -> np.ndarray:
    return (ijk_to_ras @ np.append(np.argwhere(mask).mean(axis=0), 1.0))[:3]


def test_seg_nrrd_overlapping_segments_in_layers(tmp_path):
    slicerio = pytest.importorskip("slicerio")
    liver, lesion = _overlapping_masks()
    path = _slicer_segmentation(tmp_path, NRRD_IJK_TO_LPS, NRRD_SHAPE, {"Liver": liver, "Liver lesion": lesion})
    assert slicerio.read_segmentation(str(path))["voxels"].ndim == 4   # two layers

    case = case_from_seg_nrrd(path)
    assert case.case_id == "seg"
    assert set(case.structures) == {"liver", "liver_lesion"}
    assert case.crop("liver").count == liver.sum()
    assert case.crop("liver_lesion").count == lesion.sum()
    both = full_canonical(case, "liver") & full_canonical(case, "liver_lesion")
    assert both.sum() == (liver & lesion).sum() > 0
    ijk_to_ras = LPS_TO_RAS @ NRRD_IJK_TO_LPS
    np.testing.assert_allclose(crop_centroid_ras(case, "liver"), ras_centroid_ijk(liver, ijk_to_ras), atol=1e-9)
    np.testing.assert_allclose(crop_centroid_ras(case, "liver_lesion"), ras_centroid_ijk(lesion, ijk_to_ras), atol=1e-9)
    # One voxel, exactly: the lesion's corner voxel (4, 5, 2) sits where the affine says.
    single = np.zeros(NRRD_SHAPE, bool)
    single[4, 5, 2] = True
    path1 = _slicer_segmentation(tmp_path, NRRD_IJK_TO_LPS, NRRD_SHAPE, {"spleen": single}, name="one.seg.nrrd")
    one = case_from_seg_nrrd(path1)
    np.testing.assert_allclose(crop_centroid_ras(one, "spleen"), (ijk_to_ras @ [4, 5, 2, 1])[:3], atol=1e-9)


def test_seg_nrrd_in_ras_space_written_with_pynrrd(tmp_path):
    nrrd = pytest.importorskip("nrrd")
    pytest.importorskip("slicerio")
    lab = np.zeros(NRRD_SHAPE, np.uint8)
    lab[1:4, 2:6, 3:7] = 1
    lab[8:11, 2:6, 3:7] = 2
    ijk_to_ras = np.array([
        [1.2, 0.0, 0.0, -50.0],
        [0.0, -0.8, 0.0, 20.0],
        [0.0, 0.0, 4.0, 100.0],
        [0.0, 0.0, 0.0, 1.0],
    ])
    header = {
        "type": "unsigned char",
        "dimension": 3,
        "space": "right-anterior-superior",
        "space directions": ijk_to_ras[:3, :3].T,
        "space origin": ijk_to_ras[:3, 3],
        "kinds": ["domain", "domain", "domain"],
        "encoding": "gzip",
        "Segment0_ID": "Segment_1",
        "Segment0_Name": "Spleen",
        "Segment0_LabelValue": "1",
        "Segment0_Layer": "0",
        "Segment1_ID": "Segment_2",
        "Segment1_Name": "Right Kidney",
        "Segment1_LabelValue": "2",
        "Segment1_Layer": "0",
        "Segment2_ID": "Segment_3",
        "Segment2_Name": "femur left",
        "Segment2_LabelValue": "3",
        "Segment2_Layer": "0",
        "Segmentation_MasterRepresentation": "Binary labelmap",
        "Segmentation_ContainedRepresentationNames": "Binary labelmap|",
        "Segmentation_ReferenceImageExtentOffset": "0 0 0",
    }
    path = tmp_path / "ras.seg.nrrd"
    nrrd.write(str(path), lab, header, index_order="F")
    case = case_from_seg_nrrd(path)
    assert set(case.structures) == {"spleen", "kidney_right"}
    assert "femur left" in case.ignored
    np.testing.assert_allclose(crop_centroid_ras(case, "spleen"), ras_centroid_ijk(lab == 1, ijk_to_ras), atol=1e-9)
    np.testing.assert_allclose(crop_centroid_ras(case, "kidney_right"), ras_centroid_ijk(lab == 2, ijk_to_ras),
                               atol=1e-9)


def test_seg_nrrd_on_a_box_of_the_ct_grid(tmp_path):
    pytest.importorskip("slicerio")
    liver, lesion = _overlapping_masks()
    full_shape = (20, 18, 16)
    ct_ijk_to_ras = LPS_TO_RAS @ NRRD_IJK_TO_LPS
    ct = np.arange(np.prod(full_shape), dtype=np.int16).reshape(full_shape)
    ct_path = save_nifti(tmp_path / "ct.nii.gz", ct, ct_ijk_to_ras)
    # Segmentation saved cropped to a box starting at CT voxel (3, 2, 4).
    start = np.array([3, 2, 4])
    box_to_lps = NRRD_IJK_TO_LPS.copy()
    box_to_lps[:3, 3] = (NRRD_IJK_TO_LPS @ np.append(start, 1.0))[:3]
    path = _slicer_segmentation(tmp_path, box_to_lps, NRRD_SHAPE, {"liver": liver, "liver_tumor": lesion})
    case = case_from_seg_nrrd(path, ct_path=ct_path, case_id="boxed")
    assert case.has_ct and case.case_id == "boxed"
    box_to_ras = LPS_TO_RAS @ box_to_lps
    np.testing.assert_allclose(crop_centroid_ras(case, "liver"), ras_centroid_ijk(liver, box_to_ras), atol=1e-6)
    # HU under the liver equal the CT values at the same voxels.
    crop = case.crop("liver")
    in_ct = np.zeros(full_shape, bool)
    in_ct[3:3 + NRRD_SHAPE[0], 2:2 + NRRD_SHAPE[1], 4:4 + NRRD_SHAPE[2]] = liver
    assert float(case.hu(crop.slices)[crop.mask].sum()) == float(ct[in_ct].sum())
    # Off the grid by half a voxel: an error naming the segmentation.
    off = box_to_lps.copy()
    off[0, 3] += 0.7
    bad = _slicer_segmentation(tmp_path, off, NRRD_SHAPE, {"liver": liver}, name="off.seg.nrrd")
    with pytest.raises(InputError, match=r"off\.seg\.nrrd.*not on the grid"):
        case_from_seg_nrrd(bad, ct_path=ct_path)


def test_seg_nrrd_without_slicerio_says_how_to_install(tmp_path, monkeypatch):
    path = tmp_path / "x.seg.nrrd"
    path.write_bytes(b"NRRD0004\n")
    monkeypatch.setitem(sys.modules, "slicerio", None)   # makes `import slicerio` fail
    with pytest.raises(InputError, match=r"x\.seg\.nrrd.*pip install radgpt-slicer\[nrrd\]"):
        case_from_seg_nrrd(path)


def test_seg_nrrd_garbage_is_an_error_naming_the_file(tmp_path):
    pytest.importorskip("slicerio")
    path = tmp_path / "garbage.seg.nrrd"
    path.write_bytes(b"this is not a nrrd file\n")
    with pytest.raises(InputError, match=r"garbage\.seg\.nrrd"):
        case_from_seg_nrrd(path)


# ============================================================= write_case_folder

def test_write_case_folder_round_trip_amos(tmp_path):
    src = real(*AMOS_LABEL)
    case = case_from_labelmap(src, table="amos")
    out = write_case_folder(case, tmp_path / "AMOS_0013")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["AMOS_0013"]   # no temp left over
    assert not (out / "ct.nii.gz").exists()
    back = load_case(out)
    assert_same_crops(case, back)

    # Written in the source file's own orientation and grid, voxel for voxel.
    original = nib.load(str(src))
    written = nib.load(str(out / "segmentations" / "kidney_right.nii.gz"))
    assert written.get_data_dtype() == np.uint8
    assert written.shape == original.shape
    np.testing.assert_array_equal(written.affine, original.affine)
    np.testing.assert_array_equal(np.asarray(written.dataobj), np.asarray(original.dataobj) == 2)


def test_write_case_folder_with_ct_round_trip(tmp_path):
    case = case_from_labelmap(real(*TS_SEG), ct_path=real(*TS_CT))
    out = write_case_folder(case, tmp_path / "ts_case")
    back = load_case(out)
    assert_same_crops(case, back)
    original = nib.load(str(real(*TS_CT)))
    written = nib.load(str(out / "ct.nii.gz"))
    np.testing.assert_array_equal(written.affine, original.affine)
    np.testing.assert_array_equal(np.asarray(written.dataobj), np.asarray(original.dataobj))
    whole = tuple(slice(None) for _ in range(3))
    np.testing.assert_array_equal(back.hu(whole), case.hu(whole))


def test_write_case_folder_scaled_ct_keeps_hu(tmp_path):
    lab_path = save_nifti(tmp_path / "labels.nii.gz", small_label_map(), LPS_AFFINE)
    raw = (np.arange(np.prod(SMALL_SHAPE)) % 3000).astype(np.uint16).reshape(SMALL_SHAPE)
    img = nib.Nifti1Image(raw, LPS_AFFINE)
    img.header.set_slope_inter(1.0, -1024.0)
    nib.save(img, str(tmp_path / "ct.nii.gz"))
    case = case_from_labelmap(lab_path, table={"3": "pancreas"}, ct_path=tmp_path / "ct.nii.gz")
    assert case.ct_inter == -1024.0
    out = write_case_folder(case, tmp_path / "out" / "scaled")
    back = load_case(out)
    whole = tuple(slice(None) for _ in range(3))
    np.testing.assert_array_equal(back.hu(whole), case.hu(whole))
    assert_same_crops(case, back)


def test_write_case_folder_refuses_a_non_empty_folder(tmp_path):
    lab_path = save_nifti(tmp_path / "labels.nii.gz", small_label_map(), LPS_AFFINE)
    case = case_from_labelmap(lab_path, table={"3": "pancreas"})
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "keep.txt").write_text("x")
    with pytest.raises(InputError, match="busy.*not empty"):
        write_case_folder(case, busy)
    assert sorted(p.name for p in busy.iterdir()) == ["keep.txt"]
    empty = tmp_path / "empty"
    empty.mkdir()
    write_case_folder(case, empty)
    assert (empty / "segmentations" / "pancreas.nii.gz").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["busy", "empty", "labels.nii.gz"]


def test_label_table_object_is_accepted(tmp_path):
    lab_path = save_nifti(tmp_path / "labels.nii.gz", small_label_map(), LPS_AFFINE)
    table = LabelTable({3: "pancreas"}, {"liver": [1, 2]}, source="test")
    case = case_from_labelmap(lab_path, table=table)
    assert set(case.structures) == {"pancreas", "liver"}
