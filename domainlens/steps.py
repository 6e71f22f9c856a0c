"""Resumable steps: run a function once per distinct input, skip it when its outputs exist.

A :class:`Step` has an id, a JSON-serialisable description of its inputs (``params``), the ids
of the steps it depends on, the paths it writes and a function that writes them. Its *key* is
the sha256 of its params and its dependencies' keys, so a change anywhere upstream reruns
everything downstream and nothing else. A finished step leaves a small record in
``<state_dir>/<id>.json`` (key, outputs, seconds), written atomically after the outputs, so an
interrupted pipeline resumes at the first step without a matching record.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class Step:
    """One unit of pipeline work.

    ``run`` takes no arguments and writes ``outputs``; ``estimate`` is the expected seconds on
    2 CPU cores, for ``--dry-run``.
    """

    id: str
    params: dict[str, Any]
    run: Callable[[], Any]
    outputs: Sequence[Path] = ()
    depends: Sequence[str] = ()
    estimate: float = 0.0
    key: str = field(default="", init=False)


def state_path(state_dir: Path, step_id: str) -> Path:
    """Where the record of ``step_id`` lives (ids may contain ``/``)."""
    return state_dir / (step_id.replace("/", "__") + ".json")


def assign_keys(steps: Sequence[Step]) -> None:
    """Compute every step's key from its params and its dependencies' keys (in plan order)."""
    keys: dict[str, str] = {}
    for step in steps:
        missing = [d for d in step.depends if d not in keys]
        if missing:
            raise ValueError(f"step {step.id!r} depends on {missing}, not planned before it")
        blob = json.dumps({"id": step.id, "params": step.params,
                           "depends": [keys[d] for d in step.depends]},
                          sort_keys=True, default=str)
        step.key = hashlib.sha256(blob.encode()).hexdigest()
        keys[step.id] = step.key


def is_done(step: Step, state_dir: Path) -> bool:
    """True when the step's record has its current key and every output exists."""
    path = state_path(state_dir, step.id)
    if not path.is_file():
        return False
    try:
        record = json.loads(path.read_text())
    except json.JSONDecodeError:
        return False
    return record.get("key") == step.key and all(Path(p).exists() for p in step.outputs)


def write_record(step: Step, state_dir: Path, seconds: float) -> None:
    """Record a finished step atomically (temp file + rename)."""
    state_dir.mkdir(parents=True, exist_ok=True)
    record = {"id": step.id, "key": step.key, "seconds": round(seconds, 3),
              "outputs": [str(p) for p in step.outputs], "params": step.params}
    fd, tmp = tempfile.mkstemp(dir=state_dir, suffix=".tmp")
    with os.fdopen(fd, "w") as handle:
        json.dump(record, handle, indent=2, default=str)
    os.replace(tmp, state_path(state_dir, step.id))


def read_seconds(state_dir: Path) -> dict[str, float]:
    """Seconds each recorded step took, by step id."""
    out = {}
    for path in sorted(state_dir.glob("*.json")):
        record = json.loads(path.read_text())
        out[record["id"]] = float(record["seconds"])
    return out


def run_steps(
    steps: Sequence[Step],
    state_dir: Path,
    log: Callable[[str], None] = print,
) -> dict[str, str]:
    """Run the steps in order, skipping finished ones; returns ``{id: "done"|"skipped"}``."""
    assign_keys(steps)
    status = {}
    for i, step in enumerate(steps, 1):
        if is_done(step, state_dir):
            log(f"[{i}/{len(steps)}] {step.id}: up to date, skipped")
            status[step.id] = "skipped"
            continue
        log(f"[{i}/{len(steps)}] {step.id} ...")
        start = time.perf_counter()
        step.run()
        seconds = time.perf_counter() - start
        missing = [str(p) for p in step.outputs if not Path(p).exists()]
        if missing:
            raise RuntimeError(f"step {step.id!r} finished without writing {missing}")
        write_record(step, state_dir, seconds)
        log(f"[{i}/{len(steps)}] {step.id}: done in {seconds:.1f} s")
        status[step.id] = "done"
    return status
