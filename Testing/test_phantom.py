"""The synthetic phantom: its masks and truth agree with its own analytic design."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest
from nibabel.affines import apply_affine
from nibabel.orientations import aff2axcodes
from scipy import ndimage

from RadGPTLogic import phantom as ph
from RadGPTLogic.phantom import LesionSpec, build_phantom, reorient, reorient_array, write_case


@pytest.fixture(scope="module")
def small():
    return build_phantom(size="small", seed=0)


def analytic_ellipsoid(p, lesion: LesionSpec) -> np.ndarray:
    """Voxel centres of ``p``'s canonical grid inside the lesion (written independently of phantom.py)."""
    aff = p.affine
    x, y, z = (aff[a, 3] + np.arange(n) * aff[a, a] for a, n in enumerate(p.shape))
    dx = x[:, None, None] - lesion.center[0]
    dy = y[None, :, None] - lesion.center[1]
    dz = z[None, None, :] - lesion.center[2]
    t = np.deg2rad(lesion.angle_deg)
    u = dx * np.cos(t) + dy * np.sin(t)
    v = -dx * np.sin(t) + dy * np.cos(t)
    a, b, c = lesion.semi_axes
    return (u / a) ** 2 + (v / b) ** 2 + (dz / c) ** 2 <= 1.0


def centroid_ras(mask: np.ndarray, affine: np.ndarray) -> np.ndarray:
    return apply_affine(affine, np.argwhere(mask).mean(axis=0))


def test_canonical_frame_and_sizes(small):
    assert small.ct.dtype == np.int16
    assert small.shape == (200, 160, 100)
    assert small.spacing == pytest.approx((2.0, 2.0, 2.5))
    assert aff2axcodes(small.affine) == ("R", "A", "S")
    for name, mask in small.masks.items():
        assert mask.dtype == bool and mask.shape == small.shape, name
        assert mask.any(), name
    json.dumps(small.truth)  # plain JSON types only


def test_couinaud_segments_partition_the_liver(small):
    stack = np.zeros(small.shape, np.int16)
    for k in range(1, 9):
        stack += small.masks[f"liver_segment_{k}"]
    assert stack.max() == 1  # no overlap
    assert np.array_equal(stack.astype(bool), small.masks["liver"])  # union == liver
    # Each segment is a plausible share of the liver and one piece.
    liver_ml = small.truth["organs"]["liver"]["voxel_volume_ml"]
    for k in range(1, 9):
        share = small.truth["liver_segments"][f"liver_segment_{k}"]["voxel_volume_ml"] / liver_ml
        assert 0.01 < share < 0.35, (k, share)
        assert ndimage.label(small.masks[f"liver_segment_{k}"])[1] == 1, k


def test_organs_and_vessels_do_not_overlap(small):
    names = list(ph.STRUCTURES)
    owner = np.zeros(small.shape, np.int16)
    for name in names:
        owner += small.masks[name]
    # Only lesion voxels (added to their organ) may be counted twice.
    lesion_any = np.zeros(small.shape, bool)
    for lesion in small.lesions:
        lesion_any |= small.masks[lesion.mask]
    assert owner[~lesion_any].max() == 1
    for name in names:
        assert ndimage.label(small.masks[name])[1] == 1, name


def test_every_lesion_lies_in_its_organ(small):
    for lesion, truth in zip(small.lesions, small.truth["lesions"]):
        own = analytic_ellipsoid(small, lesion)
        assert own.any()
        assert np.all(small.masks[lesion.mask][own]), lesion.mask
        assert np.all(small.masks[truth["organ_mask"]][own]), lesion.mask
        assert truth["voxel_volume_ml"] == pytest.approx(own.sum() * np.prod(small.spacing) / 1000)
    # The lesion masks hold nothing else.
    for name in {l.mask for l in small.lesions}:
        union = np.zeros(small.shape, bool)
        for lesion in small.lesions:
            if lesion.mask == name:
                union |= analytic_ellipsoid(small, lesion)
        assert np.array_equal(small.masks[name], union), name


def test_lesion_voxel_volume_matches_analytic_volume(small):
    assert len(small.truth["lesions"]) == 5
    for t in small.truth["lesions"]:
        assert t["longest_diameter_mm"] >= 10
        assert t["voxel_volume_ml"] == pytest.approx(t["volume_ml"], rel=0.06), t["mask"]
        a, b, c = t["semi_axes_mm"]
        assert t["volume_ml"] == pytest.approx(4 / 3 * np.pi * a * b * c / 1000)
        assert t["longest_diameter_mm"] == 2 * max(a, b)
        assert t["perpendicular_diameter_mm"] == 2 * min(a, b)


