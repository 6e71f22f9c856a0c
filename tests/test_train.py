"""The CLIP trainer, the supervised baseline, checkpoints, resume, DDP and the image cache."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import open_clip
import pandas as pd
import pytest
import torch
from conftest import torch_threads
from PIL import Image

from domainlens.cli import main
from training import checkpoints as ckpt
from training import train as train_mod
from training.imagecache import AugmentConfig, TensorTransform, decode_image, load_images
from training.models import create_clip, list_presets, resolve_model_config, tokenizer_for
from training.supervised import train_supervised
from training.train import TrainConfig, train_clip

REPO = Path(__file__).resolve().parents[1]


def small_config(mixture, model, out, **overrides) -> TrainConfig:
    """2 epochs of 7 steps (batch 32) on the shapes mixture."""
    kwargs = dict(mixture=mixture, out=out, model=str(model), epochs=2, batch_size=32,
                  progress=False, log_every=1)
    kwargs.update(overrides)
    return TrainConfig(**kwargs)


def state_dict_of(path: Path) -> dict[str, torch.Tensor]:
    return torch.load(path, map_location="cpu", weights_only=True)["state_dict"]


def assert_same_weights(a: Path, b: Path, atol: float = 0.0) -> None:
    sa, sb = state_dict_of(a), state_dict_of(b)
    assert sa.keys() == sb.keys()
    for key in sa:
        if atol == 0.0:
            assert torch.equal(sa[key], sb[key]), key
        else:
            torch.testing.assert_close(sa[key], sb[key], atol=atol, rtol=1e-3, msg=key)


def log_losses(run: Path) -> pd.DataFrame:
    return pd.read_csv(run / "train_log.csv")[["step", "loss", "lr", "logit_scale"]]


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny models on a shared 2-core machine: one intra-op thread is faster and steadier."""
    with torch_threads(1):
        yield


@pytest.fixture(scope="module")
def reference_run(tmp_path_factory, shapes_mixture, tiny_vit_json) -> Path:
    """An uninterrupted 2-epoch tiny-ViT run, augmentation on."""
    return train_clip(small_config(shapes_mixture, tiny_vit_json,
                                   tmp_path_factory.mktemp("ref") / "ref"))


# ----------------------------------------------------------------------------------------------
# models


def test_presets_are_openclip_configs_that_build():
    assert {"tiny-vit", "tiny-rn"} <= set(list_presets())
    for name in ("tiny-vit", "tiny-rn"):
        model, cfg = create_clip(name)
        assert isinstance(model, open_clip.CLIP)
        size = cfg["vision_cfg"]["image_size"]
        tokens = tokenizer_for(cfg)(["a sketch of a cat.", "a photo of a dog."])
        assert tokens.shape == (2, cfg["text_cfg"]["context_length"])
        with torch.no_grad():
            assert model.encode_image(torch.zeros(2, 3, size, size)).shape == (2, cfg["embed_dim"])
            assert model.encode_text(tokens).shape == (2, cfg["embed_dim"])


def test_openclip_names_and_config_files_resolve(tiny_vit_json):
    assert resolve_model_config("RN50")["vision_cfg"]["layers"] == [3, 4, 6, 3]
    assert resolve_model_config(str(tiny_vit_json))["embed_dim"] == 32


def test_unknown_model_name_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown model 'RN51'") as info:
        resolve_model_config("RN51")
    assert "tiny-vit" in str(info.value) and "open_clip.list_models()" in str(info.value)


# ----------------------------------------------------------------------------------------------
# training


def test_loss_decreases_on_learnable_mixture(trained_run):
    log = pd.read_csv(trained_run / "train_log.csv")
    assert list(log.columns) == list(train_mod.LOG_COLUMNS)
    assert log["step"].tolist() == list(range(1, 141))
    first, last = log["loss"].head(10).mean(), log["loss"].tail(10).mean()
    assert last < first - 0.8, (first, last)
    assert (log["logit_scale"] <= 100.0 + 1e-3).all()
    assert log["lr"].max() == pytest.approx(3e-3, rel=1e-3)  # warmup reaches the peak
    assert log["lr"].iloc[-1] < 1e-5  # cosine decays to ~0


def test_run_directory_layout(trained_run, shapes_mixture):
    found = ckpt.list_checkpoints(trained_run)
    assert list(found) == list(range(21))  # epoch 0 (initialisation) .. 20
    assert not [p for p in (trained_run / "checkpoints").iterdir() if "tmp" in p.name]
    latest = torch.load(found[20], weights_only=True)
    assert {"epoch", "name", "state_dict", "optimizer", "rng", "scheduler"} <= set(latest)
    assert latest["epoch"] == 20 and latest["name"] == trained_run.name
    older = torch.load(found[3], weights_only=True)
    assert older["epoch"] == 3 and "optimizer" not in older  # resume state: newest only
    manifest = json.loads((trained_run / "mixture.json").read_text())
    assert manifest["tsv"] == str(shapes_mixture.resolve())
    assert manifest["spec"]["test_domain"] == "sketch"
    info = json.loads((trained_run / "run.json").read_text())
    assert info["kind"] == "clip" and info["settings"]["seed"] == 0
    config = json.loads((trained_run / "model_config.json").read_text())
    assert json.loads((trained_run / "open_clip_config.json").read_text())["model_cfg"] == config


