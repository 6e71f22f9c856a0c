"""Hooked OpenCLIP image towers: exact outputs, caches, hooks, heads, nnsight, run loading."""

from __future__ import annotations

import json

import open_clip
import pytest
import torch
from torch.nn import functional as F

from interp.hooked import hook_image_tower
from interp.hooked.base import UnknownSiteError, layer_scale
from interp.hooked.head import ZeroShotHead
from interp.hooked.resnet import HookedResNet
from interp.hooked.vit import HookedViT

TEXT_CFG = {"context_length": 8, "vocab_size": 64, "width": 16, "heads": 2, "layers": 1}
VIT = {"image_size": 32, "patch_size": 8, "width": 32, "layers": 2, "head_width": 16, "mlp_ratio": 2.0}
VIT_VARIANTS = {
    "tok": VIT,
    "layerscale-avg": {**VIT, "ls_init_value": 0.5, "pool_type": "avg", "final_ln_after_pool": True,
                       "no_ln_pre": True},
    "attnpool": {**VIT, "attentional_pool": True, "attn_pooler_queries": 3, "attn_pooler_heads": 2},
}
RESNET = {"image_size": 64, "layers": [2, 1, 1, 1], "width": 16, "head_width": 32}


def perturb(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Move every parameter and BN statistic away from its (partly degenerate) init."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            scale = float(p.std()) if p.numel() > 1 and float(p.std()) > 0 else 0.2
            p.add_(0.5 * scale * torch.randn(p.shape, generator=generator))
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.copy_(0.1 * torch.randn(m.running_mean.shape, generator=generator))
                m.running_var.copy_(0.5 + torch.rand(m.running_var.shape, generator=generator))
    return model


def tiny_clip(vision_cfg: dict, seed: int = 0, embed_dim: int = 24) -> torch.nn.Module:
    torch.manual_seed(seed)
    model = open_clip.CLIP(embed_dim=embed_dim, vision_cfg=vision_cfg, text_cfg=TEXT_CFG)
    return perturb(model, seed).eval()


@pytest.fixture(scope="module")
def vit():
    return tiny_clip(VIT)


@pytest.fixture(scope="module")
def resnet():
    return tiny_clip(RESNET)


@pytest.fixture(scope="module")
def images():
    return torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(1))


@pytest.fixture(scope="module")
def images64():
    return torch.randn(3, 3, 64, 64, generator=torch.Generator().manual_seed(2))


def assert_same_output(got: torch.Tensor, expected: torch.Tensor) -> None:
    """Equal to float32 tolerance, relative to the output's scale."""
    scale = max(1.0, float(expected.abs().max()))
    torch.testing.assert_close(got, expected, atol=1e-5 * scale, rtol=1e-5)


def no_hooks_left(model) -> bool:
    return all(
        not hp.fwd_hooks and not hp.bwd_hooks and not hp._forward_hooks and not hp._backward_hooks
        for hp in model.hook_dict.values()
    )


# ----------------------------------------------------------------------------- exactness
@pytest.mark.parametrize("variant", list(VIT_VARIANTS))
def test_hooked_vit_reproduces_openclip(variant, images):
    model = tiny_clip(VIT_VARIANTS[variant])
    if variant == "layerscale-avg":  # OpenCLIP's in-place LayerScale: x.mul_(gamma)
        for block in model.visual.transformer.resblocks:
            block.ls_1.inplace = block.ls_2.inplace = True
    hooked = hook_image_tower(model)
    assert isinstance(hooked, HookedViT)
    with torch.no_grad():
        expected = model.encode_image(images)
        got = hooked(images)
        _, cache = hooked.run_with_cache(images)
    assert got.shape == expected.shape == (4, 24)
    assert_same_output(got, expected)
    assert_same_output(cache["hook_image_embed"], expected)


@pytest.mark.parametrize("mode", ["eval", "train"])
def test_hooked_resnet_reproduces_openclip(resnet, images64, mode):
    resnet.train(mode == "train")
    try:
        hooked = hook_image_tower(resnet)
        assert isinstance(hooked, HookedResNet) and hooked.training == (mode == "train")
        with torch.no_grad():
            expected = resnet.encode_image(images64)
            got = hooked(images64)
        assert_same_output(got, expected)
    finally:
        resnet.eval()