def test_default_lesion_truth(small):
    by_mask = {}
    for t in small.truth["lesions"]:
        by_mask.setdefault(t["mask"], []).append(t)
    big, little = by_mask["liver_lesion"]
    assert set(big["couinaud"]) == {"S7", "S8"}
    assert little["couinaud"] == ["S4"]
    assert big["organ"] == "liver" and big["kind"] == "lesion" and big["side"] is None
    (pdac,) = by_mask["pancreatic_pdac"]
    assert (pdac["organ"], pdac["kind"], pdac["pancreas_part"]) == ("pancreas", "pdac", "head")
    (kl,) = by_mask["kidney_lesion"]
    (kc,) = by_mask["kidney_cyst"]
    assert (kl["side"], kl["organ_mask"], kl["kidney_pole"]) == ("left", "kidney_left", "interpolar")
    assert (kc["side"], kc["organ_mask"], kc["kind"], kc["kidney_pole"]) == ("right", "kidney_right", "cyst", "upper")
    # Couinaud shares are measured on the segment masks.
    own = analytic_ellipsoid(small, small.lesions[0])
    shares = {k: np.count_nonzero(small.masks[f"liver_segment_{k}"] & own) for k in range(1, 9)}
    assert big["couinaud"][0] == f"S{max(shares, key=shares.get)}"


def test_left_right_placement_follows_ras(small):
    # RAS+ (nibabel): world x grows towards the patient's Right.
    x = {n: centroid_ras(small.masks[n], small.affine)[0] for n in ph.ORGANS + ph.VESSELS}
    for right in ("liver", "postcava", "gall_bladder", "kidney_right", "duodenum"):
        assert x[right] > 10, right
    for left in ("spleen", "stomach", "kidney_left", "splenic_artery", "splenic_vein"):
        assert x[left] < -10, left
    assert -25 < x["aorta"] < 0  # slightly left of the midline
    assert x["superior_mesenteric_vein"] > x["superior_mesenteric_artery"]
    assert x["common_hepatic_artery"] > x["celiac_trunk"] > x["splenic_artery"]
    # In canonical voxel indices the liver sits at larger i than the spleen.
    i = {n: np.argwhere(small.masks[n])[:, 0].mean() for n in ("liver", "spleen")}
    assert i["liver"] > i["spleen"]
    # Pancreas: head at the duodenum (right), tail towards the spleen (left).
    pdac_x = small.truth["lesions"][2]["center_ras_mm"][0]
    assert pdac_x > 0


def test_vessel_layout_is_anatomical(small):
    c = {n: centroid_ras(small.masks[n], small.affine) for n in ph.VESSELS}
    spine_y = ph.VERTEBRA[0][1]
    assert c["aorta"][1] > spine_y + ph.VERTEBRA[1]  # in front of the vertebral body
    assert c["superior_mesenteric_artery"][1] > c["aorta"][1]  # leaves anteriorly
    assert c["celiac_trunk"][2] > c["superior_mesenteric_artery"][2]
    pv = np.argwhere(small.masks["portal_vein"])
    top, bottom = pv[pv[:, 2].argmax()], pv[pv[:, 2].argmin()]
    assert top[0] > bottom[0]  # runs up and to the right into the hilum
    assert np.any(ndimage.binary_dilation(small.masks["portal_vein"]) & small.masks["liver"])


def test_same_side_as_real_annotations():
    # Independent check of the convention: an expert AMOS label map (LAS on disk).
    from conftest import real_path

    img = nib.load(real_path("amos", "amos_0013_label.nii.gz"))
    lab = np.asarray(img.dataobj)
    liver_x = apply_affine(img.affine, np.argwhere(lab == 6).mean(0))[0]
    spleen_x = apply_affine(img.affine, np.argwhere(lab == 1).mean(0))[0]
    assert liver_x > 0 > spleen_x
    p = build_phantom(size="small", lesions=[], noise_sd=0)
    assert centroid_ras(p.masks["liver"], p.affine)[0] > 0 > centroid_ras(p.masks["spleen"], p.affine)[0]