def test_checkpoint_round_trip_through_openclip_loader(trained_run, shapes_root):
    path = ckpt.checkpoint_path(trained_run, 20)
    theirs = open_clip.create_model(f"local-dir:{trained_run}")
    open_clip.load_checkpoint(theirs, str(path))
    theirs.eval()
    ours = ckpt.load_run_model(trained_run, 20).model
    images = torch.randn(4, 3, 32, 32)
    tokens = tokenizer_for(json.loads((trained_run / "model_config.json").read_text()))(
        ["a photo of a circle.", "a sketch of a star.", "a cross", "wide bar"])
    with torch.no_grad():
        a, b = theirs(images, tokens), ours(images, tokens)
    for x, y in zip(a, b, strict=True):
        assert torch.equal(x, y)
    with torch.no_grad():  # and it is not the initialisation
        init = ckpt.load_run_model(trained_run, 0).model
        assert not torch.equal(init.encode_image(images), ours.encode_image(images))


def test_resume_after_crash_equals_uninterrupted(tmp_path, monkeypatch, reference_run,
                                                 shapes_mixture, tiny_vit_json):
    config = small_config(shapes_mixture, tiny_vit_json, tmp_path / "run")
    real_lr = train_mod.cosine_lr

    def crash_mid_epoch_two(step, *args):
        if step == 10:  # epoch 2 holds steps 7..13
            raise RuntimeError("simulated crash")
        return real_lr(step, *args)

    monkeypatch.setattr(train_mod, "cosine_lr", crash_mid_epoch_two)
    with pytest.raises(RuntimeError, match="simulated crash"):
        train_clip(config)
    assert list(ckpt.list_checkpoints(config.out)) == [0, 1]
    monkeypatch.undo()
    train_clip(config)  # the same command again: continues from epoch 1
    assert list(ckpt.list_checkpoints(config.out)) == [0, 1, 2]
    assert_same_weights(ckpt.checkpoint_path(config.out, 2),
                        ckpt.checkpoint_path(reference_run, 2))
    pd.testing.assert_frame_equal(log_losses(config.out), log_losses(reference_run))


def test_stop_and_continue_equals_uninterrupted(tmp_path, reference_run, shapes_mixture,
                                                tiny_vit_json):
    out = tmp_path / "run"
    train_clip(small_config(shapes_mixture, tiny_vit_json, out, stop_after_epoch=1))
    assert list(ckpt.list_checkpoints(out)) == [0, 1]
    train_clip(small_config(shapes_mixture, tiny_vit_json, out))
    assert_same_weights(ckpt.checkpoint_path(out, 2), ckpt.checkpoint_path(reference_run, 2))
    # a finished run re-run is a no-op
    before = ckpt.checkpoint_path(out, 2).stat().st_mtime_ns
    train_clip(small_config(shapes_mixture, tiny_vit_json, out))
    assert ckpt.checkpoint_path(out, 2).stat().st_mtime_ns == before


def test_seed_changes_the_run(tmp_path, reference_run, shapes_mixture, tiny_vit_json):
    out = train_clip(small_config(shapes_mixture, tiny_vit_json, tmp_path / "s1", seed=1,
                                  epochs=2, stop_after_epoch=0))
    a = state_dict_of(ckpt.checkpoint_path(out, 0))
    b = state_dict_of(ckpt.checkpoint_path(reference_run, 0))
    assert not torch.equal(a["visual.conv1.weight"], b["visual.conv1.weight"])


def test_resuming_with_other_settings_is_refused(tmp_path, shapes_mixture, tiny_vit_json):
    out = tmp_path / "run"
    train_clip(small_config(shapes_mixture, tiny_vit_json, out, stop_after_epoch=0))
    with pytest.raises(ValueError, match=r"other settings \(lr: 0.001 -> 0.002"):
        train_clip(small_config(shapes_mixture, tiny_vit_json, out, lr=2e-3))


def test_ddp_two_processes_match_single_process(tmp_path, reference_run, shapes_mixture,
                                                tiny_vit_json):
    out = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
        "-m", "domainlens", "train", "--mixture", str(shapes_mixture), "--model",
        str(tiny_vit_json), "--epochs", "2", "--batch-size", "32", "--log-every", "1",
        "--out", str(out), "--quiet",
    ]
    result = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert list(ckpt.list_checkpoints(out)) == [0, 1, 2]
    assert_same_weights(ckpt.checkpoint_path(out, 0), ckpt.checkpoint_path(reference_run, 0))
    assert_same_weights(ckpt.checkpoint_path(out, 2), ckpt.checkpoint_path(reference_run, 2),
                        atol=1e-4)
    ours, ref = log_losses(out), log_losses(reference_run)
    assert ours["step"].tolist() == ref["step"].tolist()
    np.testing.assert_allclose(ours["loss"], ref["loss"], rtol=1e-4)


# ----------------------------------------------------------------------------------------------
# supervised baseline


