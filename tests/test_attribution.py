"""Node effects: attribution patching and integrated gradients against independent computations."""

from __future__ import annotations

import math

import pytest
import torch
from circuit_helpers import tiny_images, tiny_tower
from torch import nn
from transformer_lens.hook_points import HookPoint

from interp.circuits.attribution import (
    alphas,
    clean_activations,
    default_sites,
    effect_sums,
    node_effects,
    site_baseline_effects,
    to_units,
)
from interp.hooked.base import HookedImageTower, LayerSite, TowerConfig, hook_point

pytestmark = pytest.mark.usefixtures("one_thread")  # the gradients' summation order


# ----------------------------------------------------------------------------- a linear toy tower
class LinearTower(HookedImageTower):
    """Images (B, 3, 8, 8) -> conv 2x2/2 (spatial, 4 ch) -> tokens (B, 16, 4) -> linear (tokens,
    6) -> mean over tokens -> linear (vector, 5). Every site enters the logits linearly."""

    def __init__(self, n_classes: int = 3) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, 4, 2, stride=2)
        self.hook_conv = hook_point("spatial")
        self.lin = nn.Linear(4, 6)
        self.hook_tokens = hook_point("tokens")
        self.out = nn.Linear(6, 5)
        self.hook_image_embed = hook_point("vector")
        self.cfg = TowerConfig("toy", 2, 1, 4, 5, (8, 8), torch.device("cpu"))
        head = nn.Linear(5, n_classes)
        self._finish_setup(head)

    def embed_image(self, images: torch.Tensor) -> torch.Tensor:
        x = self.hook_conv(self.conv(images))
        x = self.hook_tokens(self.lin(x.flatten(2).transpose(1, 2)))
        return self.hook_image_embed(self.out(x.mean(1)))

    def layers(self) -> list[LayerSite]:
        return [LayerSite("hook_conv", "conv"), LayerSite("hook_tokens", "tok"),
                LayerSite("hook_image_embed", "embed")]


LINEAR_SITES = ["hook_conv", "hook_tokens", "hook_image_embed"]


def unit_ablation_effect(model, images, labels, site, unit, baseline) -> float:
    """Brute force: mean over images of m(clean) - m(unit ``unit`` of ``site`` at baseline)."""
    layout = model.site_layout(site)
    axis = {"spatial": 1, "tokens": 2, "vector": 1}[layout]

    def replace(x, hook):
        x = x.clone()
        index = [slice(None)] * x.ndim
        index[axis] = unit
        base = baseline if not torch.is_tensor(baseline) else baseline.expand_as(x)[tuple(index)]
        x[tuple(index)] = base
        return x

    with torch.no_grad():
        clean = model(images).gather(1, labels[:, None])[:, 0]
        with model.hooks(fwd_hooks=[(site, replace)]):
            ablated = model(images).gather(1, labels[:, None])[:, 0]
    return float((clean - ablated).mean())


@pytest.mark.parametrize("baseline", ["zero", "mean"])
def test_attribution_patching_is_exact_on_a_linear_model(baseline):
    model = LinearTower().double().eval()
    g = torch.Generator().manual_seed(1)
    images = torch.randn(7, 3, 8, 8, generator=g, dtype=torch.float64)
    labels = torch.randint(0, 3, (7,), generator=g)
    reference = torch.randn(5, 3, 8, 8, generator=g, dtype=torch.float64)
    effects = node_effects(model, images, labels, LINEAR_SITES, method="atp", baseline=baseline,
                           reference=reference, batch_size=3, progress=False)
    assert effects.cost == {"fwd_bwd": 3, "fwd": 0, "images": 7}
    means = clean_activations(model, reference, LINEAR_SITES)
    for site in LINEAR_SITES:
        base = 0.0 if baseline == "zero" else means[site].mean(0, keepdim=True)
        for unit, value in enumerate(effects.effects[site].tolist()):
            exact = unit_ablation_effect(model, images, labels, site, unit, base)
            assert value == pytest.approx(exact, rel=1e-9, abs=1e-12), (site, unit)
    assert effects.metric_clean == pytest.approx(
        float(model(images).detach().gather(1, labels[:, None]).mean()), rel=1e-12)


