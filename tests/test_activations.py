"""Pooled activations: pooling, batching, early stop, disk cache, bounded memory; the CLI."""

from __future__ import annotations

import argparse
import gc
import json
import shutil
import weakref

import open_clip
import pandas as pd
import pytest
import torch
from fakedata import make_fake_domainnet

from interp.hooked import hook_image_tower
from interp.hooked.activations import (
    POOLINGS,
    collect_activations,
    collect_domain_activations,
    pool_activation,
    select_per_class,
)
from interp.hooked.base import UnknownSiteError

TEXT_CFG = {"context_length": 8, "vocab_size": 64, "width": 16, "heads": 2, "layers": 1}
VIT = {"image_size": 32, "patch_size": 8, "width": 32, "layers": 2, "head_width": 16, "mlp_ratio": 2.0}
RESNET = {"image_size": 32, "layers": [1, 1, 1, 1], "width": 16, "head_width": 32}


def tiny_tower(vision_cfg: dict, seed: int = 0):
    torch.manual_seed(seed)
    model = open_clip.CLIP(embed_dim=24, vision_cfg=vision_cfg, text_cfg=TEXT_CFG).eval()
    return hook_image_tower(model)


@pytest.fixture(scope="module")
def vit():
    return tiny_tower(VIT)


@pytest.fixture(scope="module")
def resnet():
    return tiny_tower(RESNET)


@pytest.fixture(scope="module")
def images():
    return torch.randn(7, 3, 32, 32, generator=torch.Generator().manual_seed(0))


def test_pool_activation_against_manual_computation():
    x = torch.randn(2, 5, 3)
    torch.testing.assert_close(pool_activation(x, "tokens", "mean"), (x[:, 0] + x[:, 1] + x[:, 2] + x[:, 3] + x[:, 4]) / 5)
    torch.testing.assert_close(pool_activation(x, "tokens", "patch_mean"), (x[:, 1] + x[:, 2] + x[:, 3] + x[:, 4]) / 4)
    torch.testing.assert_close(pool_activation(x, "tokens", "cls"), x[:, 0])
    heads = torch.randn(2, 5, 2, 3)
    torch.testing.assert_close(pool_activation(heads, "heads", "cls"), heads[:, 0].reshape(2, 6))
    torch.testing.assert_close(pool_activation(heads, "heads", "mean"), heads.mean(1).reshape(2, 6))
    pattern = torch.rand(2, 2, 5, 5)
    torch.testing.assert_close(pool_activation(pattern, "pattern", "cls"), pattern[:, :, 0, :].reshape(2, 10))
    fmap = torch.randn(2, 4, 3, 3)
    manual = torch.stack([torch.stack([fmap[b, c].sum() / 9 for c in range(4)]) for b in range(2)])
    torch.testing.assert_close(pool_activation(fmap, "spatial", "mean"), manual)
    vec = torch.randn(2, 6)
    for pooling in POOLINGS:  # per-image layouts have no positions: flattened as they are
        torch.testing.assert_close(pool_activation(vec, "vector", pooling), vec)
        per_head = torch.randn(2, 3, 4)
        torch.testing.assert_close(pool_activation(per_head, "head_vector", pooling), per_head.reshape(2, 12))
        torch.testing.assert_close(pool_activation(per_head, "head_weights", pooling), per_head.reshape(2, 12))
    torch.testing.assert_close(pool_activation(vec, "vector", "cls"), vec)
    with pytest.raises(ValueError, match="convolutional"):
        pool_activation(fmap, "spatial", "cls")
    with pytest.raises(ValueError, match="pooling must be one of"):
        pool_activation(x, "tokens", "max")


@pytest.mark.parametrize("pooling", ["mean", "patch_mean", "cls"])
def test_collected_activations_equal_pooled_cache(vit, images, pooling):
    sites = ["hook_embed", "blocks.0.attn.hook_z", "blocks.1.hook_resid_post", "hook_image_embed"]
    acts = collect_activations(vit, images, sites, pooling=pooling, batch_size=3, progress=False)
    with torch.no_grad():
        _, cache = vit.run_with_cache(images)
    for site in sites:
        full = cache[site]
        if site == "hook_image_embed":
            expected = full
        elif site.endswith("hook_z"):
            tokens = {"mean": full, "patch_mean": full[:, 1:], "cls": full[:, :1]}[pooling]
            expected = tokens.mean(dim=1).reshape(len(images), -1)
        else:
            tokens = {"mean": full, "patch_mean": full[:, 1:], "cls": full[:, :1]}[pooling]
            expected = tokens.mean(dim=1)
        assert acts[site].shape == expected.shape and acts[site].dtype == torch.float32
        torch.testing.assert_close(acts[site], expected, atol=1e-6, rtol=1e-5)


