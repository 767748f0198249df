"""Resume: may a case's earlier output folder be kept as it is?

A case is up to date (``skipped``) only when its output folder is whole and was
made from the same inputs: the findings and every report are the ones the tool
wrote together (their SHA-256 in the folder's manifest, see
:mod:`RadGPTLogic.io.atomic`), and ``provenance`` records the same input files
(sha256 of the CT, of every mask with a known structure name, of
segmentation.json and of the probability files; none added or removed), phase,
rules and software version.  Anything else (no manifest: a folder
written before manifests existed; a report from another run beside the findings;
a changed mask) means "recompute", never "skipped".
"""

from __future__ import annotations

import json
from pathlib import Path

from ...findings import FindingsDict


def current_inputs(case_dir) -> dict:
    """The files ``run_report`` would read for ``case_dir``: relative path -> Path
    (the one definition in :mod:`RadGPTLogic.io.casefolder`)."""
    from ...io.casefolder import relative_inputs

    return relative_inputs(case_dir)


def recorded_inputs(findings: FindingsDict) -> dict | None:
    """``provenance.inputs`` as relative path -> sha256 (None when not recorded from files)."""
    inputs = (findings.get("provenance") or {}).get("inputs")
    if not isinstance(inputs, dict) or not inputs:
        return None
    out = {}
    for name, entries in inputs.items():
        for entry in entries or ():
            if not isinstance(entry, dict) or "path" not in entry or "sha256" not in entry:
                return None
            base = Path(entry["path"]).name
            if name == "segmentation.json" or name.startswith("probabilities/"):
                out[name] = entry["sha256"]  # recorded under their relative path (io.casefolder)
            else:
                out[base if name == "ct" else f"segmentations/{base}"] = entry["sha256"]
    return out


def input_changes(case_dir, findings: FindingsDict) -> list:
    """How the case folder's inputs differ from those findings.json was made from
    (empty when identical): ``["segmentations/liver.nii.gz changed", ...]``."""
    from ...io.atomic import sha256_file

    recorded = recorded_inputs(findings)
    if recorded is None:
        return ["findings.json records no input hashes"]
    now = current_inputs(case_dir)
    changes = [f"{rel} added" for rel in sorted(set(now) - set(recorded))]
    changes += [f"{rel} removed" for rel in sorted(set(recorded) - set(now))]
    for rel in sorted(set(now) & set(recorded)):
        try:
            digest = sha256_file(now[rel])
        except OSError:
            digest = None
        if digest != recorded[rel]:
            changes.append(f"{rel} changed")
    return changes


def output_problems(out_dir, names=None) -> list:
    """Why the outputs ``names`` in ``out_dir`` are not one run's whole set (empty when they are).

    ``names`` defaults to everything ``radgpt report`` writes besides derived masks
    (:data:`RadGPTLogic.pipeline.REPORT_OUTPUTS`).

    ``["no output manifest (written by an older version)"]`` for a folder without a
    manifest, else the files missing or different from what the manifest recorded
    (``["report.txt changed"]``): findings and reports then do not belong together.
    """
    from ...io.atomic import manifest_problems, read_manifest

    if names is None:
        from ...pipeline import REPORT_OUTPUTS as names
    if not read_manifest(out_dir):
        return ["no output manifest (written by an older version)"]
    return manifest_problems(out_dir, list(names))


def _summarise(changes: list) -> str:
    more = f" (+{len(changes) - 3} more)" if len(changes) > 3 else ""
    return "; ".join(changes[:3]) + more


def check_up_to_date(case_dir, out_dir, phase: str, rules) -> tuple:
    """``(up_to_date, reason, findings_dict)``: may ``out_dir`` be kept as it is?

    ``reason`` says why not (None when there is no previous output at all).
    """
    from ... import __version__

    findings_path = Path(out_dir) / "findings.json"
    if not findings_path.is_file():
        return False, None, None
    problems = output_problems(out_dir)
    if problems:
        return False, f"outputs not one whole set ({_summarise(problems)})", None
    try:
        data: FindingsDict = json.loads(findings_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False, "previous findings.json unreadable", None
    if not isinstance(data, dict):
        return False, "previous findings.json unreadable", None
    prov = data.get("provenance") or {}
    if data.get("phase") != phase:
        return False, f"phase changed ({data.get('phase')} -> {phase})", data
    if prov.get("version") != __version__:
        return False, f"software version changed ({prov.get('version')} -> {__version__})", data
    if prov.get("rules") != json.loads(json.dumps(rules.as_dict())):
        return False, "rules changed", data
    changes = input_changes(case_dir, data)
    if changes:
        return False, _summarise(changes), data
    return True, "up to date", data
