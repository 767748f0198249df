"""report.html: one self-contained page with a key image per lesion.

(a) pure Python: data-URI PNGs decode to the expected size, calipers end on the lesion contour,
radiological orientation, labels match findings.json, no external URL;
(b) headless Chromium (Debian ``chromium``): the page renders, every key image loads, the
numbers shown match findings.json.
"""

from __future__ import annotations

import base64
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from png_reader import decode_png, png_size

from RadGPTLogic.case import Case
from RadGPTLogic.engine import compute_findings
from RadGPTLogic.phantom import build_phantom, reorient_array, staging_lesions
from RadGPTLogic.report.keyimages import (
    CONTOUR_RGB,
    LONGEST_RGB,
    NO_CT_NOTE,
    PERPENDICULAR_RGB,
    key_image,
    key_images,
)
from RadGPTLogic.report.png import encode_png
from RadGPTLogic.report.structured import render_html

CALIPER_RGB = {"longest": LONGEST_RGB, "perpendicular": PERPENDICULAR_RGB}
DATA_URI = re.compile(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"')


def r1(x):
    return f"{round(x, 1):.1f}"


@pytest.fixture(scope="module")
def staged():
    phantom = build_phantom(size="small", lesions=staging_lesions(), phase="venous")
    case = Case.from_arrays("S", phantom.affine, phantom.masks, phantom.ct)
    findings = compute_findings(case, "venous").to_dict()
    return case, findings, render_html(findings, case=case)


@pytest.fixture(scope="module")
def masks_only():
    phantom = build_phantom(size="small")
    case = Case.from_arrays("M", phantom.affine, phantom.masks, None)
    findings = compute_findings(case, "non-contrast").to_dict()
    return case, findings, render_html(findings, case=case)


class _Page(HTMLParser):
    """Key-image <img> attributes, caliper captions and the page's text."""

    def __init__(self):
        super().__init__()
        self.images, self.captions, self.body, self.text = [], {}, {}, []
        self._figure, self._caliper = None, None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "body":
            self.body = a
        if tag == "figure" and "keyimage" in (a.get("class") or ""):
            self._figure = a.get("data-lesion")
        if tag == "img" and "keyimage" in (a.get("class") or ""):
            self.images.append(a)
        if tag == "span" and a.get("data-caliper") and self._figure:
            self._caliper = a["data-caliper"]

    def handle_endtag(self, tag):
        if tag == "figure":
            self._figure = None
        if tag == "span":
            self._caliper = None

    def handle_data(self, data):
        self.text.append(data)
        if self._caliper:
            self.captions.setdefault(self._figure, {})[self._caliper] = data.strip()


def parse(page: str) -> _Page:
    p = _Page()
    p.feed(page)
    return p


# ----------------------------------------------------------- (a) pure Python
def test_png_round_trip():
    rng = np.random.default_rng(1)
    for shape in ((7, 5, 3), (1, 1, 3), (9, 4), (40, 33, 3)):
        img = rng.integers(0, 256, shape, dtype=np.uint8)
        data = encode_png(img)
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and png_size(data) == (shape[1], shape[0])
        assert np.array_equal(decode_png(data), img)
    with pytest.raises(ValueError):
        encode_png(np.zeros((4, 4), np.float32))
    with pytest.raises(ValueError):
        decode_png(encode_png(img)[:-20] + b"\x00" * 20)


def test_one_decodable_png_per_lesion(staged):
    case, findings, page = staged
    uris = DATA_URI.findall(page)
    assert len(uris) == len(findings["lesions"]) == 5
    images = parse(page).images
    assert [img["data-lesion"] for img in images] == [l["id"] for l in findings["lesions"]]
    expected = key_images(case, findings)
    for img, uri, lesion in zip(images, uris, findings["lesions"]):
        data = base64.b64decode(uri)
        rgb = decode_png(data)
        assert rgb.shape == (int(img["height"]), int(img["width"]), 3)
        assert 300 <= max(rgb.shape[:2]) <= 400  # readable, upscaled from a small crop
        assert np.array_equal(rgb, expected[lesion["id"]].rgb)


def test_page_is_self_contained(staged):
    page = staged[2]
    assert "http" not in page.lower()
    assert "<link" not in page and "@import" not in page and "url(" not in page
    srcs = re.findall(r'\bsrc="([^"]*)"', page)
    assert srcs and all(s.startswith("data:image/png;base64,") for s in srcs)
    assert "<style>" in page


def _distance_to(mask: np.ndarray, point) -> float:
    ys, xs = np.nonzero(mask)
    return float(np.min(np.hypot(xs - point[0], ys - point[1])))


def test_calipers_end_on_the_lesion_contour(staged):
    case, findings, page = staged
    for lesion in findings["lesions"]:
        ki = key_image(case, lesion)
        rgb = ki.rgb
        contour_px = np.all(rgb == CONTOUR_RGB, axis=2)
        assert contour_px.sum() > 50
        for name, (a, b) in ki.endpoints_px.items():
            color = np.all(rgb == CALIPER_RGB[name], axis=2)
            for x, y in (a, b):
                # the drawn end point is caliper-coloured and the contour lies right next to it
                assert _distance_to(color, (x, y)) <= 1.0, (lesion["id"], name)
                assert _distance_to(ki.contour, (x, y)) <= 2.5, (lesion["id"], name)
                xi, yi = int(round(x)), int(round(y))
                window = contour_px[max(yi - 4, 0): yi + 5, max(xi - 4, 0): xi + 5]
                assert window.any(), (lesion["id"], name, "no contour pixel near the caliper end")
            mid = ((a[0] + b[0]) / 2, (a[1] + b[1]) / 2)
            assert _distance_to(ki.contour, mid) > 5.0  # the caliper crosses the lesion
            length_px = float(np.hypot(b[0] - a[0], b[1] - a[1]))
            assert length_px > 40
        # both diameters drawn to scale: the pixel lengths keep the mm ratio
        (a, b), (c, d) = ki.endpoints_px["longest"], ki.endpoints_px["perpendicular"]
        ratio_px = np.hypot(*np.subtract(b, a)) / np.hypot(*np.subtract(d, c))
        ratio_mm = lesion["longest_diameter_mm"] / lesion["perpendicular_diameter_mm"]
        assert ratio_px == pytest.approx(ratio_mm, rel=0.02)


def test_caliper_labels_match_findings(staged):
    case, findings, page = staged
    captions = parse(page).captions
    for lesion in findings["lesions"]:
        ki = key_image(case, lesion)
        for name in ("longest", "perpendicular"):
            text = f"{r1(lesion[f'{name}_diameter_mm'])} mm"
            assert ki.labels[name] == text
            assert captions[lesion["id"]][name] == text
            x0, y0, x1, y1 = ki.label_boxes[name]
            assert 0 <= x0 < x1 <= ki.width and 0 <= y0 < y1 <= ki.height
            glyphs = np.all(ki.rgb[y0:y1, x0:x1] == CALIPER_RGB[name], axis=2).sum()
            assert glyphs > 60  # the digits are drawn in the caliper's colour
        a, b = ki.label_boxes["longest"], ki.label_boxes["perpendicular"]
        assert a[2] <= b[0] or b[2] <= a[0] or a[3] <= b[1] or b[3] <= a[1], "labels overlap"


def _orientation_case(axcodes=None, spacing=(1.0, 1.0, 2.5)):
    """Liver box (60 HU) with an elongated lesion (20 HU), a bright marker right-posterior of the
    lesion and a dark marker left-anterior of it (canonical RAS arrays, or stored as ``axcodes``)."""
    shape = (80, 80, 12)
    ct = np.full(shape, -500, np.int16)
    liver = np.zeros(shape, bool)
    liver[5:75, 5:75, 1:11] = True
    ct[liver] = 60
    i, j = np.meshgrid(np.arange(80), np.arange(80), indexing="ij")
    ellipse = ((i - 40) / 9.0) ** 2 + ((j - 40) / 5.0) ** 2 <= 1.0
    lesion = np.zeros(shape, bool)
    lesion[:, :, 4:8] = ellipse[:, :, None]
    ct[lesion] = 20
    ct[60:66, 20:26, :] = 1000  # patient's right (+x) and posterior (-y) of the lesion
    ct[20:26, 56:62, :] = -100  # patient's left (-x) and anterior (+y) of the lesion
    affine = np.diag([*spacing, 1.0])
    affine[:3, 3] = (-40.0, -40.0, -15.0)
    masks = {"liver": liver.astype(np.uint8), "liver_lesion": lesion.astype(np.uint8)}
    if axcodes:
        masks = {k: reorient_array(v, affine, axcodes)[0] for k, v in masks.items()}
        ct, affine = reorient_array(ct, affine, axcodes)
    return Case.from_arrays("O", affine, masks, ct)


def test_radiological_orientation():
    case = _orientation_case()
    findings = compute_findings(case, "non-contrast").to_dict()
    (lesion,) = findings["lesions"]
    ki = key_image(case, lesion)
    rgb = ki.rgb.astype(int)
    h, w = rgb.shape[:2]
    grey = (rgb[:, :, 0] == rgb[:, :, 1]) & (rgb[:, :, 1] == rgb[:, :, 2])
    bright = grey & (rgb[:, :, 0] == 255)
    dark = grey & (rgb[:, :, 0] >= 30) & (rgb[:, :, 0] <= 45)
    assert bright.sum() > 200 and dark.sum() > 200
    ys, xs = np.nonzero(bright)
    assert xs.mean() < 0.3 * w and ys.mean() > 0.7 * h  # patient's right -> image left; posterior -> bottom
    ys, xs = np.nonzero(dark)
    assert xs.mean() > 0.7 * w and ys.mean() < 0.3 * h  # patient's left -> image right; anterior -> top
    # the caliper end with the larger RAS x (patient's right) is drawn further left
    (p, q) = lesion["calipers_ras_mm"]["longest"]
    (a, b) = ki.endpoints_px["longest"]
    assert (a[0] < b[0]) == (p[0] > q[0])
    assert abs(a[1] - b[1]) < 3  # the lesion's long axis runs left-right
    # the same physical case stored in LPS or with permuted axes gives the same image
    for codes in ("LPS", "SRA"):
        other = _orientation_case(codes)
        f2 = compute_findings(other, "non-contrast").to_dict()
        assert np.array_equal(key_image(other, f2["lesions"][0]).rgb, ki.rgb)


def test_anisotropic_pixels_are_shown_square():
    """Pixels of 0.7 x 1.3 mm: the image is upscaled to square millimetres, so the calipers keep
    their mm lengths' ratio and still end on the contour."""
    case = _orientation_case(spacing=(0.7, 1.3, 2.5))
    (lesion,) = compute_findings(case, "non-contrast").to_dict()["lesions"]
    ki = key_image(case, lesion)
    (a, b), (c, d) = ki.endpoints_px["longest"], ki.endpoints_px["perpendicular"]
    ratio_px = np.hypot(*np.subtract(b, a)) / np.hypot(*np.subtract(d, c))
    assert ratio_px == pytest.approx(lesion["longest_diameter_mm"] / lesion["perpendicular_diameter_mm"], rel=0.03)
    for p in (a, b, c, d):
        assert _distance_to(ki.contour, p) <= 2.5


def test_masks_only_case_gets_mask_images(masks_only):
    case, findings, page = masks_only
    uris = DATA_URI.findall(page)
    assert len(uris) == len(findings["lesions"]) > 0
    for uri in uris:
        rgb = decode_png(base64.b64decode(uri))
        assert rgb.shape[2] == 3 and np.all(rgb == CONTOUR_RGB, axis=2).sum() > 50
    assert page.count(NO_CT_NOTE) == len(findings["lesions"])


def test_without_case_the_page_says_so(staged):
    _, findings, _ = staged
    page = render_html(findings)
    assert "<img" not in page and "no key images (the renderer was not given" in page.lower()
    assert "http" not in page.lower()


# ------------------------------------------------------- (b) headless Chromium
CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]