def test_supervised_baseline_learns_and_is_seeded(tmp_path, shapes_mixture, tiny_rn_json,
                                                  trained_run):
    def run(name, seed, **kw):
        return train_supervised(small_config(shapes_mixture, tiny_rn_json, tmp_path / name,
                                             seed=seed, lr=0.05, **kw))

    a = run("a", 0, epochs=8)
    info = json.loads((a / "run.json").read_text())
    assert info["kind"] == "supervised" and info["num_classes"] == 6
    assert info["settings"]["optimizer"] == "sgd"
    log = pd.read_csv(a / "train_log.csv")
    assert log["loss"].tail(7).mean() < 0.5 * log["loss"].head(7).mean()
    loaded = ckpt.load_run_model(a)
    assert loaded.kind == "supervised" and loaded.epoch == 8
    assert loaded.model(torch.zeros(2, 3, 32, 32)).shape == (2, 6)
    # seed 0 is seeded: the same seed gives the same initialisation, another seed does not
    b = run("b", 0, epochs=8, stop_after_epoch=0)
    c = run("c", 1, epochs=8, stop_after_epoch=0)
    assert_same_weights(ckpt.checkpoint_path(a, 0), ckpt.checkpoint_path(b, 0))
    with pytest.raises(AssertionError):
        assert_same_weights(ckpt.checkpoint_path(a, 0), ckpt.checkpoint_path(c, 0))
    # its image tower starts where the CLIP run with the same seed and config starts
    sup, clip = state_dict_of(ckpt.checkpoint_path(a, 0)), state_dict_of(
        ckpt.checkpoint_path(trained_run, 0))
    visual = [k for k in sup if k.startswith("visual.")]
    assert visual and all(torch.equal(sup[k], clip[k]) for k in visual)


def test_supervised_needs_labels(tmp_path, shapes_mixture, tiny_rn_json):
    tsv = tmp_path / "nolabels.tsv"
    pd.read_csv(shapes_mixture, sep="\t")[["filepath", "title"]].to_csv(tsv, sep="\t",
                                                                        index=False)
    with pytest.raises(ValueError, match="no 'label' column"):
        train_supervised(small_config(tsv, tiny_rn_json, tmp_path / "run"))


# ----------------------------------------------------------------------------------------------
# bad input


@pytest.fixture(scope="module")
def one_epoch_run(tmp_path_factory, shapes_mixture, tiny_vit_json) -> Path:
    return train_clip(small_config(shapes_mixture, tiny_vit_json,
                                   tmp_path_factory.mktemp("one") / "one", epochs=1))


@pytest.mark.parametrize("content, message", [
    (None, "does not exist"),
    ("", "is empty"),
    ("filepath\ttitle\tdomain\tlabel\n", "has a header but no rows"),
    ("path\tcaption\n/x.png\ta cat\n", r"lacks column\(s\) \['filepath', 'title'\]"),
])
def test_bad_mixture_is_a_clear_cli_error(tmp_path, capsys, tiny_vit_json, content, message):
    tsv = tmp_path / "mix.tsv"
    if content is not None:
        tsv.write_text(content)
    code = main(["train", "--mixture", str(tsv), "--model", str(tiny_vit_json),
                 "--out", str(tmp_path / "run"), "--quiet"])
    assert code == 2
    err = capsys.readouterr().err
    assert "domainlens train: error:" in err and str(tsv) in err
    assert re.search(message, err)
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_unknown_model_is_a_clear_cli_error(tmp_path, capsys, shapes_mixture):
    code = main(["train", "--mixture", str(shapes_mixture), "--model", "tiny-vitt",
                 "--out", str(tmp_path / "run"), "--quiet"])
    assert code == 2
    err = capsys.readouterr().err
    assert "unknown model 'tiny-vitt'; presets: [" in err
    for preset in ("micro-vit", "tiny-rn", "tiny-rn-32", "tiny-vit"):
        assert f"'{preset}'" in err


def test_missing_image_is_named(tmp_path, shapes_mixture, tiny_vit_json):
    rows = pd.read_csv(shapes_mixture, sep="\t")
    rows.loc[3, "filepath"] = str(tmp_path / "gone.png")
    tsv = tmp_path / "mix.tsv"
    rows.to_csv(tsv, sep="\t", index=False)
    with pytest.raises(FileNotFoundError, match="gone.png"):
        train_clip(small_config(tsv, tiny_vit_json, tmp_path / "run"))


def test_checkpoint_not_matching_config_is_a_clear_error(tmp_path, one_epoch_run):
    run = tmp_path / "run"
    shutil.copytree(one_epoch_run, run)
    cfg = json.loads((run / "model_config.json").read_text())
    cfg["vision_cfg"]["width"] = 64
    (run / "model_config.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match=r"does not match its model_config.json: 32 shape "
                                         r"mismatch\(es\), e.g. visual.class_embedding: "
                                         r"checkpoint \(32,\) vs config \(64,\)"):
        ckpt.load_run_model(run, 1)


def test_unreadable_checkpoint_is_a_clear_error(tmp_path, one_epoch_run):
    run = tmp_path / "run"
    shutil.copytree(one_epoch_run, run)
    path = ckpt.checkpoint_path(run, 1)
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(ValueError, match=f"cannot read checkpoint {path}"):
        ckpt.load_run_model(run, 1)


def test_out_of_range_epoch_is_a_clear_error(one_epoch_run):
    with pytest.raises(ValueError, match=r"epoch\(s\) \[5\] out of range .* epochs \[0, 1\]"):
        ckpt.load_run_model(one_epoch_run, 5)
    assert ckpt.load_run_model(one_epoch_run, -1).epoch == 1


