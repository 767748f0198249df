"""Structured reports from the jinja2 templates: every number shown is a findings.json number
rounded as displayed, every lesion appears, wording follows the findings, templates can be overridden.

All cases are real engine output on phantom cases built here (staged PDAC, masks only, no lesion,
liver cut by the scan edge, non-contrast and venous phases).
"""

from __future__ import annotations

import copy
import importlib.resources
import re

import pytest

from RadGPTLogic.case import Case
from RadGPTLogic.engine import compute_findings
from RadGPTLogic.phantom import build_phantom, default_lesions, staging_lesions
from RadGPTLogic.report.structured import render_html, render_markdown, render_text

ORGAN_WORD = {"liver": "Liver", "pancreas": "Pancreatic", "kidney": "Kidney"}
KIND_WORD = {"lesion": "lesion", "tumor": "tumor", "cyst": "cyst", "pdac": "PDAC", "pnet": "PNET"}
ORGAN_TITLE = {"liver": "Liver", "spleen": "Spleen", "pancreas": "Pancreas", "kidney_right": "Right kidney",
               "kidney_left": "Left kidney", "gall_bladder": "Gallbladder", "stomach": "Stomach",
               "duodenum": "Duodenum"}
VESSEL_KEYS = {"portal vein": "PV", "superior mesenteric vein": "SMV", "superior mesenteric artery": "SMA",
               "celiac axis": "CA", "common hepatic artery": "CHA", "aorta": "aorta", "inferior vena cava": "IVC"}


def _findings(phantom, phase, with_ct=True, case_id="T"):
    case = Case.from_arrays(case_id, phantom.affine, phantom.masks, phantom.ct if with_ct else None)
    return compute_findings(case, phase).to_dict()


@pytest.fixture(scope="module")
def staged_venous():
    return _findings(build_phantom(size="small", lesions=staging_lesions(), phase="venous"), "venous", case_id="S")


@pytest.fixture(scope="module")
def noncontrast():
    return _findings(build_phantom(size="small"), "non-contrast", case_id="N")


@pytest.fixture(scope="module")
def masks_only():
    return _findings(build_phantom(size="small"), "non-contrast", with_ct=False, case_id="M")


@pytest.fixture(scope="module")
def no_lesions():
    return _findings(build_phantom(size="small", lesions=[]), "non-contrast", case_id="E")


@pytest.fixture(scope="module")
def cut_liver():
    return _findings(build_phantom(size="small", z_range_mm=(-60, 60)), "arterial", case_id="C")


@pytest.fixture(scope="module")
def all_cases(staged_venous, noncontrast, masks_only, no_lesions, cut_liver):
    return {"staged_venous": staged_venous, "noncontrast": noncontrast, "masks_only": masks_only,
            "no_lesions": no_lesions, "cut_liver": cut_liver}


# ------------------------------------------------------------------ helpers
def r1(x):
    return f"{round(x, 1):.1f}"


def r0(x):
    text = f"{round(x):.0f}"
    return "0" if text == "-0" else text


def title(lesion):
    return f"{ORGAN_WORD[lesion['organ']]} {KIND_WORD[lesion['kind']]} {lesion['id'].rsplit('_', 1)[-1]}"


def size_pair(lesion):
    return (r1(lesion["longest_diameter_mm"] / 10), r1(lesion["perpendicular_diameter_mm"] / 10))


def lesion_lines(text):
    """title -> the findings line of each lesion."""
    out = {}
    for line in text.splitlines():
        m = re.match(r"^\s+((?:Liver|Pancreatic|Kidney) \S+ \d+) \(", line)
        if m:
            out[m.group(1)] = line.strip()
    return out