@pytest.mark.parametrize("axcodes,axis_order", [("LPS", None), ("RAS", (2, 0, 1)), ("PSL", None), ("LAI", (1, 2, 0))])
def test_reorient_round_trip_is_exact(small, axcodes, axis_order):
    ct, affine, masks = reorient(small, axcodes, axis_order, names=["liver", "kidney_cyst"])
    expected = tuple(axcodes[a] for a in axis_order) if axis_order else tuple(axcodes)
    assert aff2axcodes(affine) == expected
    back, back_affine = reorient_array(ct, affine, "RAS")
    assert np.array_equal(back, small.ct)
    assert np.allclose(back_affine, small.affine)
    for name, m in masks.items():
        assert np.array_equal(reorient_array(m, affine, "RAS")[0], small.masks[name])
    # Same physical voxel: the lesion centre holds the same value in both frames.
    ijk0 = np.rint(apply_affine(np.linalg.inv(small.affine), small.truth["lesions"][4]["center_ras_mm"]))
    ijk = np.rint(apply_affine(np.linalg.inv(affine), apply_affine(small.affine, ijk0))).astype(int)
    ijk0 = ijk0.astype(int)
    assert ct[tuple(ijk)] == small.ct[tuple(ijk0)]
    assert masks["kidney_cyst"][tuple(ijk)]


def test_reorient_rejects_bad_codes(small):
    with pytest.raises(ValueError):
        reorient(small, "LRS")
    with pytest.raises(ValueError):
        reorient(small, "LPS", axis_order=(0, 0, 1))


def test_write_case_puts_lesions_at_their_ras_positions(small, tmp_path):
    case = write_case(small, tmp_path, "PHANTOM_0007", axcodes="LPS", axis_order=(2, 0, 1),
                      extra_masks={"veins": small.masks["superior_mesenteric_vein"] | small.masks["portal_vein"]})
    assert case == tmp_path / "PHANTOM_0007"
    ct_img = nib.load(case / "ct.nii.gz")
    assert ct_img.get_data_dtype() == np.int16
    assert aff2axcodes(ct_img.affine) == ("S", "L", "P")
    seg_dir = case / "segmentations"
    names = {p.name[: -len(".nii.gz")] for p in seg_dir.glob("*.nii.gz")}
    assert names == set(small.masks) | {"veins"}
    truth = json.loads((case / "truth.json").read_text(encoding="utf-8"))
    for lesion in truth["lesions"]:
        img = nib.load(seg_dir / f"{lesion['mask']}.nii.gz")
        assert img.get_data_dtype() == np.uint8
        assert np.allclose(img.affine, ct_img.affine)
        pieces, n = ndimage.label(np.asarray(img.dataobj))
        centres = [centroid_ras(pieces == k, img.affine) for k in range(1, n + 1)]
        nearest = min(np.linalg.norm(c - lesion["center_ras_mm"]) for c in centres)
        assert nearest < 0.6, lesion["mask"]
        # slice_index counts along the file's own slice axis.
        ijk = apply_affine(np.linalg.inv(img.affine), lesion["center_ras_mm"])
        assert lesion["slice_index"] == round(ijk[truth["file"]["slice_axis"]])
    ct = np.asarray(ct_img.dataobj)
    assert np.array_equal(reorient_array(ct, ct_img.affine, "RAS")[0], small.ct)


def test_write_case_masks_only(small, tmp_path):
    case = write_case(small, tmp_path, with_ct=False, names=["liver", "liver_lesion"])
    assert not (case / "ct.nii.gz").exists()
    assert sorted(p.name for p in (case / "segmentations").iterdir()) == ["liver.nii.gz", "liver_lesion.nii.gz"]
    img = nib.load(case / "segmentations" / "liver.nii.gz")
    assert np.array_equal(np.asarray(img.dataobj).astype(bool), small.masks["liver"])


def test_anisotropic_spacing_keeps_the_world_geometry(small):
    p = build_phantom(spacing=(0.7, 0.7, 5.0), noise_sd=0)
    assert p.spacing == pytest.approx((0.7, 0.7, 5.0))
    assert all(o["complete"] for o in p.truth["organs"].values())
    for name in ("liver", "spleen", "kidney_left", "pancreas"):
        a = p.truth["organs"][name]["voxel_volume_ml"]
        b = small.truth["organs"][name]["voxel_volume_ml"]
        assert a == pytest.approx(b, rel=0.06), name
    for t, lesion in zip(p.truth["lesions"], p.lesions):
        c = centroid_ras(analytic_ellipsoid(p, lesion), p.affine)
        assert np.allclose(c[:2], lesion.center[:2], atol=0.5)
        assert abs(c[2] - lesion.center[2]) <= 2.5
        assert t["voxel_volume_ml"] == pytest.approx(t["volume_ml"], rel=0.25)
    stack = sum(p.masks[f"liver_segment_{k}"].astype(np.int8) for k in range(1, 9))
    assert np.array_equal(stack.astype(bool), p.masks["liver"]) and stack.max() == 1


