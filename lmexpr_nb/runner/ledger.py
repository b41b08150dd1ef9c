"""Which run made each output of a run folder, so that a report never passes an earlier run's
tables and figures off as this run's.

`lmexpr run --only 00` into a folder of an earlier full run leaves that run's tables and figures
in place. The report keeps showing them (a partial run usually redoes one step of a whole run,
and a report without the rest would be of little use), but marks each one with the run that
made it. For that, run.json carries this run's `run_id` and `outputs`: for every table, figure
and notebook metrics file in the folder (OUTPUTS), the run that last wrote it,
{"run_id", "started"}. A file is this run's when the run created or replaced it (its inode,
size or modification time changed while the run went); an untouched one keeps what the
previous run.json said of it, or {"run_id": None, "started": None} ("an earlier run") when
that run.json did not say (a folder of an older kit, or a file copied in by hand).
"""
from __future__ import annotations

import json
import secrets
import time
from pathlib import Path

OUTPUTS = ("tables/*.csv", "tables/*.md", "figures/*.png", "notebooks/*.metrics.json")
UNKNOWN = {"run_id": None, "started": None}


def new_run_id() -> str:
    """This run's id: its start time and a random tag, e.g. 20250101-093000-4f2a."""
    return f"{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(2)}"


def snapshot(out: Path) -> dict[str, tuple]:
    """{relative path: (inode, size, mtime_ns)} of the outputs in `out` now."""
    sig = {}
    for pattern in OUTPUTS:
        for p in Path(out).glob(pattern):
            try:
                st = p.stat()
            except OSError:
                continue
            sig[p.relative_to(out).as_posix()] = (st.st_ino, st.st_size, st.st_mtime_ns)
    return sig


def previous_outputs(out: Path) -> dict[str, dict]:
    """What the folder's run.json (the previous run's) says made each output; {} when it says nothing."""
    try:
        old = json.loads((Path(out) / "run.json").read_text())
    except (OSError, ValueError):
        return {}
    outputs = old.get("outputs") if isinstance(old, dict) else None
    return {k: v for k, v in outputs.items() if isinstance(v, dict)} if isinstance(outputs, dict) else {}


def outputs_ledger(out: Path, before: dict[str, tuple], previous: dict[str, dict], run_id: str,
                   started: str) -> dict[str, dict]:
    """run.json's `outputs` (module doc): `before` is snapshot(out) taken as the run began."""
    mine = {"run_id": run_id, "started": started}
    return {rel: mine if before.get(rel) != sig else previous.get(rel, UNKNOWN)
            for rel, sig in sorted(snapshot(out).items())}


def earlier_run(run: dict, rel: str) -> str | None:
    """None when the run that `run` (run.json) describes made output `rel` (or run.json keeps no
    ledger); else a phrase naming the earlier run that did, for the report."""
    outputs = run.get("outputs")
    if not isinstance(outputs, dict) or not run.get("run_id"):
        return None
    made = outputs.get(rel, UNKNOWN)
    if made.get("run_id") == run["run_id"]:
        return None
    if made.get("run_id"):
        return f"Earlier run {made['run_id']} (started {made.get('started') or '?'}), not remade by this run"
    return "Earlier run (not recorded which), not remade by this run"