def test_attribution_patching_misses_nonlinearity_that_ig_captures():
    """On the nonlinear tiny ViT, per-unit AtP is not the exact ablation effect (so the linear
    test above can fail), while IG's site sums match the site ablation."""
    model = tiny_tower("rn", dtype=torch.float64)
    images, labels = tiny_images(4, dtype=torch.float64)
    atp_effects = node_effects(model, images, labels, method="atp", progress=False)
    atp = effect_sums(atp_effects)
    exact = site_baseline_effects(model, images, labels)
    assert max(abs(atp[s] - exact[s]) for s in exact) > 1e-3
    # AtP is the first-order term: per unit, the derivative of the metric along that unit's
    # delta (a_clean - 0), by central finite differences (so zeroed AtP effects fail here).
    site = default_sites(model)[1]
    clean = clean_activations(model, images, [site])[site]
    for unit in range(3):
        delta = torch.zeros_like(clean)
        delta[:, unit] = clean[:, unit]
        eps = 1e-4
        slope = (site_metric(model, images, labels, site, clean + eps * delta)
                 - site_metric(model, images, labels, site, clean - eps * delta)) / (2 * eps)
        assert float(atp_effects.effects[site][unit]) == pytest.approx(slope, rel=1e-5, abs=1e-9)
    # ... while IG's site sums match the site ablation (completeness), which AtP's do not.
    ig = effect_sums(node_effects(model, images, labels, method="ig", steps=24, rule="midpoint",
                                  progress=False))
    scale = max(abs(v) for v in exact.values())
    assert max(abs(ig[s] - exact[s]) for s in exact) < 2e-3 * scale
    assert max(abs(ig[s] - exact[s]) for s in exact) < max(abs(atp[s] - exact[s]) for s in exact) / 10


def site_metric(model, images, labels, site, value) -> float:
    """Mean true-class logit with ``site``'s activation replaced by ``value`` ``(B, ...)``."""

    def replace(x, hook):
        return value.to(x)

    with torch.no_grad(), model.hooks(fwd_hooks=[(site, replace)]):
        return float(model(images).gather(1, labels[:, None])[:, 0].mean())


@pytest.mark.parametrize("rule", ["left", "midpoint"])
def test_integrated_gradients_equal_a_finite_difference_riemann_sum(rule):
    """Per-unit IG by hand: the path a(alpha) = a_clean + alpha (0 - a_clean) of the whole site,
    at each of the Riemann points the derivative of the metric along the unit's delta by
    central finite differences, averaged over the points."""
    model = tiny_tower("rn", dtype=torch.float64)
    images, labels = tiny_images(3, dtype=torch.float64)
    site = default_sites(model)[2]
    steps = 4
    ig = node_effects(model, images, labels, [site], method="ig", steps=steps, rule=rule,
                      progress=False)
    clean = clean_activations(model, images, [site])[site]
    eps = 1e-4
    shift = 0.0 if rule == "left" else 0.5
    for unit in (0, 5, 11):
        delta = torch.zeros_like(clean)
        delta[:, unit] = clean[:, unit]
        total = 0.0
        for k in range(steps):
            point = clean * (1 - (k + shift) / steps)
            total += (site_metric(model, images, labels, site, point + eps * delta)
                      - site_metric(model, images, labels, site, point - eps * delta)) / (2 * eps)
        assert float(ig.effects[site][unit]) == pytest.approx(total / steps, rel=1e-5, abs=1e-9)


# ----------------------------------------------------------------------------- IG
@pytest.mark.parametrize("kind, baseline", [("vit", "mean"), ("rn", "zero")])
def test_integrated_gradients_completeness(kind, baseline):
    model = tiny_tower(kind, dtype=torch.float64)
    images, labels = tiny_images(5, dtype=torch.float64)
    reference, _ = tiny_images(6, seed=3, dtype=torch.float64)
    exact = site_baseline_effects(model, images, labels, baseline=baseline, reference=reference)
    errors = {}
    for steps in (2, 24):
        ig = node_effects(model, images, labels, method="ig", baseline=baseline,
                          reference=reference, steps=steps, rule="midpoint", progress=False)
        sums = effect_sums(ig)
        errors[steps] = max(abs(sums[s] - exact[s]) for s in exact)
    scale = max(abs(v) for v in exact.values())
    assert errors[24] < 2e-3 * scale  # midpoint rule: error ~ 1/S^2
    assert errors[24] < errors[2] / 10


def test_zero_baseline_of_a_layernormed_residual_is_a_discontinuity():
    """Documented caveat: LayerNorm makes the metric constant along (1 - alpha) * resid, so IG
    of the last residual site is ~0 while zeroing it changes the metric."""
    model = tiny_tower("vit", dtype=torch.float64)
    images, labels = tiny_images(4, dtype=torch.float64)
    site = "blocks.1.hook_resid_post"
    ig = node_effects(model, images, labels, [site], method="ig", steps=8, progress=False)
    exact = site_baseline_effects(model, images, labels, [site])
    assert abs(float(ig.effects[site].sum())) < 1e-8 < abs(exact[site])


