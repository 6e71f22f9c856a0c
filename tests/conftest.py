"""Shared fixtures: tiny datasets, a tiny model config, and one tiny trained CLIP run."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from shapes import make_shapes_root, write_mixture, write_model_config

#: OpenCLIP config of a tiny ModifiedResNet CLIP (32 px): learns the shapes in seconds.
TINY_RN_CONFIG = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "layers": [1, 1, 1, 1], "width": 8, "head_width": 16},
    "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2,
                 "layers": 1},
}


@contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Run a block with ``n`` torch intra-op threads, restoring the previous number after."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@pytest.fixture
def one_thread() -> Iterator[None]:
    """One torch thread for the test (use with ``pytestmark = pytest.mark.usefixtures(...)``)."""
    with torch_threads(1):
        yield


def interrupt_after_epoch_1(monkeypatch, module, name: str, run_marker: str) -> None:
    """Patch ``module.name`` (a trainer taking a config with ``out``) so the run whose output
    path contains ``run_marker`` trains one epoch and is then interrupted (KeyboardInterrupt);
    every other run trains normally."""
    real = getattr(module, name)

    def interrupted(cfg):
        if run_marker in str(cfg.out):
            real(type(cfg)(**{**cfg.__dict__, "stop_after_epoch": 1}))
            raise KeyboardInterrupt
        return real(cfg)

    monkeypatch.setattr(module, name, interrupted)


@pytest.fixture(scope="session")
def smoke_inline(tmp_path_factory) -> tuple[Path, dict]:
    """The smoke config reproduced inline once per session: (output folder, step status).
    Shared by test_reproduce and test_executors (the reference of the executors' runs)."""
    from domainlens import pipeline
    from domainlens.config import load_config

    out = tmp_path_factory.mktemp("smoke") / "out"
    status = pipeline.reproduce(load_config("smoke", out=out), progress=False, log=lambda m: None)
    return out, status


@pytest.fixture(scope="session")
def shapes_root(tmp_path_factory) -> Path:
    """A learnable DomainNet-format root: 6 shape classes x 2 domains (real, sketch), 32 px."""
    return make_shapes_root(tmp_path_factory.mktemp("shapes"))


@pytest.fixture(scope="session")
def tiny_data_root(tmp_path_factory, shapes_root) -> Path:
    """A tiny generated DomainNet-format root: the built-in generator's output if
    ``training.synth`` provides ``generate_dataset``, else the shapes dataset."""
    try:
        from training.synth import SynthConfig, generate_dataset
    except ImportError:
        return shapes_root
    root = tmp_path_factory.mktemp("synth")
    generate_dataset(root, SynthConfig(image_size=32, n_train=4, n_test=2, n_base=2, seed=0),
                     workers=1, progress=False)
    return root


@pytest.fixture(scope="session")
def tiny_vit_json(tmp_path_factory) -> Path:
    """Model-config file of a tiny ViT CLIP (32 px, 2 layers, width 32, context 16)."""
    return write_model_config(tmp_path_factory.mktemp("cfg") / "tiny-vit-test.json")


@pytest.fixture(scope="session")
def tiny_rn_json(tmp_path_factory) -> Path:
    """Model-config file of a tiny ModifiedResNet CLIP (32 px, width 8)."""
    return write_model_config(tmp_path_factory.mktemp("cfg") / "tiny-rn-test.json",
                              TINY_RN_CONFIG)


@pytest.fixture(scope="session")
def shapes_mixture(tmp_path_factory, shapes_root) -> Path:
    """Mixture TSV (+ manifest) of all shapes training images, test domain sketch."""
    return write_mixture(shapes_root, tmp_path_factory.mktemp("mix") / "toy.tsv")


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory, shapes_mixture, tiny_rn_json) -> Path:
    """A tiny CLIP trained for 20 epochs on the shapes mixture (a few seconds)."""
    from training.train import TrainConfig, train_clip

    out = tmp_path_factory.mktemp("runs") / "toy-rn"
    with torch_threads(1):
        return train_clip(TrainConfig(
            mixture=shapes_mixture, out=out, model=str(tiny_rn_json), epochs=20,
            batch_size=32, lr=3e-3, progress=False, log_every=1,
        ))


# --------------------------------------------------------- tiny hooked towers (patching, ablation)
# float64 towers with a 5-class cosine head from patch_helpers; test modules that need another
# ``vit`` (test_hooked, test_activations) define their own, which takes precedence.
@pytest.fixture(scope="module", params=["vit", "rn"])
def tower(request):
    from patch_helpers import make_tower

    return make_tower(request.param)


@pytest.fixture(scope="module")
def vit():
    from patch_helpers import make_tower

    return make_tower("vit")


@pytest.fixture(scope="module")
def rn():
    from patch_helpers import make_tower

    return make_tower("rn")