def test_failing_save_leaves_no_truncated_checkpoint(tmp_path, monkeypatch, shapes_mixture,
                                                     tiny_vit_json):
    real_save, calls = torch.save, []

    def disk_full(obj, handle, *args, **kwargs):
        calls.append(1)
        if len(calls) == 2:  # the epoch-1 checkpoint
            handle.write(b"PK\x03\x04 partial")
            raise OSError(28, "No space left on device")
        return real_save(obj, handle, *args, **kwargs)

    monkeypatch.setattr(torch, "save", disk_full)
    out = tmp_path / "run"
    with pytest.raises(OSError, match="(?i)no space left"):
        train_clip(small_config(shapes_mixture, tiny_vit_json, out))
    files = sorted(p.name for p in (out / "checkpoints").iterdir())
    assert files == ["epoch_0.pt"]  # no epoch_1.pt, no temp file
    monkeypatch.undo()
    assert ckpt.load_run_model(out, 0).epoch == 0
    train_clip(small_config(shapes_mixture, tiny_vit_json, out))  # resumes from epoch 0
    assert list(ckpt.list_checkpoints(out)) == [0, 1, 2]


def test_invalid_settings_are_refused(tmp_path, shapes_mixture, tiny_vit_json):
    with pytest.raises(ValueError, match="epochs must be an integer >= 1"):
        train_clip(small_config(shapes_mixture, tiny_vit_json, tmp_path / "a", epochs=0))
    with pytest.raises(ValueError, match="fewer than one batch of 1024"):
        train_clip(small_config(shapes_mixture, tiny_vit_json, tmp_path / "b", batch_size=1024))


# ----------------------------------------------------------------------------------------------
# image cache and tensor augmentation


def test_decoded_pixels_match_openclip_eval_transform(tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / "wide.png"
    Image.fromarray(rng.integers(0, 256, (41, 57, 3), dtype=np.uint8)).save(path)
    ours = TensorTransform(open_clip.OPENAI_DATASET_MEAN, open_clip.OPENAI_DATASET_STD)(
        torch.from_numpy(decode_image(path, 32))[None])[0]
    theirs = open_clip.image_transform(32, is_train=False)(Image.open(path))
    torch.testing.assert_close(ours, theirs, atol=1e-6, rtol=0)


def test_image_cache_errors_name_the_files(tmp_path):
    good = tmp_path / "good.png"
    Image.new("RGB", (8, 8), (1, 2, 3)).save(good)
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n not really")
    with pytest.raises(FileNotFoundError, match="missing.png"):
        load_images([str(good), str(tmp_path / "missing.png")], 8, progress=False)
    with pytest.raises(ValueError, match=r"(?s)cannot decode 1 image\(s\):.*bad.png: UnidentifiedImageError"):
        load_images([str(good), str(bad)], 8, progress=False)


def test_memmap_cache_is_reused(tmp_path, shapes_mixture):
    paths = pd.read_csv(shapes_mixture, sep="\t")["filepath"].tolist()[:20]
    in_memory = load_images(paths, 32, progress=False)
    first = load_images(paths, 32, cache_dir=tmp_path, progress=False)
    files = list(tmp_path.glob("*.u8"))
    assert len(files) == 1 and torch.equal(first, in_memory)
    again = load_images(paths, 32, cache_dir=tmp_path, progress=False)
    assert torch.equal(again, in_memory) and list(tmp_path.glob("*.u8")) == files
    assert in_memory.dtype == torch.uint8 and in_memory.shape == (20, 3, 32, 32)


def test_tensor_augmentation_is_seeded_and_geometric():
    images = torch.randint(0, 256, (4, 3, 16, 16), dtype=torch.uint8)
    transform = TensorTransform((0.5,) * 3, (0.25,) * 3, AugmentConfig())
    p1 = transform.sample(4, torch.Generator().manual_seed(7))
    p2 = transform.sample(4, torch.Generator().manual_seed(7))
    assert torch.equal(p1, p2) and p1.shape == (4, 5)
    plain = transform(images)
    identity = torch.tensor([[1.0, 1.0, 0.0, 0.0, 1.0]] * 4, dtype=torch.float64)
    torch.testing.assert_close(transform(images, identity), plain, atol=1e-5, rtol=0)
    flip = identity.clone()
    flip[:, 4] = -1
    torch.testing.assert_close(transform(images, flip), plain.flip(-1), atol=1e-5, rtol=0)
    assert not torch.allclose(transform(images, p1), plain)


# ----------------------------------------------------------------------------------------------
# divergence, bad settings, foreign or stale files: one clear line, nothing bad saved


def test_nonfinite_weight_after_the_last_step_is_never_saved(tmp_path, monkeypatch,
                                                             shapes_mixture, tiny_vit_json):
    """The last step's update is checked although no later loss would show it."""
    real_after_step, calls = train_mod.ClipTask.after_step, []

    def poison_last_step(self, model):
        real_after_step(self, model)
        calls.append(1)
        if len(calls) == 7:  # the last of 7 steps of the only epoch
            with torch.no_grad():
                model.visual.proj.view(-1)[0] = float("nan")

    monkeypatch.setattr(train_mod.ClipTask, "after_step", poison_last_step)
    out = tmp_path / "run"
    with pytest.raises(train_mod.TrainingDiverged,
                       match=r"stopped at epoch 1, step 7: non-finite weights in visual.proj; "
                             r"the last good checkpoint .*epoch_0.pt is kept"):
        train_clip(small_config(shapes_mixture, tiny_vit_json, out, epochs=1))
    assert list(ckpt.list_checkpoints(out)) == [0]
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["epoch_0.pt"]


def _nan_loss_at_step(monkeypatch, bad_step: int) -> None:
    """Make the CLIP loss NaN at the bad_step-th training step (1-based), finite elsewhere."""
    real_make_loss, steps = train_mod.ClipTask.make_loss, []

    def make_loss(self, rank, world_size):
        loss = real_make_loss(self, rank, world_size)

        def wrapped(model, images, tokens):
            steps.append(1)
            value = loss(model, images, tokens)
            return value * float("nan") if len(steps) == bad_step else value
        return wrapped

    monkeypatch.setattr(train_mod.ClipTask, "make_loss", make_loss)


def test_nan_loss_stops_before_it_updates_the_weights(tmp_path, monkeypatch, shapes_mixture,
                                                      tiny_vit_json, capsys):
    _nan_loss_at_step(monkeypatch, 10)
    out = tmp_path / "run"
    code = main(["train", "--mixture", str(shapes_mixture), "--model", str(tiny_vit_json),
                 "--out", str(out), "--epochs", "2", "--batch-size", "32", "--quiet"])
    err = capsys.readouterr().err
    assert code == 1
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert "stopped at epoch 2, step 10: the loss is nan" in err
    assert "epoch_1.pt is kept" in err and str(out) in err
    assert list(ckpt.list_checkpoints(out)) == [0, 1]
    for tensor in state_dict_of(ckpt.checkpoint_path(out, 1)).values():
        assert torch.isfinite(tensor).all()


@pytest.mark.parametrize("option, value, message", [
    ("--lr", "inf", "lr must be a finite number > 0, got inf"),
    ("--lr", "nan", "lr must be a finite number > 0, got nan"),
    ("--log-every", "0", "log_every must be an integer >= 1, got 0"),
    ("--device", "tpu", "device must be one of ['auto', 'cpu', 'cuda', 'cuda:<index>', 'mps'], "
                        "got 'tpu'"),
    ("--wd", "-1", "wd must be a finite number >= 0, got -1.0"),
    ("--batch-size", "1", "batch_size must be an integer >= 2, got 1"),
    ("--warmup-steps", "-2", "warmup_steps must be an integer >= 0, got -2"),
])
def test_bad_setting_is_one_line_before_any_work(tmp_path, capsys, shapes_mixture,
                                                 tiny_vit_json, option, value, message):
    out = tmp_path / "run"
    code = main(["train", "--mixture", str(shapes_mixture), "--model", str(tiny_vit_json),
                 "--out", str(out), "--quiet", option, value])
    err = capsys.readouterr().err
    assert code == 2
    assert err.strip() == f"domainlens train: error: {message}"
    assert not out.exists()


def test_unavailable_gpu_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ValueError, match="device 'cuda' is not available"):
        train_mod.pick_device("cuda")
    assert train_mod.pick_device("auto") == torch.device("cpu")