def allowed_numbers(f):
    """Displayed forms of every number the report may show, per unit."""
    organs, lesions = f["organs"], f["lesions"]
    rules = f["provenance"]["rules"]
    hu = set()
    for o in organs.values():
        for key in ("mean_hu", "liver_minus_spleen_hu"):
            if o.get(key) is not None:
                hu.add(r0(o[key]))
    for l in lesions:
        if l["mean_hu"] is not None:
            hu.add(r0(l["mean_hu"]))
    hu |= {f"{rules[k]:g}" for k in ("liver_steatosis_hu", "liver_minus_spleen_hu", "venous_liver_low_hu")}
    sd = {r0(o["sd_hu"]) for o in organs.values() if o.get("sd_hu") is not None}
    ml = {r1(o["volume_ml"]) for o in organs.values() if o.get("volume_ml") is not None}
    ml |= {r1(l["volume_ml"]) for l in lesions}
    deg = {"180"}  # the abutment/encasement boundary named in the wording
    for l in lesions:
        for d in (l.get("vessel_contact_deg") or {}).values():
            if d is not None:
                deg.add(r0(d))
    pct = set()
    for l in lesions:
        pct |= {r0(100 * s) for s in (l.get("couinaud_shares") or {}).values()}
        if l.get("exophytic_fraction") is not None:
            pct.add(r0(100 * l["exophytic_fraction"]))
    images = {str(l["slice_index"]) for l in lesions}
    return {"HU": hu, "SD": sd, "mL": ml, "degrees": deg, "%": pct, "image": images}


def check_all_numbers(text, f):
    """Every number with a unit in ``text`` is a findings number rounded as displayed."""
    allowed = allowed_numbers(f)
    pairs = re.findall(r"(\d+\.\d) x (\d+\.\d) cm", text)
    sizes = {size_pair(l) for l in f["lesions"]}
    assert set(pairs) <= sizes, (set(pairs) - sizes)
    assert {p for p in sizes} <= set(pairs), "a lesion's size is missing"
    for value in re.findall(r"(-?\d+(?:\.\d+)?) HU", text):
        assert value in allowed["HU"], value
    for value in re.findall(r"\(SD (\d+)\)", text):
        assert value in allowed["SD"], value
    for value in re.findall(r"(\d+\.\d) mL", text):
        assert value in allowed["mL"], value
    for value in re.findall(r"(\d+(?:\.\d)?) degrees", text):
        assert value in allowed["degrees"], value
    for value in re.findall(r"(\d+)% exophytic|S\d[ab]? (\d+)%", text):
        v = value[0] or value[1]
        assert v in allowed["%"], v
    for value in re.findall(r"image (\d+)", text):
        assert value in allowed["image"], value


# ------------------------------------------------------------------- tests
@pytest.mark.parametrize("name", ["staged_venous", "noncontrast", "masks_only", "no_lesions", "cut_liver"])
def test_every_number_matches_findings(all_cases, name):
    f = all_cases[name]
    text = render_text(f)
    assert "FINDINGS:" in text and "IMPRESSION:" in text
    check_all_numbers(text, f)
    check_all_numbers(render_markdown(f), f)


@pytest.mark.parametrize("name", ["staged_venous", "noncontrast", "masks_only", "cut_liver"])
def test_every_lesion_line_matches_its_findings(all_cases, name):
    f = all_cases[name]
    lines = lesion_lines(render_text(f))
    assert set(lines) == {title(l) for l in f["lesions"]}
    for lesion in f["lesions"]:
        line = lines[title(lesion)]
        m = re.search(r"\): (\d+\.\d) x (\d+\.\d) cm \(image (\d+)\); volume (\d+\.\d) mL; (.*)\.$", line)
        assert m, line
        assert (m.group(1), m.group(2)) == size_pair(lesion)
        assert int(m.group(3)) == lesion["slice_index"]
        assert m.group(4) == r1(lesion["volume_ml"])
        density = m.group(5)
        if lesion["mean_hu"] is None:
            assert density.startswith("attenuation not assessable (no CT)")
        else:
            ref = f["organs"][lesion["attenuation_reference"]]
            assert f"({r0(lesion['mean_hu'])} HU vs {r0(ref['mean_hu'])} HU)" in density
            assert density.startswith(lesion["attenuation"])
        loc = lesion["location"]
        if loc.get("couinaud"):
            shares = lesion["couinaud_shares"]
            expected = ", ".join(f"{s} {r0(100 * shares[s])}%" for s in loc["couinaud"])
            assert f"(segments {expected})" in line or f"(segment {loc['couinaud'][0]}" in line
        if loc.get("pancreas_part"):
            assert f"(pancreatic {loc['pancreas_part']}" in line
        if lesion["organ"] == "kidney":
            assert f"({lesion['side']} kidney" in line
            if loc.get("kidney_pole"):
                assert {"upper": "upper pole", "interpolar": "interpolar region", "lower": "lower pole"}[
                    loc["kidney_pole"]] in line
            assert f"{r0(100 * lesion['exophytic_fraction'])}% exophytic" in line
        if lesion.get("location_note"):
            assert lesion["location_note"] in line


