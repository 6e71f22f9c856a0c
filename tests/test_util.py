"""The shared helpers: atomic writes, digests, seeding, validation."""

from __future__ import annotations

import errno
import os
import zlib

import numpy as np
import pandas as pd
import pytest
import torch

from training.util import files, seeding, validate


def test_atomic_write_leaves_old_file_and_no_temp_on_failure(tmp_path):
    target = tmp_path / "a.txt"
    files.write_text(target, "old")
    with pytest.raises(RuntimeError), files.atomic_open(target) as handle:
        handle.write("half")
        raise RuntimeError("interrupted")
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt"]


def test_write_error_names_path_and_reason(tmp_path, monkeypatch):
    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(files.os, "replace", full)
    with pytest.raises(files.WriteError, match=r"cannot write .*b\.txt: no space left"):
        files.write_text(tmp_path / "b.txt", "x")
    assert list(tmp_path.iterdir()) == []


def test_write_below_a_file_is_one_clear_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(files.WriteError, match="cannot write .*file/out.csv"):
        files.write_csv(blocker / "out.csv", pd.DataFrame({"a": [1]}))


def test_csv_json_torch_round_trip(tmp_path):
    files.write_csv(tmp_path / "t.csv", pd.DataFrame(columns=["a", "b"]))
    assert (tmp_path / "t.csv").read_text().strip() == "a,b"
    files.write_json(tmp_path / "j.json", {"b": 1, "a": [1, 2]})
    assert (tmp_path / "j.json").read_text().startswith('{\n  "a"')
    files.torch_save({"w": torch.ones(2)}, tmp_path / "m.pt")
    assert torch.load(tmp_path / "m.pt")["w"].sum() == 2


def test_remove_stale_temps_keeps_live_processes(tmp_path):
    dead = tmp_path / ".epoch_1.pt.tmp-999999999"
    live = tmp_path / f".epoch_2.pt.tmp-{os.getppid()}"
    dead.write_bytes(b"x")
    live.write_bytes(b"x")
    assert files.remove_stale_temps(tmp_path) == [dead]
    assert live.exists() and not dead.exists()


def test_digest_is_stable_and_order_sensitive():
    assert files.digest({"a": 1, "b": 2}) == files.digest({"b": 2, "a": 1})
    assert files.digest("a", "b") != files.digest("b", "a")
    assert len(files.digest("x", length=24)) == 24


def test_seeded_rng_matches_seed_sequence_of_crc32_keys():
    expected = np.random.default_rng(
        np.random.SeedSequence([7, zlib.crc32(b"sketch"), zlib.crc32(b"axe"), 3])).random(4)
    assert np.array_equal(seeding.seeded_rng(7, "sketch", "axe", 3).random(4), expected)
    assert not np.array_equal(seeding.seeded_rng(7, "sketch").random(4),
                              seeding.seeded_rng(7, "clipart").random(4))


def test_torch_generator_without_keys_is_manual_seed():
    a = torch.rand(3, generator=seeding.torch_generator(5))
    torch.manual_seed(5)
    assert torch.equal(a, torch.rand(3))
    b = torch.rand(3, generator=seeding.torch_generator(5, "x"))
    assert torch.equal(b, torch.rand(3, generator=seeding.torch_generator(5, "x")))
    assert not torch.equal(a, b)
    with pytest.raises(TypeError, match="seed must be an int"):
        seeding.seeded_rng("0")


@pytest.mark.parametrize(("value", "error"), [
    (float("inf"), ValueError), (float("nan"), ValueError), (0.0, ValueError), (-1, ValueError),
    (True, TypeError), ("1", TypeError),
])
def test_check_number_refuses(value, error):
    with pytest.raises(error, match=r"lr must be a finite number > 0, got "):
        validate.check_number("lr", value, low=0, low_open=True)


def test_check_number_and_choice_accept_and_name_values():
    assert validate.check_number("k", 3, low=1, integer=True) == 3
    with pytest.raises(TypeError, match="k must be an integer >= 1, got 2.5"):
        validate.check_number("k", 2.5, low=1, integer=True)
    assert validate.check_choice("device", "cpu", ["cpu", "cuda"]) == "cpu"
    with pytest.raises(ValueError, match=r"device must be one of \['cpu', 'cuda'\], got 'tpu'"):
        validate.check_choice("device", "tpu", ["cpu", "cuda"])
    with pytest.raises(ValueError, match=r"domains: unknown \['paint'\]"):
        validate.check_choices("domains", ["sketch", "paint"], ["sketch", "painting"])
