"""benchmarks/_harness.py: load reported at start and end, "alone" judged at the start, busy
results refused or marked."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import _harness  # noqa: E402


def fake_load(monkeypatch, *values: float) -> None:
    loads = iter(values)
    monkeypatch.setattr(_harness.os, "getloadavg", lambda: (next(loads), 0.0, 0.0))


def test_alone_is_judged_at_the_start_and_both_loads_are_recorded(monkeypatch, capsys):
    fake_load(monkeypatch, 0.4, 1.9)  # the benchmark's own threads raise the end value
    cond = _harness.start(threads=2)
    _harness.finish(cond)
    out = capsys.readouterr().out
    assert cond.alone and cond.load_start == 0.4 and cond.load_end == 1.9
    assert "load 0.40 -> ?" in out and "torch threads 2" in out and f"{cond.cpus} CPUs" in out
    assert "load 0.40 -> 1.90" in out and "start verdict: alone" in out
    assert cond.tag() == "load 0.40 -> 1.90 (alone)"


def test_busy_results_are_refused_unless_allowed_then_marked(monkeypatch, tmp_path, capsys):
    fake_load(monkeypatch, 1.0, 3.2)  # 1.0 is not below the threshold: busy
    cond = _harness.finish(_harness.start(threads=1))
    assert not cond.alone and _harness.BUSY_MARK in cond.tag()
    out = tmp_path / "results.md"
    assert not _harness.may_write(cond, allow_busy=False, path=out)
    assert "not writing" in capsys.readouterr().err
    assert _harness.may_write(cond, allow_busy=True, path=out)
    _harness.write_report(out, "| a | b |\n", cond)
    text = out.read_text()
    assert text.startswith("| a | b |\n") and f"**{_harness.BUSY_MARK}.**" in text and "load 1.00 -> 3.20" in text


def test_allow_busy_flag_and_missing_load_average(monkeypatch):
    import argparse

    parser = argparse.ArgumentParser()
    _harness.add_busy_flag(parser)
    assert parser.parse_args(["--allow-busy"]).allow_busy and not parser.parse_args([]).allow_busy

    def unavailable():
        raise OSError("no load average")

    monkeypatch.setattr(_harness.os, "getloadavg", unavailable)
    cond = _harness.start(threads=1)
    assert not cond.alone  # unknown load (NaN) never counts as alone
    with pytest.raises(SystemExit):
        parser.parse_args(["--allow-busy=yes"])