def test_stale_temp_files_of_a_killed_run_are_removed(tmp_path, one_epoch_run, shapes_mixture,
                                                      tiny_vit_json):
    run = tmp_path / "one"
    shutil.copytree(one_epoch_run, run)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = [run / "checkpoints" / f".epoch_1.pt.tmp-{dead.pid}", run / f".run.json.tmp-{dead.pid}"]
    mine = run / "checkpoints" / f".epoch_2.pt.tmp-{os.getpid()}"  # a live writer's: kept
    for path in (*stale, mine):
        path.write_bytes(b"partial")
    train_clip(small_config(shapes_mixture, tiny_vit_json, run, epochs=1))  # finished: returns
    assert not any(p.exists() for p in stale)
    assert mine.exists()


def test_out_into_a_foreign_directory_is_refused(tmp_path, capsys, shapes_mixture,
                                                 tiny_vit_json):
    out = tmp_path / "photos"
    out.mkdir()
    (out / "holiday.jpg").write_bytes(b"x")
    code = main(["train", "--mixture", str(shapes_mixture), "--model", str(tiny_vit_json),
                 "--out", str(out), "--quiet"])
    err = capsys.readouterr().err
    assert code == 2
    assert f"{out} is not empty and holds no training run" in err and "holiday.jpg" in err
    assert sorted(p.name for p in out.iterdir()) == ["holiday.jpg"]
    # an empty folder, or one holding only the pipeline's step marker, is fine
    marked = tmp_path / "marked"
    marked.mkdir()
    (marked / "pipeline_step.key").write_text("k")
    train_clip(small_config(shapes_mixture, tiny_vit_json, marked, stop_after_epoch=0))
    assert list(ckpt.list_checkpoints(marked)) == [0]


def test_mixture_edited_after_its_manifest_is_refused_unless_accepted(tmp_path, shapes_mixture,
                                                                      tiny_vit_json):
    tsv = tmp_path / "toy.tsv"
    lines = shapes_mixture.read_text().splitlines(keepends=True)
    tsv.write_text("".join(lines[:-1]))  # one row dropped by hand
    shutil.copy(shapes_mixture.with_suffix(".json"), tsv.with_suffix(".json"))
    with pytest.raises(ValueError, match=r"toy.tsv was changed after its manifest was written"
                                         r".*--accept-edited-mixture"):
        train_clip(small_config(tsv, tiny_vit_json, tmp_path / "a", stop_after_epoch=0))
    assert not (tmp_path / "a").exists()
    with pytest.warns(UserWarning, match="changed after its manifest"):
        train_clip(small_config(tsv, tiny_vit_json, tmp_path / "b", stop_after_epoch=0,
                                accept_edited_mixture=True))
    assert list(ckpt.list_checkpoints(tmp_path / "b")) == [0]