def test_shape_override_and_full_geometry():
    p = build_phantom(shape=(100, 80, 50), lesions=[], noise_sd=0)
    assert p.shape == (100, 80, 50)
    assert p.spacing == pytest.approx((4.0, 4.0, 5.0))
    grid = ph._make_grid("full", None, None, None)
    assert grid.shape == (512, 512, 300) and grid.spacing == (0.75, 0.75, 1.0)


def test_z_range_cuts_organs_at_the_scan_edge(small):
    p = build_phantom(z_range_mm=(-60.0, 60.0))
    z = p.affine[2, 3] + np.arange(p.shape[2]) * p.affine[2, 2]
    assert z.min() >= -60 and z.max() <= 60
    assert p.truth["organs"]["liver"]["complete"] is False
    assert p.truth["organs"]["kidney_right"]["complete"] is False
    assert small.truth["organs"]["liver"]["complete"] is True
    # An exact crop of the same slice lattice.
    k0 = int(round((p.affine[2, 3] - small.affine[2, 3]) / small.affine[2, 2]))
    sl = slice(k0, k0 + p.shape[2])
    assert np.allclose(p.affine[:2], small.affine[:2])
    for name in ("liver", "liver_segment_8", "pancreatic_pdac", "aorta"):
        assert np.array_equal(p.masks[name], small.masks[name][:, :, sl]), name
    # Lesions and organs cut off or left out of the scan.
    q = build_phantom(z_range_mm=(10.0, 60.0))
    big, s4, pdac = q.truth["lesions"][:3]
    assert big["complete"] is False and 0 < big["voxel_volume_ml"] < big["volume_ml"]
    assert s4["complete"] is True
    assert pdac["voxel_volume_ml"] == 0 and pdac["complete"] is False
    assert q.truth["organs"]["kidney_left"] == {**q.truth["organs"]["kidney_left"], "present": False, "complete": False}


def test_ct_values_noise_and_phase():
    quiet = build_phantom(noise_sd=0)
    liver_only = quiet.masks["liver"] & ~quiet.masks["liver_lesion"]
    assert np.all(quiet.ct[liver_only] == 60)
    assert np.all(quiet.ct[quiet.masks["aorta"]] == 45)
    assert np.all(quiet.ct[quiet.masks["kidney_cyst"]] == 5)
    assert quiet.ct.min() == -1000
    a, b, c = (build_phantom(seed=s) for s in (1, 1, 2))
    assert np.array_equal(a.ct, b.ct) and not np.array_equal(a.ct, c.ct)
    noise = a.ct[liver_only].astype(float) - 60
    assert abs(noise.mean()) < 0.5 and 7 < noise.std() < 9
    venous = build_phantom(phase="venous", noise_sd=0)
    assert venous.truth["phase"] == "venous"
    assert np.all(venous.ct[venous.masks["aorta"]] == 160)
    assert venous.truth["organs"]["kidney_left"]["hu"] == 180
    assert venous.truth["lesions"][0]["hu"] < venous.truth["organs"]["liver"]["hu"]
    with pytest.raises(ValueError):
        build_phantom(phase="delayed")


def test_custom_lesions():
    lesions = [
        LesionSpec("pancreatic_pnet", (-72.0, 6.0, 18.0), (7.0, 6.0, 6.0), hu=150),
        LesionSpec("liver_cyst", (100.0, -40.0, 0.0), (9.0, 9.0, 9.0)),
    ]
    p = build_phantom(lesions=lesions, noise_sd=0)
    pnet, cyst = p.truth["lesions"]
    assert (pnet["pancreas_part"], pnet["kind"], pnet["hu"]) == ("tail", "pnet", 150.0)
    assert cyst["kind"] == "cyst" and cyst["couinaud"] == ["S6"]
    assert set(p.masks) >= {"pancreatic_pnet", "liver_cyst"} and "liver_lesion" not in p.masks
    assert np.all(p.ct[p.masks["liver_cyst"]] == 5)
    assert build_phantom(lesions=[]).truth["lesions"] == []
    with pytest.raises(ValueError):
        LesionSpec("liver_blob", (0, 0, 0), (5, 5, 5))