def test_resnet_mean_pooling_and_cls_refused(resnet, images):
    acts = collect_activations(resnet, images, ["layer2.0.hook_out"], batch_size=4, progress=False)
    with torch.no_grad():
        _, cache = resnet.run_with_cache(images)
    torch.testing.assert_close(acts["layer2.0.hook_out"], cache["layer2.0.hook_out"].mean(dim=(2, 3)))
    with pytest.raises(ValueError, match="class token"):
        collect_activations(resnet, images, ["layer2.0.hook_out"], pooling="cls", progress=False)
    with pytest.raises(UnknownSiteError, match="valid sites"):
        collect_activations(resnet, images, ["layer9.0.hook_out"], progress=False)


def test_forward_stops_after_the_last_requested_site(vit, images):
    calls = []
    handle = vit.blocks[1].register_forward_hook(lambda *args: calls.append(1))
    try:
        collect_activations(vit, images, ["blocks.0.hook_resid_post"], batch_size=4, progress=False)
        assert calls == []
        collect_activations(vit, images, ["blocks.1.hook_mlp_out"], batch_size=4, progress=False)
        assert calls == []  # stopped inside block 1, before it returned
        collect_activations(vit, images, ["hook_image_embed"], batch_size=4, progress=False)
        assert len(calls) == 2
    finally:
        handle.remove()
    assert all(not hp.fwd_hooks for hp in vit.hook_dict.values())
    assert not vit.training


def test_disk_cache_hit_returns_identical_values(tmp_path, images):
    model = tiny_tower(VIT, seed=1)
    sites = ["blocks.0.hook_resid_post", "hook_image_embed"]
    first = collect_activations(model, images, sites, cache_dir=tmp_path, progress=False)
    files = list(tmp_path.glob("activations-*.pt"))
    assert len(files) == 1 and not list(tmp_path.glob(".*tmp*"))

    def refuse(*args, **kwargs):
        raise AssertionError("the model ran on a cache hit")

    original = model.embed_image
    model.embed_image = refuse
    try:
        second = collect_activations(model, images, sites[::-1], cache_dir=tmp_path, progress=False)
    finally:
        model.embed_image = original
    for site in sites:
        assert torch.equal(first[site], second[site])
    with torch.no_grad():
        model.blocks[0].mlp.c_fc.weight.add_(1.0)  # new weights: a new cache entry
    collect_activations(model, images, sites, cache_dir=tmp_path, progress=False)
    collect_activations(model, images, sites, pooling="cls", cache_dir=tmp_path, progress=False)
    assert len(list(tmp_path.glob("activations-*.pt"))) == 3

    class Anonymous(torch.utils.data.Dataset):
        def __len__(self):
            return 2

        def __getitem__(self, i):
            return images[i]

    with pytest.raises(ValueError, match="data_key"):
        collect_activations(model, Anonymous(), sites, cache_dir=tmp_path, progress=False)
    keyed = collect_activations(model, Anonymous(), sites, cache_dir=tmp_path, data_key="two", progress=False)
    assert keyed["hook_image_embed"].shape == (2, 24)


def test_memory_is_bounded_by_pooled_outputs(vit):
    """No full activation map outlives its batch: only (N, F) pooled tensors are kept."""
    images = torch.randn(40, 3, 32, 32, generator=torch.Generator().manual_seed(5))
    refs: list[weakref.ref] = []

    def watch(t, hook):
        refs.append(weakref.ref(t))

    sites = ["blocks.0.hook_resid_post", "blocks.1.attn.hook_pattern"]
    with vit.hooks(fwd_hooks=[(s, watch) for s in sites]):
        acts = collect_activations(vit, images, sites, batch_size=8, progress=False)
    gc.collect()
    assert len(refs) == 2 * 5
    assert all(r() is None for r in refs)
    assert {k: tuple(v.shape) for k, v in acts.items()} == {
        "blocks.0.hook_resid_post": (40, 32), "blocks.1.attn.hook_pattern": (40, 2 * 17),
    }


def test_unreadable_images_fail_clearly_and_leave_no_hooks(vit, tmp_path):
    from interp.hooked.images import ImageFileDataset

    good = make_fake_domainnet(tmp_path / "dn")
    paths = sorted(str(p) for p in (good / "clipart").rglob("*.png"))[:3]
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not a png")
    vit.train()
    with pytest.raises(ValueError, match="broken.png"):
        collect_activations(vit, ImageFileDataset([*paths, str(broken)], 32), batch_size=2, progress=False)
    assert vit.training  # mode restored
    vit.eval()
    assert all(not hp.fwd_hooks and not hp._forward_hooks for hp in vit.hook_dict.values())
    with pytest.raises(FileNotFoundError, match="missing.png"):
        ImageFileDataset([str(tmp_path / "missing.png")], 32)[0]