@pytest.mark.parametrize("name", ["staged_venous", "noncontrast", "masks_only", "no_lesions", "cut_liver"])
def test_organ_lines(all_cases, name):
    f = all_cases[name]
    text = render_text(f)
    for organ, entry in f["organs"].items():
        line = next(l for l in text.splitlines() if l.startswith(ORGAN_TITLE[organ] + ":"))
        if entry["volume_ml"] is None:
            assert "volume not assessable (organ cut by the scan edge)" in line
        else:
            assert f"volume {r1(entry['volume_ml'])} mL" in line
            size = {"no": "normal size", "enlarged": "enlarged", "massively_enlarged": "massively enlarged"}
            if entry.get("small") is True:
                assert line.startswith(f"{ORGAN_TITLE[organ]}: small (volume")
            elif entry["enlarged"] is not None:
                assert line.startswith(f"{ORGAN_TITLE[organ]}: {size[entry['enlarged']]} (volume")
        if entry.get("hu_meaningful") is False:  # hollow organs: the mean describes the lumen
            assert "Attenuation not reported (hollow organ" in line and " HU" not in line
        elif entry["mean_hu"] is None:
            assert "Attenuation not assessable (no CT)" in line
        else:
            assert f"Mean attenuation {r0(entry['mean_hu'])} HU (SD {r0(entry['sd_hu'])})" in line


def test_staging_lines_follow_the_degrees(staged_venous):
    f = staged_venous
    text = render_text(f)
    pdac = next(l for l in f["lesions"] if l["kind"] == "pdac")
    contact = pdac["vessel_contact_deg"]
    assert any(d and d > 180 for d in contact.values()) and any(d and d <= 180 for d in contact.values())
    seen = set()
    for m in re.finditer(r"- ([A-Za-z ]+?)(?: \((\w+)\))?: solid tumor contact (\d+(?:\.\d)?) degrees "
                         r"\((abutment|encasement), (<=|>) 180 degrees\)", text):
        name, key, deg, word, sign = m.groups()
        key = key or VESSEL_KEYS[name.lower()]
        assert deg == r0(contact[key])
        assert word == ("encasement" if contact[key] > 180 else "abutment")
        assert sign == (">" if contact[key] > 180 else "<=")
        seen.add(key)
    assert seen == {k for k, d in contact.items() if d}
    free = re.search(r"No tumor contact: (.*)\.", text).group(1).split(", ")
    assert len(free) == sum(1 for d in contact.values() if d == 0)
    assert (f"T stage (AJCC 8th): {pdac['t_stage']}; basis: {pdac['t_stage_basis']}; "
            f"rule: {pdac['t_stage_rule']}") in text
    words = {"resectable": "resectable", "borderline": "borderline resectable",
             "locally_advanced": "locally advanced (unresectable)"}
    detail = pdac["resectability_detail"]
    assert f"Resectability (NCCN): {words[pdac['resectability']]}; drivers: {'; '.join(detail['drivers'])}." in text
    for assumption in detail["assumptions"]:
        assert assumption in text
    for organ, touched in pdac["organ_contact"].items():
        if touched is False:
            assert organ.replace("_", " ").split(" ")[0] in text.split("Adjacent organs:")[1].splitlines()[0]


