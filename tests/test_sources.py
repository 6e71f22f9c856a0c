"""Model sources: a run directory, an OpenCLIP name + pretrained file, local-dir, hf-hub cache.

Nothing downloads: weights are randomly initialised OpenCLIP models saved to files here; the
hub case reads a Hugging Face cache folder prepared on disk with the hub offline.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import open_clip
import pytest
import torch
from PIL import Image
from shapes import SHAPE_CLASSES, SHAPE_HELDOUT

from interp.hooked.runs import load_hooked_model, load_hooked_run
from training.checkpoints import checkpoint_path, save_checkpoint
from training.models import build_clip, write_model_config
from training.sources import open_model

NAME = "dl-test-sources-vit"  # registered with OpenCLIP below, as a user's own config would be
CFG = {
    "embed_dim": 24,
    "vision_cfg": {"image_size": 32, "patch_size": 8, "width": 32, "layers": 2, "head_width": 16},
    "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 16, "heads": 2, "layers": 1},
}
OTHER_STATS = {"mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25], "interpolation": "bilinear",
               "resize_mode": "squash"}


@pytest.fixture(scope="module")
def registered(tmp_path_factory) -> str:
    folder = tmp_path_factory.mktemp("oc-configs")
    (folder / f"{NAME}.json").write_text(json.dumps(CFG))
    open_clip.add_model_config(folder)
    return NAME


@pytest.fixture(scope="module")
def trained(tmp_path_factory, shapes_root) -> tuple[Path, torch.nn.Module]:
    """A run directory (OpenCLIP-format checkpoint) holding one perturbed random model."""
    from test_hooked import perturb

    run = tmp_path_factory.mktemp("runs") / "lso-toy-s0"
    run.mkdir()
    write_model_config(run, CFG)
    torch.manual_seed(0)
    model = perturb(build_clip(CFG), seed=3).eval()
    save_checkpoint(checkpoint_path(run, 1), {"epoch": 1, "name": run.name,
                                              "state_dict": model.state_dict()})
    spec = {"setup": "cg-high", "test_domain": "sketch", "seed": 2, "data_root": str(shapes_root),
            "heldout": list(SHAPE_HELDOUT)}
    (run / "mixture.json").write_text(json.dumps({"name": run.name, "spec": spec}))
    (run / "run.json").write_text(json.dumps({"kind": "clip", "settings": {"seed": 2}}))
    yield run, model
    shutil.rmtree(run.parent, ignore_errors=True)  # CI disks may be small


def image_paths(root: Path, n: int = 4) -> list[str]:
    from training.domainnet import load_index

    return load_index(root, domains=["real"], splits=("test",))["path"].tolist()[:n]


def embed_and_logits(run, paths: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """Hooked embeddings and zero-shot logits of image files, preprocessed as the source says."""
    pixels = torch.from_numpy(np.stack([run.preprocess.decode(p) for p in paths]))
    x = run.preprocess.normalize(pixels)
    head = run.zero_shot_head(list(run.info.classes), templates=["a photo of a {}."])
    run.model.set_head(head)
    with torch.no_grad():
        return run.model(x, return_type="embed"), run.model(x)


def test_run_dir_and_pretrained_file_give_the_same_numbers(registered, trained, shapes_root):
    run_dir, model = trained
    weights = checkpoint_path(run_dir, 1)
    from_run = load_hooked_run(run_dir)
    from_file = load_hooked_model(registered, pretrained=str(weights), data_root=shapes_root,
                                  heldout=list(SHAPE_HELDOUT))
    paths = image_paths(shapes_root)
    embed_run, logits_run = embed_and_logits(from_run, paths)
    embed_file, logits_file = embed_and_logits(from_file, paths)
    assert embed_run.shape == (4, 24) and logits_run.shape == (4, len(SHAPE_CLASSES))
    torch.testing.assert_close(embed_file, embed_run, atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(logits_file, logits_run, atol=1e-6, rtol=1e-6)
    with torch.no_grad():  # and both are OpenCLIP's own forward
        x = from_run.preprocess.normalize(torch.from_numpy(np.stack(
            [from_run.preprocess.decode(p) for p in paths])))
        torch.testing.assert_close(embed_run, model.encode_image(x), atol=1e-5, rtol=1e-5)
    # the same metadata type; a non-run source has no setup, seeds or run directory
    run_info, file_info = from_run.info, from_file.info
    assert (run_info.model, run_info.setup, run_info.seed, run_info.is_run) == (
        run_dir.name, "cg-high", 2, True)
    assert (file_info.model, file_info.kind, file_info.setup, file_info.seed,
            file_info.mixture_seed, file_info.run_dir) == (f"{NAME}/epoch_1", "clip", "", None,
                                                           None, None)
    assert file_info.classes == run_info.classes == SHAPE_CLASSES
    assert file_info.heldout == run_info.heldout == SHAPE_HELDOUT
    assert from_file.meta(model=True) == {"model": f"{NAME}/epoch_1", "run": f"{NAME}/epoch_1",
                                          "setup": None, "test_domain": None, "seed": None,
                                          "epoch": None}
    assert run_info.meta(1, model=True)["model"] == run_dir.name
    assert from_file.checkpoint == weights and from_file.epoch is None
    assert file_info.subset("held-out") == SHAPE_HELDOUT


def test_class_split_comes_from_the_caller(registered, trained, shapes_root):
    run_dir, _ = trained
    weights = str(checkpoint_path(run_dir, 1))
    # default: the root's declared held-out classes; given: folder or display names
    default = open_model(registered, weights, data_root=shapes_root).info
    assert default.heldout == SHAPE_HELDOUT
    given = open_model(registered, weights, data_root=shapes_root, heldout=["wide bar"]).info
    assert given.heldout == ("wide_bar",) and "star" in given.seen
    assert open_model(run_dir, heldout=["circle"]).info.heldout == ("circle",)
    with pytest.raises(ValueError, match=r"held-out classes \['zebra'\]"):
        open_model(registered, weights, data_root=shapes_root, heldout=["zebra"])
    no_root = open_model(registered, weights).info
    with pytest.raises(ValueError, match="no data root .* none was given; pass one"):
        no_root.require_data()


def write_local_dir(folder: Path, model: torch.nn.Module, preprocess: dict | None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    config = {"model_cfg": CFG, **({"preprocess_cfg": preprocess} if preprocess else {})}
    (folder / "open_clip_config.json").write_text(json.dumps(config))
    torch.save(model.state_dict(), folder / "open_clip_pytorch_model.bin")
    return folder


def test_preprocessing_comes_from_openclip(tmp_path, trained):
    from training.imagecache import TensorTransform, decode_image

    _, model = trained
    folder = write_local_dir(tmp_path / "my-clip", model, OTHER_STATS)
    loaded = open_model(f"local-dir:{folder}")
    pre = loaded.preprocess
    assert (pre.mean, pre.std, pre.interpolation, pre.resize_mode, pre.size) == (
        (0.5,) * 3, (0.25,) * 3, "bilinear", "squash", (32, 32))
    assert (loaded.info.mean, loaded.info.std, loaded.info.model) == ((0.5,) * 3, (0.25,) * 3, "my-clip")
    # a non-square image: squash + bilinear differ from our default shortest-side + bicubic
    rng = np.random.default_rng(0)
    image = tmp_path / "wide.png"
    Image.fromarray(rng.integers(0, 256, (30, 50, 3), dtype=np.uint8)).save(image)
    ours = TensorTransform(*_default(), augment=None)(torch.from_numpy(decode_image(image, 32))[None])
    theirs = pre.normalize(torch.from_numpy(pre.decode(image))[None])
    with Image.open(image) as pil:
        openclip = pre.transform()(pil)[None]
    torch.testing.assert_close(theirs, openclip, atol=1e-5, rtol=0)  # OpenCLIP's own transform
    assert (theirs - ours).abs().max() > 0.5  # ... which is not ours
    _, _, reference = open_clip.create_model_and_transforms(f"local-dir:{folder}")
    with Image.open(image) as pil:
        torch.testing.assert_close(theirs, reference(pil)[None], atol=1e-5, rtol=0)
    # the default preprocess config is our default normalisation (so run dirs stay as they were)
    plain = open_model(f"local-dir:{write_local_dir(tmp_path / 'plain', model, None)}").preprocess
    assert (plain.mean, plain.std) == _default()
    torch.testing.assert_close(plain.normalize(torch.from_numpy(plain.decode(image))[None]), ours)


def _default() -> tuple[tuple[float, ...], tuple[float, ...]]:
    from open_clip.transform import PreprocessCfg

    cfg = PreprocessCfg()
    return tuple(cfg.mean), tuple(cfg.std)


def test_hub_cache_is_read_offline(tmp_path, monkeypatch, trained):
    import huggingface_hub.constants

    _, model = trained
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "hub" / "models--someone--my-clip"
    write_local_dir(repo / "snapshots" / commit, model, OTHER_STATS)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    loaded = open_model("hf-hub:someone/my-clip", cache_dir=tmp_path / "hub")
    assert loaded.info.model == "someone/my-clip" and loaded.preprocess.mean == (0.5,) * 3
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(loaded.model.encode_image(x), model.encode_image(x))
    with pytest.raises(ValueError, match="cannot load 'hf-hub:someone/missing'"):
        open_model("hf-hub:someone/missing", cache_dir=tmp_path / "hub")


def test_clear_errors(tmp_path, registered, trained):
    run_dir, _ = trained
    with pytest.raises(ValueError, match="unknown model 'ViT-Q-99'; expected a run directory"):
        open_model("ViT-Q-99", pretrained="openai")
    with pytest.raises(FileNotFoundError, match="neither a run directory"):
        open_model(tmp_path)
    garbage = tmp_path / "weights.pt"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match=rf"cannot load {NAME} with pretrained='.*weights.pt'"):
        open_model(registered, pretrained=str(garbage))
    with pytest.raises(FileNotFoundError, match="pretrained weights file .*missing.pt' does not exist"):
        open_model(registered, pretrained=str(tmp_path / "missing.pt"))
    with pytest.raises(ValueError, match=r"unknown pretrained 'laion9b' for 'RN50'.*'openai'"):
        open_model("RN50", pretrained="laion9b")
    wrong = tmp_path / "other.pt"
    torch.manual_seed(0)
    torch.save(open_clip.CLIP(**{**CFG, "embed_dim": 16}).state_dict(), wrong)
    with pytest.raises(ValueError, match="cannot load .*size mismatch"):
        open_model(registered, pretrained=str(wrong))
    with pytest.raises(ValueError, match="is a run directory: it has its own weights"):
        open_model(run_dir, pretrained="openai")
    with pytest.raises(ValueError, match="epoch=3 applies to run directories only"):
        open_model(registered, epoch=3)
    with pytest.raises(FileNotFoundError, match="open_clip_config.json does not exist"):
        open_model(f"local-dir:{tmp_path}")


def test_a_tower_that_cannot_be_hooked_is_refused(tmp_path):
    folder = tmp_path / "timm-clip"
    folder.mkdir()
    cfg = {**CFG, "vision_cfg": {"timm_model_name": "vit_tiny_patch16_224", "image_size": 32}}
    (folder / "open_clip_config.json").write_text(json.dumps({"model_cfg": cfg}))
    loaded = open_model(f"local-dir:{folder}")  # OpenCLIP itself can run it (random weights)
    assert loaded.info.model == "timm-clip"
    with pytest.raises(TypeError, match="unsupported image tower TimmModel; supported: OpenCLIP's "
                                        "VisionTransformer .* ModifiedResNet"):
        load_hooked_model(f"local-dir:{folder}")


def test_evaluate_source_scores_a_pretrained_file_like_its_run(registered, trained, shapes_root,
                                                               tmp_path):
    from training.evaluate import SOURCE_EVAL_COLUMNS, evaluate_source

    run_dir, _ = trained
    weights = str(checkpoint_path(run_dir, 1))
    templates = ["a photo of a {}."]
    table = evaluate_source(registered, weights, data_root=shapes_root, out=tmp_path,
                            templates=templates, progress=False)
    assert list(table.columns) == list(SOURCE_EVAL_COLUMNS)
    assert set(table["model"]) == {f"{NAME}/epoch_1"} and (tmp_path / "zero_shot.csv").is_file()
    from_run = evaluate_source(run_dir, templates=templates, progress=False)
    key = ["eval_domain", "class_subset", "class_name", "metric"]
    merged = table.merge(from_run[from_run["epoch"] == 1], on=key, suffixes=("", "_run"))
    assert len(merged) == len(table) > 0
    np.testing.assert_allclose(merged["value"], merged["value_run"])
    assert set(from_run["model"]) == {run_dir.name}
    with pytest.raises(ValueError, match="needs a data root"):
        evaluate_source(registered, weights)