def test_hooked_tower_shares_parameters_unless_copied(vit, images):
    shared, copied = hook_image_tower(vit), hook_image_tower(vit, copy=True)
    assert shared.blocks[0].attn.in_proj_weight is vit.visual.transformer.resblocks[0].attn.in_proj_weight
    assert copied.blocks[0].attn.in_proj_weight is not vit.visual.transformer.resblocks[0].attn.in_proj_weight
    with torch.no_grad():
        torch.testing.assert_close(copied(images), vit.encode_image(images))


# ----------------------------------------------------------------------------- caches
def test_vit_cache_has_every_site_with_its_shape(vit, images):
    hooked = hook_image_tower(vit)
    with torch.no_grad():
        _, cache = hooked.run_with_cache(images)
    assert set(cache.keys()) == set(hooked.site_names())
    b, t, d, h, dh, m = 4, 17, 32, 2, 16, 64
    expected = {
        "hook_patch_embed": (b, t - 1, d), "hook_embed": (b, t, d),
        "blocks.1.hook_resid_pre": (b, t, d), "blocks.1.attn.hook_q": (b, t, h, dh),
        "blocks.1.attn.hook_k": (b, t, h, dh), "blocks.1.attn.hook_v": (b, t, h, dh),
        "blocks.1.attn.hook_attn_scores": (b, h, t, t), "blocks.1.attn.hook_pattern": (b, h, t, t),
        "blocks.1.attn.hook_z": (b, t, h, dh), "blocks.1.attn.hook_result": (b, t, h, d),
        "blocks.1.hook_attn_out": (b, t, d), "blocks.1.hook_resid_mid": (b, t, d),
        "blocks.1.mlp.hook_pre": (b, t, m), "blocks.1.mlp.hook_post": (b, t, m),
        "blocks.1.hook_mlp_out": (b, t, d), "blocks.1.hook_resid_post": (b, t, d),
        "hook_pooled": (b, d), "hook_image_embed": (b, 24),
    }
    for name, shape in expected.items():
        assert tuple(cache[name].shape) == shape, name
    torch.testing.assert_close(cache["blocks.1.attn.hook_pattern"].sum(-1), torch.ones(b, h, t))
    # TransformerLens-style tuple indexing works on the returned ActivationCache
    torch.testing.assert_close(cache["resid_post", 0], cache["blocks.0.hook_resid_post"])


def test_resnet_cache_has_every_site_with_its_shape(resnet, images64):
    hooked = hook_image_tower(resnet)
    with torch.no_grad():
        _, cache = hooked.run_with_cache(images64)
    assert set(cache.keys()) == set(hooked.site_names())
    expected = {
        "stem.hook_conv1": (3, 8, 32, 32), "stem.hook_out": (3, 16, 16, 16),
        "layer1.0.hook_out": (3, 64, 16, 16), "layer1.1.hook_out": (3, 64, 16, 16),
        "layer2.0.hook_conv2": (3, 32, 16, 16), "layer2.0.hook_conv3": (3, 128, 8, 8),
        "layer4.0.hook_out": (3, 512, 2, 2), "attnpool.hook_in": (3, 5, 512),
        "attnpool.hook_pattern": (3, 16, 5), "attnpool.hook_result": (3, 16, 24),
        "attnpool.hook_out": (3, 24), "hook_image_embed": (3, 24),
    }
    for name, shape in expected.items():
        assert tuple(cache[name].shape) == shape, name


@pytest.mark.parametrize("which", ["vit", "resnet"])
def test_site_names_are_in_forward_order(which, vit, resnet, images, images64):
    hooked = hook_image_tower(vit if which == "vit" else resnet)
    x = images if which == "vit" else images64
    fired: list[str] = []
    with torch.no_grad():
        hooked.run_with_hooks(x, fwd_hooks=[(lambda name: True, lambda t, hook: fired.append(hook.name))])
    assert fired == hooked.site_names()
    assert no_hooks_left(hooked)


