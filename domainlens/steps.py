"""Resumable steps: run a function once per distinct input, skip it when its outputs exist.

A :class:`Step` has an id, a JSON-serialisable description of its inputs (``params``), the ids
of the steps it depends on, the modules whose code produces its outputs (``code``), the paths
it writes and a function that writes them. Its *key* is the sha256 of its params, a digest of
its code (:func:`code_digest`: the source of those modules, docstrings and comments left out)
and its dependencies' keys, so a change of an input, a default or the code anywhere upstream
reruns everything downstream and nothing else; no version constant has to be bumped by hand. A finished step leaves a small record in
``<state_dir>/<id>.json`` (key, outputs, seconds), written atomically after the outputs, so an
interrupted pipeline resumes at the first step without a matching record. A step that raised
(or whose job died) leaves a failure record in ``<state_dir>/failed/<id>.json`` (error, log
path, job id) until it succeeds; :func:`read_failures` lists them for the progress output and
the report.
"""

from __future__ import annotations

import ast
import functools
import importlib.util
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from training.util.files import digest, write_json


@dataclass
class Step:
    """One unit of pipeline work.

    ``run`` takes no arguments and writes ``outputs``; ``code``: dotted names of the modules
    or packages whose code determines the outputs (their digest is part of the key);
    ``estimate`` is the expected seconds on 2 CPU cores, for ``--dry-run``.
    """

    id: str
    params: dict[str, Any]
    run: Callable[[], Any]
    outputs: Sequence[Path] = ()
    depends: Sequence[str] = ()
    estimate: float = 0.0
    code: Sequence[str] = ()
    key: str = field(default="", init=False)


def _source_files(module: str) -> list[Path]:
    """The ``.py`` files of a module, or of every module of a package (sorted)."""
    spec = importlib.util.find_spec(module)
    if spec is None or spec.origin is None:
        raise ValueError(f"step code {module!r} is not an importable module")
    origin = Path(spec.origin)
    if spec.submodule_search_locations:  # a package: all of its modules
        return sorted(p for p in origin.parent.rglob("*.py") if "__pycache__" not in p.parts)
    return [origin]


@functools.cache
def _file_digest(path: Path, mtime_ns: int) -> str:
    """Digest of a Python file's code: its AST without docstrings (comments never reach the
    AST), so editing documentation does not rerun a step but any code change does."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if (isinstance(body, list) and body and isinstance(body[0], ast.Expr)
                and isinstance(body[0].value, ast.Constant) and isinstance(body[0].value.value, str)):
            node.body = body[1:] or [ast.Pass()]
    return digest(ast.dump(tree), length=64)


def code_digest(modules: Sequence[str]) -> str:
    """One digest of the code of ``modules`` (dotted module or package names)."""
    parts = []
    for module in sorted(set(modules)):
        for path in _source_files(module):
            parts.append((module, path.name, _file_digest(path, path.stat().st_mtime_ns)))
    return digest(parts, length=64)


def state_path(state_dir: Path, step_id: str) -> Path:
    """Where the record of ``step_id`` lives (ids may contain ``/``)."""
    return state_dir / (step_id.replace("/", "__") + ".json")


def assign_keys(steps: Sequence[Step]) -> None:
    """Compute every step's key from its params, its code and its dependencies' keys (in plan
    order)."""
    keys: dict[str, str] = {}
    for step in steps:
        missing = [d for d in step.depends if d not in keys]
        if missing:
            raise ValueError(f"step {step.id!r} depends on {missing}, not planned before it")
        step.key = digest({"id": step.id, "params": step.params,
                           "code": code_digest(step.code) if step.code else "",
                           "depends": [keys[d] for d in step.depends]}, length=64)
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
    record = {"id": step.id, "key": step.key, "seconds": round(seconds, 3),
              "outputs": [str(p) for p in step.outputs], "params": step.params,
              "code": list(step.code)}
    write_json(state_path(state_dir, step.id), record)
    clear_failure(state_dir, step.id)


#: Subfolder of the state folder holding the failure records.
FAILED_DIR = "failed"


def failure_path(state_dir: Path, step_id: str) -> Path:
    """Where the failure record of ``step_id`` lives."""
    return state_path(Path(state_dir) / FAILED_DIR, step_id)


def write_failure(step: Step, state_dir: Path, error: str, log: str | None = None,
                  job: str | None = None, executor: str = "inline") -> dict[str, Any]:
    """Record that ``step`` failed: its key, a one-line ``error``, the job's ``log`` file and
    ``job`` id (none for a step run in this process); returns the record."""
    record = {"id": step.id, "key": step.key, "error": error, "log": log, "job": job,
              "executor": executor, "time": time.strftime("%Y-%m-%d %H:%M:%S")}
    write_json(failure_path(state_dir, step.id), record)
    return record


def clear_failure(state_dir: Path, step_id: str) -> None:
    """Remove the failure record of ``step_id`` (if any)."""
    failure_path(state_dir, step_id).unlink(missing_ok=True)


def read_failures(state_dir: Path) -> list[dict[str, Any]]:
    """The failure records in ``state_dir`` (sorted by step id); empty if there are none."""
    folder = Path(state_dir) / FAILED_DIR
    records = []
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        try:
            records.append(json.loads(path.read_text()))
        except json.JSONDecodeError:
            continue
    return sorted(records, key=lambda r: r.get("id", ""))


def prune_failures(state_dir: Path, steps: Sequence[Step]) -> None:
    """Drop failure records that no longer describe a planned step (another key, not
    planned, or done since)."""
    by_id = {s.id: s for s in steps}
    for record in read_failures(state_dir):
        step = by_id.get(record.get("id", ""))
        if step is None or step.key != record.get("key") or is_done(step, state_dir):
            clear_failure(state_dir, record.get("id", ""))


def error_line(error: BaseException) -> str:
    """An exception as one line: ``<type>: <first line of its message>``."""
    message = str(error).strip().splitlines()
    return f"{type(error).__name__}: {message[0]}" if message else type(error).__name__


def run_step(step: Step, state_dir: Path) -> float:
    """Run one step, check that it wrote its outputs and record it; returns its seconds."""
    start = time.perf_counter()
    step.run()
    seconds = time.perf_counter() - start
    missing = [str(p) for p in step.outputs if not Path(p).exists()]
    if missing:
        raise RuntimeError(f"step {step.id!r} finished without writing {missing}")
    write_record(step, state_dir, seconds)
    return seconds


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
    """Run the steps in order, skipping finished ones; returns ``{id: "done"|"skipped"}``. A
    step that raises leaves a failure record (:func:`write_failure`) and stops the run."""
    assign_keys(steps)
    status = {}
    for i, step in enumerate(steps, 1):
        if is_done(step, state_dir):
            log(f"[{i}/{len(steps)}] {step.id}: up to date, skipped")
            status[step.id] = "skipped"
            continue
        log(f"[{i}/{len(steps)}] {step.id} ...")
        try:
            seconds = run_step(step, state_dir)
        except Exception as error:
            write_failure(step, state_dir, error_line(error))
            raise
        log(f"[{i}/{len(steps)}] {step.id}: done in {seconds:.1f} s")
        status[step.id] = "done"
    return status