def test_select_per_class_is_seeded_and_local():
    index = pd.DataFrame({"domain": ["a"] * 10 + ["b"] * 4, "class_name": ["x"] * 6 + ["y"] * 4 + ["x"] * 4})
    picked = select_per_class(index, 3, seed=0)
    assert picked.groupby(["domain", "class_name"]).size().to_dict() == {("a", "x"): 3, ("a", "y"): 3, ("b", "x"): 3}
    assert picked.index.equals(select_per_class(index, 3, seed=0).index)
    alone = select_per_class(index[index.domain == "a"], 3, seed=0)
    assert picked[picked.domain == "a"].index.equals(alone.index)
    assert select_per_class(index, None) is index


@pytest.fixture(scope="module")
def fake_root(tmp_path_factory):
    return make_fake_domainnet(tmp_path_factory.mktemp("dn") / "root")


def test_collect_domain_activations_reads_test_splits(vit, fake_root, tmp_path):
    acts = collect_domain_activations(
        vit, fake_root, ["clipart", "painting"], ["hook_image_embed"], max_per_class=1,
        cache_dir=tmp_path, progress=False,
    )
    assert list(acts) == ["clipart", "painting"]
    clipart = acts["clipart"]
    assert len(clipart.index) == 8 and clipart.acts["hook_image_embed"].shape == (8, 24)
    assert set(clipart.labels) == set(clipart.index["class_name"])
    assert "bed" not in set(acts["painting"].labels)  # painting's test split lacks 'bed'
    from interp.hooked.images import ImageFileDataset

    x = ImageFileDataset(clipart.index["path"].tolist()[:2], 32)
    with torch.no_grad():
        torch.testing.assert_close(vit(torch.stack([x[0], x[1]])), clipart.acts["hook_image_embed"][:2])
    with pytest.raises(ValueError, match="no test images"):
        collect_domain_activations(vit, fake_root, ["painting"], classes=["bed"], progress=False)


# ----------------------------------------------------------------------------- CLI
@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, fake_root):
    from training.checkpoints import checkpoint_path, save_checkpoint
    from training.models import build_clip, write_model_config

    cfg = {"embed_dim": 24, "vision_cfg": VIT, "text_cfg": TEXT_CFG}
    run = tmp_path_factory.mktemp("runs") / "lso-cipqrs-nosketchclasses"
    run.mkdir()
    write_model_config(run, cfg)
    torch.manual_seed(0)
    save_checkpoint(checkpoint_path(run, 0), {"epoch": 0, "name": run.name, "state_dict": build_clip(cfg).state_dict(), "optimizer": None})
    spec = {"setup": "cg-high", "test_domain": "sketch", "seed": 0, "data_root": str(fake_root)}
    (run / "mixture.json").write_text(json.dumps({"name": run.name, "spec": spec}))
    # tables' seed is the training seed (run.json), not the mixture's
    (run / "run.json").write_text(json.dumps({"kind": "clip", "settings": {"seed": 1}}))
    yield run
    shutil.rmtree(run.parent, ignore_errors=True)  # CI disks may be small


def cka_command(argv: list[str]) -> int:
    from domainlens.commands import cka as command

    parser = argparse.ArgumentParser()
    command.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["cka", *argv])
    return args.func(args)


def test_cka_command_writes_table_and_figures(run_dir, fake_root, tmp_path, capsys):
    out = tmp_path / "out"
    argv = [str(run_dir), "--data", str(fake_root), "--classes", "seen", "all", "--missing", "intersect",
            "--domains", "clipart", "painting", "sketch", "--out", str(out), "--quiet"]
    assert cka_command(argv) == 0
    full = pd.read_csv(out / "cka.csv")
    assert set(full.reference) == {"none", "init", "class-shuffle"}  # default references
    table = full[full.reference == "none"]
    assert len(table) == 2 * 2 * 4 * 3  # subsets x kernels x layers x pairs
    assert set(table.columns) >= {"run", "setup", "test_domain", "seed", "site", "layer", "domain_a", "domain_b", "class_subset", "kernel", "metric", "value"}
    assert set(table.test_domain) == {"sketch"} and set(table.seed) == {1}
    assert set(table.mixture_seed) == {0}
    assert table.value.notna().all()
    seen = table[(table.class_subset == "seen") & (table.domain_b == "painting")]
    assert set(seen.n_classes) == {5}  # the fake root's 6 seen classes minus painting's missing 'bed'
    for name in ("cka_by_layer.png", "cka_heatmaps_seen_linear.png", "cka_heatmaps_all_rbf.png"):
        assert (out / name).stat().st_size > 1000
    assert "wrote" in capsys.readouterr().out
    assert list((run_dir / "cache" / "activations").glob("activations-*.pt"))
    with pytest.raises(ValueError, match="has no images of requested class"):
        cka_command([*argv[:-1], "--missing", "error", "--quiet"])
    with pytest.raises(ValueError, match="at least 4 classes"):
        cka_command([str(run_dir), "--classes", "held-out", "--out", str(out), "--quiet", "--no-cache"])