def test_resnet_cache_survives_inplace_ops(resnet, images64):
    """Cached values equal an independent recomputation from the cached block input: OpenCLIP's
    ``out += identity`` and ``ReLU(inplace=True)`` would overwrite them."""
    hooked = hook_image_tower(resnet)
    with torch.no_grad():
        _, cache = hooked.run_with_cache(images64)
        block = resnet.visual.layer1[1]
        x = cache["layer1.0.hook_out"].clone()
        conv1 = torch.relu(block.bn1(block.conv1(x)))
        conv3 = block.bn3(block.conv3(torch.relu(block.bn2(block.conv2(conv1)))))
        stem = resnet.visual
        s1 = torch.relu(stem.bn1(stem.conv1(images64)))
    torch.testing.assert_close(cache["layer1.1.hook_conv1"], conv1)
    torch.testing.assert_close(cache["layer1.1.hook_conv3"], conv3)  # before the residual sum
    torch.testing.assert_close(cache["layer1.1.hook_out"], torch.relu(conv3 + x))
    torch.testing.assert_close(cache["stem.hook_conv1"], s1)
    assert (cache["layer1.1.hook_conv3"] < 0).any()  # not ReLU-ed in place


def test_vit_attention_matches_torch_and_heads_sum_to_output(images):
    model = tiny_clip(VIT_VARIANTS["layerscale-avg"])
    hooked = hook_image_tower(model)
    with torch.no_grad():
        _, cache = hooked.run_with_cache(images)
        block = model.visual.transformer.resblocks[1]
        x = block.ln_1(cache["blocks.1.hook_resid_pre"])
        out, weights = block.attn(x, x, x, need_weights=True, average_attn_weights=False)
    torch.testing.assert_close(cache["blocks.1.attn.hook_pattern"], weights, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(cache["blocks.1.hook_attn_out"], out * block.ls_1.gamma, atol=1e-6, rtol=1e-5)
    attn = hooked.blocks[1].attn
    summed = cache["blocks.1.attn.hook_result"].sum(dim=2) + attn.b_O
    torch.testing.assert_close(summed, cache["blocks.1.hook_attn_out"], atol=1e-6, rtol=1e-5)
    mlp = block.mlp
    torch.testing.assert_close(
        cache["blocks.1.hook_mlp_out"],
        block.ls_2.gamma * mlp(block.ln_2(cache["blocks.1.hook_resid_mid"])), atol=1e-6, rtol=1e-5,
    )


def test_resnet_attnpool_heads_sum_to_output(resnet, images64):
    hooked = hook_image_tower(resnet)
    with torch.no_grad():
        _, cache = hooked.run_with_cache(images64)
    summed = cache["attnpool.hook_result"].sum(dim=1) + resnet.visual.attnpool.c_proj.bias
    torch.testing.assert_close(summed, cache["attnpool.hook_out"], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(cache["attnpool.hook_pattern"].sum(-1), torch.ones(3, 16))


# ----------------------------------------------------------------------------- hooks
def test_run_with_hooks_edits_and_cleans_up(vit, images):
    hooked = hook_image_tower(vit)
    with torch.no_grad():
        clean = hooked(images)
        ablated = hooked.run_with_hooks(
            images, fwd_hooks=[("blocks.1.hook_mlp_out", lambda t, hook: torch.zeros_like(t))]
        )
        again = hooked(images)
    assert not torch.allclose(clean, ablated)
    torch.testing.assert_close(again, clean)
    assert no_hooks_left(hooked)


def test_hooks_are_removed_after_an_exception(vit, images):
    hooked = hook_image_tower(vit)
    seen = []
    with pytest.raises(RuntimeError, match="boom"), hooked.hooks(
        fwd_hooks=[("blocks.0.hook_resid_post", lambda t, hook: seen.append(1))]
    ):
        hooked(images)
        assert not no_hooks_left(hooked)
        raise RuntimeError("boom")
    assert seen == [1] and no_hooks_left(hooked)

    def failing(t, hook):
        raise RuntimeError("hook failed")

    with pytest.raises(RuntimeError, match="hook failed"):
        hooked.run_with_hooks(images, fwd_hooks=[("blocks.1.hook_resid_pre", failing)])
    assert no_hooks_left(hooked)
    with pytest.raises(RuntimeError, match="hook failed"), hooked.hooks(
        fwd_hooks=[("hook_embed", failing)]
    ):
        hooked(images)
    assert no_hooks_left(hooked)
    with torch.no_grad():
        torch.testing.assert_close(hooked(images), vit.encode_image(images))


def test_unknown_site_lists_valid_names(vit, images):
    hooked = hook_image_tower(vit)
    for call in (
        lambda: hooked.run_with_cache(images, names_filter=["blocks.7.hook_resid_post"]),
        lambda: hooked.run_with_cache(images, names_filter="blocks.0.hook_resid"),
        lambda: hooked.run_with_hooks(images, fwd_hooks=[("blocks.0.mlp_out", lambda t, hook: None)]),
        lambda: hooked.site_layout("nope"),
    ):
        with pytest.raises(UnknownSiteError) as error:
            call()
        assert "valid sites" in str(error.value) and "blocks.1.hook_resid_post" in str(error.value)
    assert isinstance(UnknownSiteError("x"), ValueError)
    assert no_hooks_left(hooked)


def test_layers_are_ordered_valid_sites(vit, resnet):
    hv, hr = hook_image_tower(vit), hook_image_tower(resnet)
    assert [s.label for s in hv.layers()] == ["input", "block0", "block1", "embed"]
    assert [s.label for s in hr.layers()] == ["stem", "L1.0", "L1.1", "L2.0", "L3.0", "L4.0", "embed"]
    for hooked in (hv, hr):
        names = [s.name for s in hooked.layers()]
        hooked.check_sites(names)
        order = hooked.site_names()
        assert names == sorted(names, key=order.index)


def test_unsupported_towers_are_refused():
    # 'custom' blocks are hooked (see the OpenCLIP coverage test) unless an option normalises
    # the heads jointly
    for option in ("scale_attn", "scale_attn_inner"):
        with pytest.raises(ValueError, match=f"unsupported 'custom' vision block option.*{option}"):
            hook_image_tower(tiny_clip({**VIT, option: True}))
    with pytest.raises(TypeError, match="unsupported image tower"):
        hook_image_tower(torch.nn.Linear(2, 2))
    torch.manual_seed(0)
    timm_clip = open_clip.CLIP(embed_dim=24, text_cfg=TEXT_CFG, vision_cfg={
        "timm_model_name": "vit_tiny_patch16_224", "timm_model_pretrained": False, "image_size": 32})
    with pytest.raises(TypeError, match="unsupported image tower TimmModel.*VisionTransformer.*ModifiedResNet"):
        hook_image_tower(timm_clip)


# ----------------------------------------------------------------------------- head
def test_zero_shot_head_gives_cosine_logits(vit, images):
    texts = torch.randn(5, 24, generator=torch.Generator().manual_seed(3))
    head = ZeroShotHead(texts, class_names=list("abcde"), logit_scale=10.0)
    hooked = hook_image_tower(vit, head=head)
    with torch.no_grad():
        logits, cache = hooked.run_with_cache(images)
        embed = vit.encode_image(images)
    expected = 10.0 * F.cosine_similarity(embed[:, None, :], texts[None, :, :], dim=-1)
    torch.testing.assert_close(logits, expected, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(cache["head.hook_logits"], logits)
    torch.testing.assert_close(hooked(images, return_type="embed"), embed, atol=1e-5, rtol=1e-5)
    assert head.class_index(["c", "a"]) == [2, 0]
    with pytest.raises(ValueError, match="24-d"):
        hook_image_tower(vit, head=ZeroShotHead(torch.randn(3, 7)))
    with pytest.raises(ValueError, match="needs a zero-shot head"):
        hook_image_tower(vit)(images, return_type="logits")


def test_zero_shot_head_from_texts_uses_the_prompt_ensemble(images):
    from training.models import tokenizer_for
    from training.zeroshot import class_text_embeddings

    cfg = {"embed_dim": 24, "vision_cfg": VIT, "text_cfg": {**TEXT_CFG, "vocab_size": 49408}}
    torch.manual_seed(0)
    clip = open_clip.CLIP(**cfg).eval()
    names = ["traffic_light", "axe", "barn"]
    templates = ["a photo of a {}.", "a sketch of the {}."]
    head = ZeroShotHead.from_texts(clip, tokenizer_for(cfg), names, templates=templates)
    expected = class_text_embeddings(clip, tokenizer_for(cfg), ["traffic light", "axe", "barn"], templates)
    torch.testing.assert_close(head.class_embeddings, expected)
    assert head.class_names == tuple(names) and float(head.logit_scale) == 1.0
    hooked = hook_image_tower(clip, head=head)
    with torch.no_grad():
        embed = F.normalize(clip.encode_image(images), dim=-1)
        torch.testing.assert_close(hooked(images), embed @ expected.T, atol=1e-5, rtol=1e-5)


# ----------------------------------------------------------------------------- nnsight
def test_nnsight_trace_and_gradient_match_hooks(vit, images):
    from nnsight import NNsight

    hooked = hook_image_tower(vit)
    wrapped = NNsight(hooked)
    with wrapped.trace(images):
        act = wrapped.blocks[0].hook_resid_post.output.save()
        out = wrapped.output.save()
    _, cache = hooked.run_with_cache(images)
    torch.testing.assert_close(act.detach(), cache["blocks.0.hook_resid_post"])
    torch.testing.assert_close(out.detach(), vit.encode_image(images).detach())

    with wrapped.trace(images):
        act = wrapped.blocks[0].hook_resid_post.output
        metric = wrapped.output[:, 0].sum()
        with metric.backward():
            grad = act.grad.save()

    kept = {}

    def keep(t, hook):
        t.retain_grad()
        kept["act"] = t

    with hooked.hooks(fwd_hooks=[("blocks.0.hook_resid_post", keep)]):
        hooked(images)[:, 0].sum().backward()
    assert grad is not None and grad.shape == (4, 17, 32)
    torch.testing.assert_close(grad, kept["act"].grad)
    assert no_hooks_left(hooked)
    vit.zero_grad(set_to_none=True)


# ----------------------------------------------------------------------------- runs
def test_load_hooked_run(tmp_path, images):
    from interp.hooked.runs import load_hooked_run
    from training.checkpoints import checkpoint_path, save_checkpoint
    from training.models import build_clip, write_model_config

    cfg = {"embed_dim": 24, "vision_cfg": VIT, "text_cfg": {**TEXT_CFG, "vocab_size": 49408}}
    run = tmp_path / "lso-cipqrs-nosketchclasses"
    run.mkdir()
    write_model_config(run, cfg)
    models = {}
    for epoch in (0, 1):
        torch.manual_seed(epoch)
        models[epoch] = perturb(build_clip(cfg), seed=epoch).eval()
        save_checkpoint(checkpoint_path(run, epoch), {
            "epoch": epoch, "name": run.name, "state_dict": models[epoch].state_dict(), "optimizer": None,
        })
    spec = {"setup": "cg-high", "test_domain": "sketch", "seed": 2, "data_root": "/data"}
    (run / "mixture.json").write_text(json.dumps({"name": run.name, "spec": spec}))
    (run / "run.json").write_text(json.dumps({"kind": "clip", "settings": {"seed": 2}}))
    loaded = load_hooked_run(run)
    assert loaded.epoch == 1 and not loaded.model.training
    assert loaded.meta() == {"run": run.name, "setup": "cg-high", "test_domain": "sketch", "seed": 2, "epoch": 1}
    with torch.no_grad():
        torch.testing.assert_close(loaded.model(images), models[1].encode_image(images), atol=1e-5, rtol=1e-5)
        first = load_hooked_run(run, epoch=0)
        torch.testing.assert_close(first.model(images), models[0].encode_image(images), atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="out of range"):
        load_hooked_run(run, epoch=5)
    head = loaded.zero_shot_head(["axe", "traffic_light"], templates=["a {}."])
    assert head.class_embeddings.shape == (2, 24) and head.class_names == ("axe", "traffic_light")
    # the training seed (run.json) and the mixture seed (manifest) are told apart
    (run / "run.json").write_text(json.dumps({"kind": "clip", "settings": {"seed": 5}}))
    reloaded = load_hooked_run(run)
    assert (reloaded.seed, reloaded.mixture_seed, reloaded.meta()["seed"]) == (5, 2, 5)
    assert reloaded.info.run_dir == run and reloaded.mean == loaded.info.mean


# ----------------------------------------------------------------------------- resumed forwards
def _forward_from_every_checkpoint(hooked, images, expected_starts):
    """Check forward_from(site, cache[site]) equals the full forward at every residual
    checkpoint (and from the images); returns the full output and the cache."""
    from interp.interventions.intervene import residual_checkpoints

    expected, cache = hooked.run_with_cache(images)
    starts = [s for s in residual_checkpoints(hooked) if s != "head.hook_logits"]
    assert set(expected_starts) <= set(starts)
    for site in [None, *starts]:
        x = images if site is None else cache[site]
        torch.testing.assert_close(hooked.forward_from(site, x), expected, atol=1e-6, rtol=1e-6)
    return expected, cache


@pytest.mark.parametrize("variant", list(VIT_VARIANTS))
def test_vit_forward_from_every_checkpoint_equals_the_full_forward(variant, images):
    hooked = hook_image_tower(tiny_clip(VIT_VARIANTS[variant]))
    with torch.no_grad():
        expected, cache = _forward_from_every_checkpoint(
            hooked, images, ["blocks.1.hook_resid_post", "hook_embed"])
        if hooked.reads_class_token_only:
            # the last block truncated to its class token: same embedding, and its hook_resid_post
            # sees (B, 1, D) = the class token row of the full block
            seen = {}
            with hooked.hooks(fwd_hooks=[("blocks.1.hook_resid_post", lambda t, hook: seen.update(t=t))]):
                for site in ["hook_embed", "blocks.1.hook_resid_pre", "blocks.0.hook_resid_post",
                             "blocks.1.hook_resid_post"]:
                    out = hooked.forward_from(site, cache[site], class_token_only=True)
                    torch.testing.assert_close(out, expected, atol=1e-6, rtol=1e-6)
                    torch.testing.assert_close(seen["t"], cache["blocks.1.hook_resid_post"][:, :1])
            assert no_hooks_left(hooked)
        else:
            with pytest.raises(ValueError, match="class_token_only needs a ViT pooled by its class token"):
                hooked.forward_from("hook_embed", cache["hook_embed"], class_token_only=True)


def test_vit_class_token_block_equals_the_full_block_row(images):
    hooked = hook_image_tower(tiny_clip(VIT_VARIANTS["layerscale-avg"]))  # with LayerScale
    with torch.no_grad():
        _, cache = hooked.run_with_cache(images)
        for i, block in enumerate(hooked.blocks):
            got = block.forward_class_token(cache[f"blocks.{i}.hook_resid_pre"])
            assert got.shape == (4, 1, 32)
            torch.testing.assert_close(got, cache[f"blocks.{i}.hook_resid_post"][:, :1],
                                       atol=1e-6, rtol=1e-6)


def test_resnet_forward_from_every_checkpoint_equals_the_full_forward(resnet, images64):
    hooked = hook_image_tower(resnet)
    with torch.no_grad():
        _, cache = _forward_from_every_checkpoint(
            hooked, images64, ["layer1.1.hook_out", "attnpool.hook_out"])
        with pytest.raises(ValueError, match="'layer1.0.hook_conv1' is not a residual checkpoint"):
            hooked.forward_from("layer1.0.hook_conv1", cache["layer1.0.hook_conv1"])


# ----------------------------------------------------------------------------- OpenCLIP's own configs
def cut_down(name: str, **overrides) -> dict:
    """OpenCLIP's config ``name`` with depth and width cut down (head counts, patch size,
    mlp ratio, pooling, LayerScale, ... kept): ViT width = heads x 8 with 2 blocks, image =
    2 x 2 patches; ResNet layers // 4 (at least 1) and width // 8 at 64 px."""
    cfg = open_clip.get_model_config(name)
    assert cfg is not None, name
    vision = dict(cfg["vision_cfg"])
    if isinstance(vision["layers"], list):  # ModifiedResNet
        vision.update(layers=[max(1, n // 4) for n in vision["layers"]], width=vision["width"] // 8,
                      image_size=64)
    else:
        heads = vision["width"] // vision.get("head_width", 64)
        vision.update(width=heads * 8, head_width=8, layers=2, image_size=2 * vision["patch_size"])
        if vision.get("attentional_pool"):
            vision["attn_pooler_queries"] = 3
    vision.update(overrides)
    return {"embed_dim": 32, "quick_gelu": cfg.get("quick_gelu", False), "vision_cfg": vision,
            "text_cfg": TEXT_CFG}


OPENCLIP_VARIANTS = {
    "ViT-B-32": {},                       # plain ViT, class-token pooling
    "ViT-B-16-quickgelu": {},             # QuickGELU MLPs
    "ViT-M-16-alt": {},                   # LayerScale (ls_init_value)
    "ViT-L-14-CLIPA": {},                 # mean pooling, no ln_pre, LayerNorm after the pool
    "coca_ViT-B-32": {},                  # attentional pooler (output_tokens too)
    "ViT-B-32+custom": {"block_type": "custom"},
    "ViT-B-32+custom-qknorm-scaleheads-scalefc": {"qk_norm": True, "scale_heads": True,
                                                  "scale_fc": True, "ls_init_value": 0.5},
    "RN50": {}, "RN101": {}, "RN50x4": {}, "RN50-quickgelu": {},
}


@pytest.mark.parametrize("variant", list(OPENCLIP_VARIANTS))
def test_hooked_tower_reproduces_every_openclip_variant(variant):
    from interp.interventions.intervene import residual_checkpoints

    cfg = cut_down(variant.split("+")[0], **OPENCLIP_VARIANTS[variant])
    torch.manual_seed(0)
    model = perturb(open_clip.CLIP(**cfg), seed=0).eval()
    size = cfg["vision_cfg"]["image_size"]
    x = torch.randn(3, 3, size, size, generator=torch.Generator().manual_seed(4))
    hooked = hook_image_tower(model)
    with torch.no_grad():
        expected = model.visual(x)
        if isinstance(expected, tuple):  # output_tokens: (pooled, tokens)
            expected = expected[0]
        got, cache = hooked.run_with_cache(x)
        assert got.shape == expected.shape == (3, 32)
        assert_same_output(got, expected)
        for site in [s for s in residual_checkpoints(hooked) if s != "head.hook_logits"]:
            assert_same_output(hooked.forward_from(site, cache[site]), expected)
        if hooked.reads_class_token_only:
            assert_same_output(hooked.forward_from(None, x, class_token_only=True), expected)
    if isinstance(hooked, HookedViT):
        block, attn = hooked.blocks[1], hooked.blocks[1].attn
        summed = cache["blocks.1.attn.hook_result"].sum(dim=2) + attn.b_O
        torch.testing.assert_close(summed, cache["blocks.1.hook_attn_out"], atol=1e-5, rtol=1e-5)
        mlp_out = layer_scale(block.mlp.c_proj(cache["blocks.1.mlp.hook_post"]), block.ls_2)
        torch.testing.assert_close(mlp_out, cache["blocks.1.hook_mlp_out"], atol=1e-5, rtol=1e-5)
        heads = open_clip.get_model_config(variant.split("+")[0])["vision_cfg"]
        assert hooked.cfg.n_heads == heads["width"] // heads.get("head_width", 64)
    else:
        assert [len(getattr(hooked, s)) for s in hooked.stage_names] == cfg["vision_cfg"]["layers"]