def test_unwritable_output_is_one_line_naming_the_path(tmp_path, capsys, monkeypatch,
                                                       shapes_mixture, tiny_vit_json):
    # Tests run as root, so chmod cannot make a folder read-only: an output path below a
    # regular file, and a rename that fails with EROFS, stand in for it.
    blocker = tmp_path / "file"
    blocker.write_text("x")
    argv = ["train", "--mixture", str(shapes_mixture), "--model", str(tiny_vit_json),
            "--epochs", "1", "--batch-size", "32", "--quiet"]
    assert main([*argv, "--out", str(blocker / "run")]) == 2
    assert capsys.readouterr().err.strip() == (f"domainlens train: error: output directory "
                                               f"{blocker / 'run'} cannot be made: {blocker} "
                                               "is a file")

    import errno

    real_replace = os.replace

    def read_only(src, dst, *args, **kwargs):
        if str(dst).endswith("model_config.json"):
            raise OSError(errno.EROFS, "Read-only file system")
        return real_replace(src, dst, *args, **kwargs)

    monkeypatch.setattr(os, "replace", read_only)
    out = tmp_path / "run"
    assert main([*argv, "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert err.strip() == (f"domainlens train: error: cannot write {out / 'model_config.json'}: "
                           "permission denied (read-only folder?)")


def test_full_disk_is_one_line_and_keeps_the_last_checkpoint(tmp_path, capsys, monkeypatch,
                                                             shapes_mixture, tiny_vit_json):
    import errno

    real_save, calls = torch.save, []

    def disk_full(obj, handle, *args, **kwargs):
        calls.append(1)
        if len(calls) == 2:  # the epoch-1 checkpoint
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_save(obj, handle, *args, **kwargs)

    monkeypatch.setattr(torch, "save", disk_full)
    out = tmp_path / "run"
    code = main(["train", "--mixture", str(shapes_mixture), "--model", str(tiny_vit_json),
                 "--out", str(out), "--epochs", "1", "--batch-size", "32", "--quiet"])
    err = capsys.readouterr().err
    assert code == 1
    path = ckpt.checkpoint_path(out.resolve(), 1)
    assert err.strip() == f"domainlens train: error: cannot write {path}: no space left on the device"
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["epoch_0.pt"]


def test_short_write_of_a_checkpoint_is_named_not_unexpected_pos(tmp_path, capsys,
                                                                 shapes_mixture, tiny_vit_json):
    """A real failing write (a file-size limit, as a full disk would): torch.save alone says
    "unexpected pos ..."; the trainer's error names the checkpoint and the reason."""
    import resource
    import signal

    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    old_handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    out = tmp_path / "run"
    try:
        resource.setrlimit(resource.RLIMIT_FSIZE, (200_000, hard))  # smaller than a checkpoint
        code = main(["train", "--mixture", str(shapes_mixture), "--model", str(tiny_vit_json),
                     "--out", str(out), "--epochs", "1", "--batch-size", "32", "--quiet"])
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, old_handler)
    err = capsys.readouterr().err
    assert code == 1
    path = ckpt.checkpoint_path(out.resolve(), 0)
    assert err.strip() == f"domainlens train: error: cannot write {path}: File too large"
    assert list((out / "checkpoints").iterdir()) == []  # no partial file, no temp file


# ----------------------------------------------------------------------------------------------
# speed (issue 20): fused AdamW, channels-last ResNet, no per-step sync, precision


def _steps_with(model_json, fused: bool, channels_last: bool, steps: int = 4):
    """``steps`` trainer-style steps on random inputs; returns the model's parameters."""
    from open_clip.loss import ClipLoss

    cfg = resolve_model_config(str(model_json))
    torch.manual_seed(0)
    model = open_clip.CLIP(**cfg)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    config = train_mod.resolved(TrainConfig(mixture="-", out="-", model=str(model_json)),
                                train_mod.ClipTask(), cfg)
    optimizer = train_mod.make_optimizer(
        model, train_mod.replace(config, fused_optimizer=fused, channels_last=channels_last))
    gen = torch.Generator().manual_seed(1)
    size = cfg["vision_cfg"]["image_size"]
    for _ in range(steps):
        x = torch.randn(8, 3, size, size, generator=gen)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        y = torch.randint(0, 400, (8, cfg["text_cfg"]["context_length"]), generator=gen)
        loss = ClipLoss()(*model(x, y)[:3])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_fused_adamw_and_channels_last_match_the_plain_step(tiny_rn_json):
    """Same numbers to float tolerance (not bit-identical: other rounding order)."""
    import copy

    from open_clip.loss import ClipLoss

    cfg = resolve_model_config(str(tiny_rn_json))
    torch.manual_seed(0)
    model = open_clip.CLIP(**cfg)
    x, y = torch.randn(8, 3, 32, 32), torch.randint(0, 400, (8, 16))
    # channels-last: the same gradients
    grads = []
    for channels_last in (False, True):
        m = copy.deepcopy(model)
        if channels_last:
            m = m.to(memory_format=torch.channels_last)
        ClipLoss()(*m(x.contiguous(memory_format=torch.channels_last) if channels_last else x,
                      y)[:3]).backward()
        grads.append({n: p.grad for n, p in m.named_parameters()})
    for name, grad in grads[0].items():  # per tensor, relative to its norm
        if grad.norm() > 1e-6:  # attnpool.k_proj.bias: 0 in exact arithmetic, ~1e-8 here
            error = (grads[1][name] - grad).norm() / grad.norm()
            assert error < 1e-3, (name, float(error))
    # fused AdamW: the same update for the same gradients, step after step
    config = train_mod.resolved(TrainConfig(mixture="-", out="-"), train_mod.ClipTask(), cfg)
    params = []
    for fused in (False, True):
        m = copy.deepcopy(model)
        opt = train_mod.make_optimizer(m, train_mod.replace(config, fused_optimizer=fused))
        assert opt.defaults["fused"] is fused
        for _ in range(3):
            for n, p in m.named_parameters():
                p.grad = grads[0][n].clone()
            opt.step()
        params.append(dict(m.named_parameters()))
    for name, value in params[0].items():
        torch.testing.assert_close(params[1][name], value, atol=1e-7, rtol=1e-6, msg=name)
    # whole trainer steps: Adam divides by |gradient|, so entries whose gradient is ~0
    # (e.g. attention key biases) move by ~lr either way: equal to a fraction of one lr step
    plain = _steps_with(tiny_rn_json, fused=False, channels_last=False)
    for fused, channels_last in ((True, False), (False, True), (True, True)):
        fast = _steps_with(tiny_rn_json, fused=fused, channels_last=channels_last)
        for key in plain:
            torch.testing.assert_close(fast[key], plain[key], atol=5e-4, rtol=0, msg=key)