def test_abutment_and_encasement_at_the_boundary(staged_venous):
    f = copy.deepcopy(staged_venous)
    pdac = next(l for l in f["lesions"] if l["kind"] == "pdac")
    pdac["vessel_contact_deg"].update({"PV": 180.0, "SMV": 180.3, "CHA": None})
    text = render_text(f)
    assert "Portal vein (PV): solid tumor contact 180 degrees (abutment, <= 180 degrees)." in text
    assert "Superior mesenteric vein (SMV): solid tumor contact 180.3 degrees (encasement, > 180 degrees)." in text
    assert "Vessel contact not assessable (no vessel mask): common hepatic artery." in text
    assert "encasement of the SMV (180.3 degrees) and abutment of the portal vein (180 degrees)" in text


def test_impression_order(staged_venous, noncontrast, no_lesions):
    imp = render_text(staged_venous).split("IMPRESSION:")[1].strip().splitlines()
    pdac = next(l for l in staged_venous["lesions"] if l["kind"] == "pdac")
    assert imp[0].startswith("1. Pancreatic PDAC (pancreatic head), " + " x ".join(size_pair(pdac)) + " cm")
    assert f"Clinical stage: {pdac['t_stage']}NxMx." in imp[0] and "NCCN: borderline resectable." in imp[0]
    assert "encasement of the portal vein" in imp[0]
    liver = [l for l in staged_venous["lesions"] if l["organ"] == "liver"]
    largest = max(liver, key=lambda l: l["longest_diameter_mm"])
    assert imp[1] == (f"2. Multiple ({len(liver)}) hypoenhancing liver lesions; the largest (segments "
                      f"{'/'.join(largest['location']['couinaud'])}) measures {' x '.join(size_pair(largest))} cm.")
    # then the other lesion groups by size, then steatosis
    assert "kidney" in imp[2] and "kidney" in imp[3]
    if staged_venous["organs"]["liver"].get("possible_steatosis"):
        assert imp[-1].endswith("possible hepatic steatosis.")
    else:
        assert len(imp) == 4 and "steatosis" not in " ".join(imp)
    # No lesion mask at all: lesions were not assessed (never "no lesion").
    assert render_text(no_lesions).split("IMPRESSION:")[1].strip() == \
        "1. Liver, pancreas and kidneys not assessed for lesions (no lesion mask given)."
    # Empty lesion masks: looked for, none found.
    empty = copy.deepcopy(no_lesions)
    empty["lesions_assessed"] = {"liver": True, "pancreas": True, "kidney": False}
    assert render_text(empty).split("IMPRESSION:")[1].strip() == (
        "1. No liver or pancreatic lesion in the masks provided. Kidneys not assessed for lesions "
        "(no lesion mask given).")
    # Without a staged tumour, the largest lesion comes first; enlargement follows the lesions.
    f = copy.deepcopy(noncontrast)
    f["lesions"] = [l for l in f["lesions"] if l["organ"] != "pancreas"]
    f["organs"]["spleen"]["enlarged"] = "massively_enlarged"
    imp = render_text(f).split("IMPRESSION:")[1].strip().splitlines()
    assert imp[0].startswith("1. Multiple (2) hypoattenuating liver lesions; the largest")
    assert imp[-2] == f"{len(imp) - 1}. Massively enlarged spleen (volume {r1(f['organs']['spleen']['volume_ml'])} mL)."
    assert imp[-1] == f"{len(imp)}. No pancreatic lesion in the masks provided."  # its mask was there, empty
    # ... and with no lesion at all the enlargement is the first (most significant) item.
    g = copy.deepcopy(no_lesions)
    g["organs"]["liver"]["steatosis"] = True
    g["organs"]["spleen"]["enlarged"] = "enlarged"
    imp = render_text(g).split("IMPRESSION:")[1].strip().splitlines()
    assert imp[0].startswith("1. Enlarged spleen (volume") and imp[1] == "2. Hepatic steatosis."
    assert imp[-1] == "3. Liver, pancreas and kidneys not assessed for lesions (no lesion mask given)."


