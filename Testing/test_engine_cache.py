"""The per-structure cache: an edit recomputes only what depends on the edited mask."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import simple_case_arrays

from RadGPTLogic.case import Case, Crop
from RadGPTLogic.engine import Engine


def _engine():
    ct, affine, masks = simple_case_arrays()
    return Engine(Case.from_arrays("C1", affine, masks, ct=ct), phase="non-contrast")


def test_recompute_without_edit_is_all_cache_hits():
    eng = _engine()
    first = eng.compute().to_dict()
    misses = eng.stats["misses"]
    second = eng.compute().to_dict()
    assert eng.stats["misses"] == misses
    assert first == second


def test_editing_spleen_recomputes_only_the_spleen():
    eng = _engine()
    eng.compute()
    before = eng.stats["misses"]
    spleen = eng.case.crop("spleen")
    smaller = spleen.mask.copy()
    smaller[: smaller.shape[0] // 2] = False
    eng.update_structure("spleen", Crop(smaller, spleen.offset))
    f = eng.compute()
    assert eng.stats["misses"] - before == 2  # the spleen organ step and its centre (left/right check)
    assert f.organs["spleen"]["volume_ml"] == pytest.approx(
        np.count_nonzero(smaller) * eng.case.voxel_volume_mm3 / 1000
    )


def test_editing_a_lesion_recomputes_the_lesion_and_its_organ():
    eng = _engine()
    eng.compute()
    before = eng.stats["misses"]
    les = eng.case.crop("liver_lesion")
    grown = np.pad(les.mask, 1)
    eng.update_structure("liver_lesion", Crop(grown, tuple(o - 1 for o in les.offset)))
    f = eng.compute()
    # liver_lesion components, the liver united with its lesions (attach), liver HU (lesion excluded)
    assert eng.stats["misses"] - before == 3
    assert f.lesions[0]["voxel_count"] == les.count  # padding added no voxels
    # Deleting the lesion mask removes the lesion.
    eng.remove_structure("liver_lesion")
    assert [l["id"] for l in eng.compute().lesions] == ["kidney_cyst_1"]


def test_full_array_update_and_alias_names():
    eng = _engine()
    eng.compute()
    full = np.zeros(eng.case.shape, bool)
    full[5:10, 5:10, 5:10] = True
    eng.update_structure("Right Kidney", full)
    f = eng.compute()
    assert f.organs["kidney_right"]["voxel_count"] == 125


def test_phase_change_keeps_the_cache_and_changes_verdicts():
    eng = _engine()
    assert eng.compute().organs["liver"]["steatosis"] is False
    misses = eng.stats["misses"]
    eng.set_phase("arterial")
    f = eng.compute()
    assert eng.stats["misses"] == misses
    assert f.phase == "arterial" and f.organs["liver"]["steatosis"] is None
    with pytest.raises(ValueError):
        eng.set_phase("portal")


def test_erased_organ_is_not_a_normal_organ():
    eng = _engine()
    eng.update_structure("spleen", Crop.empty())
    f = eng.compute()
    spleen = f.organs["spleen"]
    assert spleen["volume_ml"] is None and spleen["enlarged"] is None and spleen["empty"] is True
    assert {"what": "spleen", "why": "organ mask is empty"} in f.not_assessable
    # Without a spleen HU the liver falls back to the absolute HU rule only.
    assert f.organs["liver"]["liver_minus_spleen_hu"] is None


def test_provenance_marks_edited_structures():
    eng = _engine()
    eng.update_structure("liver_lesion", eng.case.crop("liver_lesion"))
    assert eng.compute().provenance["inputs"]["liver_lesion"] == [{"name": "liver_lesion", "edited": True}]
    eng.remove_structure("liver_lesion")
    assert "liver_lesion" not in eng.compute().provenance["inputs"]