def _chromium() -> str:
    for name in ("chromium", "chromium-browser"):
        path = shutil.which(name)
        if path:
            return path
    if Path("/usr/bin/chromium").exists():
        return "/usr/bin/chromium"
    pytest.skip("headless Chromium not installed (Debian package 'chromium'; .ci/run installs it)")


def _chromium_run(tmp_path: Path, page: str, *extra) -> subprocess.CompletedProcess:
    html = tmp_path / "report.html"
    html.write_text(page, encoding="utf-8")
    cmd = [_chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile'}", *extra, html.as_uri()]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


def _dump_dom(tmp_path: Path, page: str) -> str:
    proc = _chromium_run(tmp_path, page, "--virtual-time-budget=2000", "--dump-dom")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "<html" in proc.stdout, proc.stderr[-2000:]
    return proc.stdout


def test_chromium_renders_the_page_and_loads_every_key_image(staged, tmp_path):
    case, findings, page = staged
    dom = parse(_dump_dom(tmp_path, page))
    n = len(findings["lesions"])
    assert dom.body.get("data-keyimages-loaded") == f"{n}/{n}"
    assert len(dom.images) == n
    for img in dom.images:
        assert img["data-loaded"] == "yes"
        assert img["data-natural-size"] == f"{img['width']}x{img['height']}"
    text = " ".join(dom.text)
    assert "RadGPT structured report" in text and "Impression" in text
    pairs = set(re.findall(r"(\d+\.\d) x (\d+\.\d) cm", text))
    sizes = {(r1(l["longest_diameter_mm"] / 10), r1(l["perpendicular_diameter_mm"] / 10)) for l in findings["lesions"]}
    assert pairs == sizes
    for lesion in findings["lesions"]:
        assert dom.captions[lesion["id"]] == {
            "longest": f"{r1(lesion['longest_diameter_mm'])} mm",
            "perpendicular": f"{r1(lesion['perpendicular_diameter_mm'])} mm",
        }
        assert f"volume {r1(lesion['volume_ml'])} mL" in text
    pdac = next(l for l in findings["lesions"] if l["kind"] == "pdac")
    assert f"Clinical stage: {pdac['t_stage']}NxMx." in text
    for deg in pdac["vessel_contact_deg"].values():
        if deg:
            assert f"solid tumor contact {deg:.0f} degrees" in text
    for organ in findings["organs"].values():
        assert f"volume {r1(organ['volume_ml'])} mL" in text


def test_chromium_flags_a_broken_image(staged, tmp_path):
    """The load check is real: a corrupt PNG reads as not loaded."""
    _, findings, page = staged
    first = DATA_URI.search(page)
    broken = page[: first.start(1)] + "iVBORw0KGgoAAAANSUhEUg" + page[first.end(1):]
    dom = parse(_dump_dom(tmp_path, broken))
    n = len(findings["lesions"])
    assert dom.body.get("data-keyimages-loaded") == f"{n - 1}/{n}"
    assert [img["data-loaded"] for img in dom.images].count("no") == 1


def test_chromium_screenshot(staged, tmp_path):
    _, _, page = staged
    shot = tmp_path / "report.png"
    proc = _chromium_run(tmp_path, page, "--window-size=1200,2400", f"--screenshot={shot}",
                         "--virtual-time-budget=2000", "--hide-scrollbars")
    assert proc.returncode == 0 and shot.exists(), proc.stderr[-2000:]
    assert png_size(shot.read_bytes()) == (1200, 2400)