def test_single_lesion_impression_names_location_and_size():
    lesions = [l for l in default_lesions() if l.mask == "kidney_cyst"]
    f = _findings(build_phantom(size="small", lesions=lesions), "non-contrast")
    (cyst,) = f["lesions"]
    imp = render_text(f).split("IMPRESSION:")[1].strip().splitlines()
    assert imp[0] == f"1. Hypoattenuating kidney cyst (right kidney, upper pole), {' x '.join(size_pair(cyst))} cm."


def test_phase_wording(staged_venous, noncontrast, cut_liver):
    venous = render_text(staged_venous)
    lines = lesion_lines(venous).values()
    assert all("enhancing relative to" in l for l in lines) and not any("attenuating" in l for l in lines)
    liver = staged_venous["organs"]["liver"]
    assert liver["steatosis"] is None and liver["possible_steatosis"] is (liver["mean_hu"] < 80)
    low = copy.deepcopy(staged_venous)
    low["organs"]["liver"]["possible_steatosis"] = True
    low_text = render_text(low)
    assert "Low attenuation for the portal-venous phase (below 80 HU): possible steatosis" in low_text
    assert low_text.rstrip().endswith("Low liver attenuation on the portal-venous phase: possible hepatic steatosis.")
    if not liver["possible_steatosis"]:
        assert "No low liver attenuation for the portal-venous phase" in venous
    assert "Fatty pancreas not assessable (venous phase)." in venous
    assert venous.splitlines()[1] == "CT, portal-venous phase"
    plain = render_text(noncontrast)
    lines = lesion_lines(plain).values()
    assert all("attenuating relative to" in l for l in lines) and not any("enhancing" in l for l in lines)
    assert plain.splitlines()[1] == "Non-contrast CT"
    liver = noncontrast["organs"]["liver"]
    assert liver["steatosis"] is False
    assert f"No hepatic steatosis (liver minus spleen {r0(liver['liver_minus_spleen_hu'])} HU)." in plain
    ratio = noncontrast["organs"]["pancreas"]["pancreas_to_spleen_ratio"]
    assert f"No fatty infiltration (pancreas-to-spleen attenuation ratio {ratio:.2f})." in plain
    arterial = render_text(cut_liver)
    assert "Steatosis not assessable on the arterial phase" in arterial
    # steatosis on non-contrast is worded and reaches the impression
    f = copy.deepcopy(noncontrast)
    f["organs"]["liver"]["steatosis"] = True
    f["organs"]["pancreas"]["steatosis"] = True
    text = render_text(f)
    assert "Fatty infiltration (hepatic steatosis)" in text and "Fatty infiltration (fatty pancreas)" in text
    assert "Hepatic steatosis." in text.split("IMPRESSION:")[1] and "Fatty pancreas." in text.split("IMPRESSION:")[1]


def test_not_assessable_lines(cut_liver, masks_only):
    text = render_text(cut_liver)
    assert cut_liver["not_assessable"]
    for item in cut_liver["not_assessable"]:
        assert f": {item['why']}" in text
    assert "- Liver volume: organ touches the edge of the scan" in text
    # internal keys become names: "kidney_lesion_1 kidney pole" -> "Kidney lesion 1 kidney pole"
    assert not re.search(r"^- \w+_\w+", text.split("NOT ASSESSABLE:")[1], re.M)
    assert cut_liver["organs"]["liver"]["volume_ml"] is None
    assert "Liver: volume not assessable (organ cut by the scan edge)." in text
    # per-lesion items are also said on the lesion's own line
    lines = lesion_lines(text)
    for lesion in cut_liver["lesions"]:
        for item in cut_liver["not_assessable"]:
            if item["what"] == f"{lesion['id']} kidney pole":
                assert f"kidney pole: {item['why']}" in lines[title(lesion)]
    no_ct = render_text(masks_only)
    assert "No CT given" in no_ct.splitlines()[2]
    assert no_ct.count("attenuation not assessable (no CT)") == len(masks_only["lesions"])
    assert not re.search(r"\d HU", no_ct)