def test_resnet_speedups_are_on_recorded_and_resume_bit_identical(tmp_path, shapes_mixture,
                                                                  tiny_rn_json):
    ref = train_clip(small_config(shapes_mixture, tiny_rn_json, tmp_path / "ref"))
    settings = json.loads((ref / "run.json").read_text())["settings"]
    assert settings["fused_optimizer"] is True and settings["channels_last"] is True
    assert settings["trim_text"] is True
    assert settings["precision"] == "fp32"
    out = tmp_path / "run"
    train_clip(small_config(shapes_mixture, tiny_rn_json, out, stop_after_epoch=1))
    train_clip(small_config(shapes_mixture, tiny_rn_json, out))
    assert_same_weights(ckpt.checkpoint_path(out, 2), ckpt.checkpoint_path(ref, 2))
    pd.testing.assert_frame_equal(log_losses(out), log_losses(ref))
    # the plain path (--no-fused-optimizer --no-channels-last) trains the same to tolerance
    plain = train_clip(small_config(shapes_mixture, tiny_rn_json, tmp_path / "plain",
                                    fused_optimizer=False, channels_last=False))
    np.testing.assert_allclose(log_losses(plain)["loss"], log_losses(ref)["loss"], rtol=1e-3)
    # resuming with another setting is refused, as for any setting
    with pytest.raises(ValueError, match=r"fused_optimizer: True -> False"):
        train_clip(small_config(shapes_mixture, tiny_rn_json, out, epochs=3,
                                fused_optimizer=False))


def test_run_made_before_the_options_resumes_with_its_old_settings(tmp_path, shapes_mixture,
                                                                   tiny_rn_json):
    legacy = dict(fused_optimizer=False, channels_last=False)
    ref = train_clip(small_config(shapes_mixture, tiny_rn_json, tmp_path / "ref", **legacy))
    out = tmp_path / "old"
    train_clip(small_config(shapes_mixture, tiny_rn_json, out, stop_after_epoch=1, **legacy))
    info = json.loads((out / "run.json").read_text())
    for key in ("precision", "fused_optimizer", "channels_last"):  # as an older version wrote it
        del info["settings"][key]
    (out / "run.json").write_text(json.dumps(info))
    train_clip(small_config(shapes_mixture, tiny_rn_json, out))  # options left unset
    assert json.loads((out / "run.json").read_text())["settings"]["fused_optimizer"] is False
    assert_same_weights(ckpt.checkpoint_path(out, 2), ckpt.checkpoint_path(ref, 2))


def test_no_host_sync_per_step(tmp_path, monkeypatch, shapes_mixture, tiny_vit_json):
    """7 steps, one log row: the loss is read at the log step only, not at every step."""
    calls = []
    real_float, real_int = torch.Tensor.__float__, torch.Tensor.__int__

    def counting(real):
        def method(self):
            calls.append(tuple(self.shape))
            return real(self)
        return method

    monkeypatch.setattr(torch.Tensor, "__float__", counting(real_float))
    monkeypatch.setattr(torch.Tensor, "__int__", counting(real_int))
    monkeypatch.setattr(torch.Tensor, "item", counting(torch.Tensor.item))
    train_clip(small_config(shapes_mixture, tiny_vit_json, tmp_path / "run", epochs=1,
                            log_every=7))
    # the log row (loss, logit scale) and the loss watch's checks (log step, save): a few
    # reads for the whole epoch where the old loop made one per step
    assert len(calls) <= 6, calls


def test_nan_loss_between_log_steps_is_named_and_never_saved(tmp_path, monkeypatch,
                                                             shapes_mixture, tiny_vit_json):
    _nan_loss_at_step(monkeypatch, 9)
    out = tmp_path / "run"
    with pytest.raises(train_mod.TrainingDiverged,
                       match=r"stopped at epoch 2, step 9: the loss is nan; the last good "
                             r"checkpoint .*epoch_1.pt is kept"):
        train_clip(small_config(shapes_mixture, tiny_vit_json, out, log_every=1000))
    assert list(ckpt.list_checkpoints(out)) == [0, 1]
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["epoch_0.pt", "epoch_1.pt"]


