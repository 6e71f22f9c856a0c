"""Evaluation edge cases: re-evaluation merges into the table, the printed line says what it
is, a diverged (non-finite) checkpoint is refused, empty split files, bad devices."""

from __future__ import annotations

import pandas as pd
import pytest
import torch
from conftest import torch_threads

from domainlens.cli import main
from training import checkpoints as ckpt
from training.evaluate import evaluate_run


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    with torch_threads(1):
        yield


def _copy_run(trained_run, tmp_path):
    import shutil

    run = tmp_path / trained_run.name
    shutil.copytree(trained_run, run, ignore=shutil.ignore_patterns("eval"))
    return run


def test_re_evaluation_merges_into_the_table(tmp_path, trained_run, capsys):
    run = _copy_run(trained_run, tmp_path)
    full = evaluate_run(run, epochs=[0, 20], progress=False, figure=False)
    key = ["epoch", "eval_domain", "class_subset", "class_name", "metric"]
    assert main(["eval", str(run), "--epochs", "20", "--quiet"]) == 0
    capsys.readouterr()
    table = pd.read_csv(run / "eval" / "zero_shot.csv", keep_default_na=False)
    assert set(table["epoch"]) == {0, 20}  # used to hold epoch 20 only
    assert len(table) == len(full) and not table.duplicated(key).any()
    pd.testing.assert_frame_equal(
        table[table["epoch"] == 0].reset_index(drop=True),
        full[full["epoch"] == 0].reset_index(drop=True), check_dtype=False)
    # one domain re-scored: the other domain's rows stay
    part = evaluate_run(run, epochs=[20], domains=["real"], progress=False, figure=False)
    assert set(part["epoch"]) == {0, 20} and set(part["eval_domain"]) == {"real", "sketch"}
    assert part.attrs["evaluated_domains"] == ["real"]
    assert len(part) == len(full)
    # a checkpoint rewritten after the evaluation makes its old rows stale: they go
    import os
    import time

    later = time.time_ns() + 10**9
    os.utime(ckpt.checkpoint_path(run, 0), ns=(later, later))
    again = evaluate_run(run, epochs=[20], progress=False, figure=False)
    assert set(again["epoch"]) == {20}


def test_eval_labels_what_it_prints(tmp_path, trained_run, capsys):
    run = _copy_run(trained_run, tmp_path)  # test domain sketch
    assert main(["eval", str(run), "--epochs", "-1", "--domains", "real", "--quiet"]) == 0
    out = capsys.readouterr().out.strip()
    assert "real held-out top-1" not in out  # not presented as the headline
    assert "(epoch 20, held-out top-1 on real 0." in out
    assert out.endswith("not the run's test domain sketch)")
    assert main(["eval", str(run), "--epochs", "-1", "--domains", "sketch", "real",
                 "--quiet"]) == 0
    out = capsys.readouterr().out.strip()
    assert "(epoch 20, sketch held-out top-1 0." in out and out.endswith("the run's test domain)")


def test_eval_refuses_a_nonfinite_checkpoint(tmp_path, trained_run, capsys):
    run = _copy_run(trained_run, tmp_path)
    path = ckpt.checkpoint_path(run, 20)
    payload = torch.load(path, map_location="cpu", weights_only=False)
    first = next(k for k, v in payload["state_dict"].items() if v.is_floating_point())
    payload["state_dict"][first].view(-1)[0] = float("nan")
    torch.save(payload, path)
    with pytest.raises(ValueError, match=rf"checkpoint .*epoch_20.pt holds non-finite weights "
                                         rf"\({first}\): a diverged run cannot be scored"):
        evaluate_run(run, epochs=[10, 20], progress=False)
    assert not (run / "eval" / "zero_shot.csv").exists()
    assert main(["eval", str(run), "--epochs", "20", "--quiet"]) == 2
    assert "non-finite weights" in capsys.readouterr().err


def test_eval_on_a_root_with_an_empty_split_file(tmp_path, trained_run, shapes_root):
    import shutil

    root = tmp_path / "root"
    shutil.copytree(shapes_root, root)
    (root / "real_test.txt").write_text("")  # what `data synth --n-test 0` writes
    run = _copy_run(trained_run, tmp_path)
    table = evaluate_run(run, data_root=root, epochs=[20], progress=False, figure=False)
    assert set(table["eval_domain"]) == {"sketch"} and len(table) > 0


def test_eval_bad_device_is_one_line(trained_run, capsys):
    assert main(["eval", str(trained_run), "--device", "tpu", "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == ("domainlens eval: error: device must be one of ['auto', 'cpu', 'cuda', "
                   "'cuda:<index>', 'mps'], got 'tpu'")
