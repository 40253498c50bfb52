"""Which configuration keys changed since the last finished ``ms2study run`` of a study.

Snakemake reruns a job whose parameters changed and says only "params have changed" per job; a scientist who edited
config.yaml weeks ago (or a new ms2study version with another default) then sees stages rerun without knowing why.
A run that finishes stores the configuration it ran with (``LAST_CONFIG``); the next run names the keys whose values
differ, as dotted keys with old and new values. Used by ``ms2study.runner``; imports the standard library only.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ms2study.core.atomic import write_text

# The configuration of the last finished run (defaults, config.yaml and --config/--configfile merged).
LAST_CONFIG = Path("results") / ".last_finished_run_config.json"
SHOWN = 8  # changed keys named in the message; the rest are counted


def flatten(config: dict, prefix: str = "") -> dict[str, Any]:
    """Nested mappings as dotted keys: ``{"annotate": {"fdr": 0.01}}`` -> ``{"annotate.fdr": 0.01}``. Lists and
    scalars are leaves."""
    out: dict[str, Any] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            out.update(flatten(value, name + "."))
        else:
            out[name] = value
    return out


def _text(value: Any) -> str:
    text = json.dumps(value, sort_keys=True, default=str)
    return text if len(text) <= 60 else text[:57] + "..."


def changed_keys(study_dir: Path, config: dict) -> list[str]:
    """``key: old -> new`` for each dotted key whose value differs from the last finished run's (``(not set)`` where
    a key is new or gone), sorted by key; empty when nothing changed or no finished run was recorded (an unreadable
    record counts as none)."""
    try:
        last = json.loads((Path(study_dir) / LAST_CONFIG).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    if not isinstance(last, dict):
        return []
    old = flatten(last)
    new = flatten(json.loads(json.dumps(config, default=str)))
    missing = "(not set)"
    out = []
    for k in sorted(old.keys() | new.keys()):
        a, b = old.get(k, missing), new.get(k, missing)
        if a == b:
            continue
        if isinstance(a, list) and isinstance(b, list) and a and b:  # name the elements, not two cut-off lists
            removed, added = [x for x in a if x not in b], [x for x in b if x not in a]
            parts = ([f"removed {', '.join(_text(x) for x in removed)}"] if removed else []) + (
                [f"added {', '.join(_text(x) for x in added)}"] if added else [])
            out.append(f"{k}: {'; '.join(parts) or 'reordered'}")
            continue
        out.append(f"{k}: {_text(a) if k in old else missing} -> {_text(b) if k in new else missing}")
    return out


def change_message(study_dir: Path, config: dict) -> str | None:
    """One line naming the changed keys (``changed_keys``), or None when there are none. Changes under
    ``resources:`` (memory, time, GPUs a job asks for) rerun nothing and are said apart (trial BB: raising a job's
    mem_mb after an out-of-memory kill read "the jobs that read them run again", then "Nothing to be done")."""
    changes = changed_keys(study_dir, config)
    if not changes:
        return None
    sized = [c for c in changes if c.startswith("resources.")]
    rest = [c for c in changes if not c.startswith("resources.")]
    parts = []
    if rest:
        more = f"; and {len(rest) - SHOWN} more" if len(rest) > SHOWN else ""
        parts.append(f"{len(rest)} configuration value(s) changed since the last finished run (the jobs that read "
                     f"them run again): {'; '.join(rest[:SHOWN])}{more}")
    if sized:
        more = f"; and {len(sized) - SHOWN} more" if len(sized) > SHOWN else ""
        parts.append(f"{len(sized)} job size(s) changed (resources: what a job asks for; no job reruns for it, jobs "
                     f"still to run ask for the new values): {'; '.join(sized[:SHOWN])}{more}")
    return "ms2study run: " + "\nms2study run: ".join(parts)


def remember(study_dir: Path, config: dict) -> None:
    """Store ``config`` as the last finished run's (``LAST_CONFIG``), atomically."""
    write_text(json.dumps(config, sort_keys=True, indent=1, default=str), Path(study_dir) / LAST_CONFIG)


def setup_notes(study_dir: Path, config: dict, n_runs: int) -> list[str]:
    """What a study set up with the defaults will not do, said before anything runs: no sample sheet (every run a
    study sample, none a pooled QC or blank), no library (no identifications), no outcome (no models, no tests). A
    trial pointed ``ms2study run`` at a folder of runs and got 85 planned jobs and no word on any of these."""
    notes = []
    if not (Path(study_dir) / str(config.get("samples") or "samples.tsv")).is_file():
        notes.append(f"no sample sheet ({config.get('samples') or 'samples.tsv'}) in {study_dir}: its {n_runs} run(s) "
                     "are all read as study samples, none as a pooled QC or blank, with nothing to compare; write "
                     "one (sample_id, file, sample_type, your outcome columns: README 'The study folder')")
    if not config.get("library"):
        notes.append("no library in config.yaml (library: FILE.mgf/.msp/.json): no MS/MS is identified")
    if not ((config.get("models") or {}).get("outcomes")):
        notes.append("no outcome in config.yaml (models: outcomes): no models and no differential tests are run")
    return notes