@pytest.mark.parametrize("kind", ["vit", "rn"])
def test_batched_per_site_ig_equals_the_reference_loop(kind):
    model = tiny_tower(kind, dtype=torch.float64)
    images, labels = tiny_images(5, dtype=torch.float64)
    sites = default_sites(model)
    kw = dict(steps=3, rule="left", baseline="zero", batch_size=3, progress=False)
    loop = node_effects(model, images, labels, method="ig_loop", **kw)
    batched = node_effects(model, images, labels, method="ig", **kw)
    split = node_effects(model, images, labels, method="ig", sites_per_pass=2, **kw)
    for site in sites:
        torch.testing.assert_close(batched.effects[site], loop.effects[site], rtol=1e-10, atol=1e-13)
        torch.testing.assert_close(split.effects[site], loop.effects[site], rtol=1e-10, atol=1e-13)
    n_batches, n_sites = 2, len(sites)
    assert loop.cost["fwd_bwd"] == n_batches * n_sites * 3
    assert batched.cost["fwd_bwd"] == n_batches * 3
    assert split.cost["fwd_bwd"] == n_batches * 3 * math.ceil(n_sites / 2)
    assert batched.metric_clean == pytest.approx(loop.metric_clean)


def test_one_left_step_of_ig_is_attribution_patching():
    model = tiny_tower("vit", dtype=torch.float64)
    images, labels = tiny_images(3, dtype=torch.float64)
    atp = node_effects(model, images, labels, method="atp", progress=False)
    ig1 = node_effects(model, images, labels, method="ig", steps=1, rule="left", progress=False)
    for site in atp.sites:
        torch.testing.assert_close(ig1.effects[site], atp.effects[site], rtol=1e-10, atol=1e-14)


def test_alphas():
    assert alphas(4, "left") == [0.0, 0.25, 0.5, 0.75]
    assert alphas(2, "midpoint") == [0.25, 0.75]


def test_units_sum_positions_and_head_dims():
    x = torch.arange(2 * 3 * 4 * 5, dtype=torch.float64).reshape(2, 3, 4, 5)
    torch.testing.assert_close(to_units(x, "heads"), x.sum(dim=(1, 3)))  # (B, T, H, d) -> (B, H)
    torch.testing.assert_close(to_units(x, "spatial"), x.sum(dim=(2, 3)))  # (B, C, H, W) -> (B, C)
    torch.testing.assert_close(to_units(x[:, :, :, 0], "tokens"), x[:, :, :, 0].sum(1))
    torch.testing.assert_close(to_units(x, "tokens"), x.sum(dim=2))  # (K, B, T, D) -> (K, B, D)


# ----------------------------------------------------------------------------- gradients
def test_gradients_equal_transformer_lens_backward_hooks():
    """The gradient read by autograd on the hooked tensor is what a TL backward hook sees."""
    model = tiny_tower("vit", dtype=torch.float64)
    images, labels = tiny_images(3, dtype=torch.float64)
    site = "blocks.1.mlp.hook_post"
    seen = {}

    def keep(grad, hook):
        seen["grad"] = grad.detach().clone()

    def capture(x, hook):
        seen["act"] = x
        return x

    with model.hooks(fwd_hooks=[(site, capture)], bwd_hooks=[(site, keep)]):
        logits = model(images)
        metric = logits.gather(1, labels[:, None]).sum()
        (ours,) = torch.autograd.grad(metric, [seen["act"]], retain_graph=True)
        metric.backward()
    torch.testing.assert_close(ours, seen["grad"])
    # and the atp effect built from it
    effects = node_effects(model, images, labels, [site], method="atp", progress=False)
    torch.testing.assert_close(effects.effects[site], to_units(seen["act"].detach() * ours, "tokens").mean(0))
    model.zero_grad(set_to_none=True)


def test_gradients_equal_nnsight():
    nnsight = pytest.importorskip("nnsight")
    model = tiny_tower("vit", dtype=torch.float64)
    images, labels = tiny_images(3, dtype=torch.float64)
    site = "blocks.0.mlp.hook_post"
    wrapped = nnsight.NNsight(model)
    with wrapped.trace(images):
        act = wrapped.blocks[0].mlp.hook_post.output
        act.requires_grad_(True)
        saved_act = act.save()
        metric = wrapped.output[torch.arange(3), labels].sum()
        with metric.backward():
            grad = act.grad.save()
    ours = node_effects(model, images, labels, [site], method="atp", progress=False)
    torch.testing.assert_close(ours.effects[site], to_units(saved_act.detach() * grad, "tokens").mean(0))