def test_bf16_is_an_option_flagged_in_the_run_and_not_the_default(tmp_path, capsys,
                                                                  shapes_mixture, tiny_rn_json):
    from domainlens.config import TrainSection

    assert TrainConfig(mixture="-", out="-").precision == "fp32"
    assert TrainSection().precision == "fp32"
    out = train_clip(small_config(shapes_mixture, tiny_rn_json, tmp_path / "bf16", epochs=1,
                                  precision="bf16"))
    assert json.loads((out / "run.json").read_text())["settings"]["precision"] == "bf16"
    log = pd.read_csv(out / "train_log.csv")
    assert np.isfinite(log["loss"]).all()
    for tensor in state_dict_of(ckpt.checkpoint_path(out, 1)).values():
        assert tensor.dtype != torch.bfloat16  # weights stay float32
    with pytest.raises(ValueError, match=r"other settings \(precision: 'bf16' -> 'fp32'"):
        train_clip(small_config(shapes_mixture, tiny_rn_json, out, epochs=1))
    with pytest.raises(ValueError, match="precision 'fp16' needs a CUDA device"):
        train_clip(small_config(shapes_mixture, tiny_rn_json, tmp_path / "fp16", device="cpu",
                                precision="fp16"))
    with pytest.raises(ValueError, match=r"precision must be one of \['fp32', 'bf16', 'fp16'\]"):
        train_clip(small_config(shapes_mixture, tiny_rn_json, tmp_path / "x", precision="int8"))
    assert not (tmp_path / "fp16").exists() and not (tmp_path / "x").exists()


def test_precision_in_the_experiment_config(tmp_path):
    from domainlens import pipeline
    from domainlens.config import load_config

    path = tmp_path / "c.toml"
    path.write_text("[train]\nprecision = 'fp8'\n")
    with pytest.raises(ValueError, match=r"\[train\] precision must be one of \['fp32', 'bf16', "
                                         r"'fp16'\], got 'fp8'"):
        load_config(path, out=tmp_path / "out")
    path.write_text("[train]\nprecision = 'bf16'\n")
    config = load_config(path, out=tmp_path / "out")
    assert config.train.precision == "bf16"
    from domainlens.layout import RunPlan

    run = RunPlan("sketch", "cg-high", 0, tmp_path / "m.tsv", tmp_path / "run")
    assert pipeline._train_config(config, run, False).precision == "bf16"


# ----------------------------------------------------------------------------------------------
# the text tower on the captions' token prefix (trim_text)


def test_used_token_length_by_hand():
    from training.models import used_token_length

    tokens = torch.tensor([[5, 9, 0, 0, 0], [5, 7, 8, 0, 0]])
    assert used_token_length(tokens) == 3
    assert used_token_length(torch.zeros(2, 4, dtype=torch.long)) == 1


def test_prefix_text_tower_equals_openclip_on_captions(tiny_rn_json):
    """Features and every parameter's gradient equal OpenCLIP's full-context forward."""
    import copy

    from open_clip.loss import ClipLoss

    from training.models import PrefixTextCLIP, encode_text_prefix, used_token_length

    cfg = resolve_model_config(str(tiny_rn_json))
    torch.manual_seed(0)
    model = open_clip.CLIP(**cfg)
    captions = ["a sketch of a light bulb", "a photo of a cat", "quickdraw of the moon", "tree"]
    tokens = tokenizer_for(cfg)(captions)
    length = used_token_length(tokens)
    assert length < tokens.shape[1]
    with torch.no_grad():
        full = model.encode_text(tokens)
        prefix = encode_text_prefix(model, tokens[:, :length])
    torch.testing.assert_close(prefix, full, atol=1e-5, rtol=1e-5)
    x = torch.randn(len(captions), 3, 32, 32)
    grads = []
    for view, ids in ((model, tokens), (PrefixTextCLIP(copy.deepcopy(model)), tokens[:, :length])):
        ClipLoss()(*view(x, ids)[:3]).backward()
        grads.append({n.removeprefix("clip."): p.grad for n, p in view.named_parameters()})
    assert grads[0].keys() == grads[1].keys()
    for name, grad in grads[0].items():
        if grad is None or grad.norm() < 1e-6:
            continue
        error = (grads[1][name] - grad).norm() / grad.norm()
        assert error < 1e-4, (name, float(error))


def test_trim_text_is_recorded_and_trains_like_the_full_context(tmp_path, shapes_mixture,
                                                                 tiny_rn_json):
    trimmed = train_clip(small_config(shapes_mixture, tiny_rn_json, tmp_path / "trim"))
    full = train_clip(small_config(shapes_mixture, tiny_rn_json, tmp_path / "full",
                                   trim_text=False))
    assert json.loads((full / "run.json").read_text())["settings"]["trim_text"] is False
    a, b = log_losses(trimmed), log_losses(full)
    np.testing.assert_allclose(a["loss"].to_numpy(), b["loss"].to_numpy(), rtol=1e-3)


def test_trim_text_refused_for_a_text_tower_without_causal_mask(tmp_path, shapes_mixture,
                                                                tiny_rn_json):
    cfg = json.loads(Path(tiny_rn_json).read_text())
    cfg["text_cfg"]["no_causal_mask"] = True
    bidirectional = tmp_path / "bidirectional.json"
    bidirectional.write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match="trim_text needs a CLIP run"):
        train_clip(small_config(shapes_mixture, bidirectional, tmp_path / "run", trim_text=True))
    run = train_clip(small_config(shapes_mixture, bidirectional, tmp_path / "auto", epochs=1))
    assert json.loads((run / "run.json").read_text())["settings"]["trim_text"] is False