def test_location_notes_and_sub_threshold_lines(noncontrast):
    f = copy.deepcopy(noncontrast)
    liver_lesion = next(l for l in f["lesions"] if l["organ"] == "liver")
    liver_lesion["location"] = {}
    liver_lesion["location_note"] = "segment not assessable (no segment masks)"
    f["sub_threshold_lesions"] = [{"mask": "liver_lesion", "organ": "liver", "count": 2,
                                   "total_volume_ml": 0.002, "floor_mm3": 10.0}]
    text = render_text(f)
    assert f"{title(liver_lesion)} (segment not assessable (no segment masks)):" in text
    assert "2 further liver lesion components below 10 mm3 (total 2.0 mm3), not measured." in text
    assert "below 10 mm3" in render_markdown(f) and "below 10 mm3" in render_html(f)


def test_markdown_renders(staged_venous):
    md = render_markdown(staged_venous)
    assert md.startswith("# RadGPT structured report: case S")
    for heading in ("## Findings", "### Liver", "### Pancreas", "### Kidneys", "## Impression"):
        assert f"\n{heading}\n" in md
    for lesion in staged_venous["lesions"]:
        assert f"**{title(lesion)}**" in md
    assert "    - Portal vein (PV): solid tumor contact" in md
    assert re.search(r"\n1\. Pancreatic PDAC", md)


def test_html_escapes_findings_text(staged_venous):
    f = copy.deepcopy(staged_venous)
    f["warnings"] = ["<script>alert(1)</script> & more"]
    page = render_html(f)
    assert "<script>alert(1)" not in page and "&lt;script&gt;alert(1)&lt;/script&gt; &amp; more" in page
    assert "(abutment, &lt;= 180 degrees)" in page


def test_institution_templates_override_by_file_name(tmp_path, staged_venous):
    (tmp_path / "report.txt.j2").write_text(
        "HOSPITAL X REPORT {{ case_id }}\n"
        "{% for l in f.lesions %}{{ l.id }} {{ l.longest_diameter_mm|cm }} cm\n{% endfor %}",
        encoding="utf-8",
    )
    text = render_text(staged_venous, template_dir=tmp_path)
    assert text.startswith("HOSPITAL X REPORT S\n")
    pdac = next(l for l in staged_venous["lesions"] if l["kind"] == "pdac")
    assert f"{pdac['id']} {size_pair(pdac)[0]} cm" in text
    # the other formats fall back to the shipped templates
    assert render_markdown(staged_venous, template_dir=tmp_path) == render_markdown(staged_venous)
    # an override may extend the shipped template and replace one block
    other = tmp_path / "b"
    other.mkdir()
    (other / "report.txt.j2").write_text(
        '{% extends "radgpt/report.txt.j2" %}{% block impression %}CONCLUSION:\n'
        '{% for item in impression %}* {{ m.impression_item(item) }}\n{% endfor %}{% endblock %}',
        encoding="utf-8",
    )
    text = render_text(staged_venous, template_dir=other)
    assert "FINDINGS:" in text and "IMPRESSION:" not in text
    assert "CONCLUSION:\n* Pancreatic PDAC (pancreatic head)" in text
    # shared macros can be overridden too
    macros = importlib.resources.files("RadGPTLogic.report").joinpath("templates", "_macros.j2").read_text("utf-8")
    third = tmp_path / "c"
    third.mkdir()
    (third / "_macros.j2").write_text(macros.replace('"venous": "CT, portal-venous phase"', '"venous": "CT PORTAL"'))
    assert render_text(staged_venous, template_dir=third).splitlines()[1] == "CT PORTAL"
    with pytest.raises(FileNotFoundError):
        render_text(staged_venous, template_dir=tmp_path / "missing")


def test_templates_ship_with_the_package():
    root = importlib.resources.files("RadGPTLogic.report").joinpath("templates")
    names = {p.name for p in root.iterdir()}
    assert {"report.txt.j2", "report.md.j2", "report.html.j2", "_macros.j2", "_style.css.j2"} <= names