# ----------------------------------------------------------------------------- hygiene
def _hook_count(model) -> int:
    return sum(len(m._forward_hooks) + len(m._backward_hooks) + len(m._forward_pre_hooks)
               for m in model.modules() if isinstance(m, HookPoint))


def test_hooks_never_leak_also_on_errors():
    model = tiny_tower("vit")
    images, labels = tiny_images(3)
    for method in ("atp", "ig", "ig_loop"):
        node_effects(model, images, labels, method=method, steps=2, progress=False)
    assert _hook_count(model) == 0

    calls = {"n": 0}

    def failing(logits, labels):
        calls["n"] += 1
        raise RuntimeError("metric failed")

    for method in ("atp", "ig", "ig_loop"):
        with pytest.raises(RuntimeError, match="metric failed"):
            node_effects(model, images, labels, metric=failing, method=method, progress=False)
    assert calls["n"] == 3 and _hook_count(model) == 0
    assert all(p.grad is None for p in model.parameters())


def test_deterministic():
    model = tiny_tower("rn")
    images, labels = tiny_images(4)
    a = node_effects(model, images, labels, method="ig", steps=2, progress=False)
    b = node_effects(model, images, labels, method="ig", steps=2, progress=False)
    for s in a.sites:
        assert torch.equal(a.effects[s], b.effects[s])


def test_bad_input_is_named():
    model = tiny_tower("vit")
    images, labels = tiny_images(2)
    with pytest.raises(ValueError, match="node method must be one of .*'atp'.*got 'sfc'"):
        node_effects(model, images, labels, method="sfc")
    with pytest.raises(ValueError, match=r"baseline .*must be one of \['zero', 'mean'\], got 'one'"):
        node_effects(model, images, labels, baseline="one")
    with pytest.raises(ValueError, match="Riemann rule must be one of .*got 'right'"):
        node_effects(model, images, labels, method="ig", rule="right")
    with pytest.raises(ValueError, match="steps must be an integer >= 1, got 0"):
        node_effects(model, images, labels, method="ig", steps=0)
    with pytest.raises(ValueError, match="unknown site"):
        node_effects(model, images, labels, ["blocks.9.hook_resid_post"])
    with pytest.raises(ValueError, match="without units"):
        node_effects(model, images, labels, ["blocks.0.attn.hook_pattern"])
    with pytest.raises(ValueError, match=r"labels must be \(2,\)"):
        node_effects(model, images, labels[:1])
    model.set_head(None)
    with pytest.raises(ValueError, match="zero-shot head"):
        node_effects(model, images, labels)


# ----------------------------------------------------------------------------- train mode
def _bn_state(model) -> list[torch.Tensor]:
    return [b.clone() for m in model.modules() if isinstance(m, nn.BatchNorm2d)
            for b in (m.running_mean, m.running_var, m.num_batches_tracked)]


def test_a_tower_left_in_train_mode_is_analysed_in_eval_mode():
    """OpenCLIP towers start in train mode: node effects, edges, faithfulness, activations and
    patching must use eval mode anyway (same numbers), leave BatchNorm's running statistics
    untouched and give the caller's mode back."""
    from interp.circuits.circuit import faithfulness_table
    from interp.circuits.edges import edge_weights
    from interp.hooked.activations import collect_activations
    from interp.interventions.patching import activation_patching

    model = tiny_tower("rn", dtype=torch.float64)
    images, labels = tiny_images(3, dtype=torch.float64)
    sites = default_sites(model)[:3]
    kept = {s: [0, 1] for s in sites}

    def analyses():
        atp = node_effects(model, images, labels, sites, progress=False).effects
        ig = node_effects(model, images, labels, sites, method="ig", steps=2, progress=False).effects
        edges = edge_weights(model, images, labels, kept, sites, progress=False).weights
        faith = faithfulness_table(model, images, labels, kept, reference=images, n_random=0)
        acts = collect_activations(model, images, sites[:1], progress=False)
        patch = activation_patching(model, images, images.flip(0), labels, sites=sites[:1],
                                    progress=False).values
        return ([*atp.values(), *ig.values(), *edges.values(), *acts.values(), patch],
                faith["value"].tolist())

    expected, expected_faith = analyses()
    before = _bn_state(model)
    model.train()
    got, got_faith = analyses()
    assert model.training and all(m.training for m in model.modules())
    for a, b in zip(_bn_state(model), before, strict=True):
        assert torch.equal(a, b)
    for a, b in zip(got, expected, strict=True):
        assert torch.allclose(torch.as_tensor(a), torch.as_tensor(b), rtol=1e-9, atol=1e-12)
    assert got_faith == pytest.approx(expected_faith, rel=1e-9, nan_ok=True)
