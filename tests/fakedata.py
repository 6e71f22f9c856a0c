"""A tiny fake DomainNet root for data-layer tests: real DomainNet's quirks, tiny PNGs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

DOMAINS = ("clipart", "infograph", "painting", "quickdraw", "real", "sketch")
CLASSES = ("aircraft_carrier", "axe", "banana", "bed", "cat", "dog", "the_eiffel_tower",
           "traffic_light")
HELDOUT = ("axe", "traffic_light")


def make_fake_domainnet(root: Path, seed: int = 0, with_images: bool = True) -> Path:
    """Write a DomainNet-shaped root: 8 classes (underscores in names), uneven class sizes,
    painting's test split lacking a class (as in real DomainNet), a base set with one extra
    class, and a declared held-out list."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    for domain in DOMAINS:
        for split in ("train", "test"):
            lines = []
            for label, cls in enumerate(CLASSES):
                if domain == "painting" and split == "test" and cls == "bed":
                    continue
                n = int(rng.integers(4, 10)) if split == "train" else 2
                folder = root / domain / cls
                folder.mkdir(parents=True, exist_ok=True)
                for j in range(n):
                    rel = f"{domain}/{cls}/{domain}_{split}_{label:03d}_{j:04d}.png"
                    if with_images:
                        Image.new("RGB", (8, 8), (label * 30, j * 20, 90)).save(root / rel)
                    lines.append(f"{rel} {label}")
            (root / f"{domain}_{split}.txt").write_text("\n".join(lines) + "\n")
    (root / "heldout_classes.txt").write_text("\n".join(HELDOUT) + "\n")
    (root / "base").mkdir(exist_ok=True)
    rows = ["filepath\ttitle\tdomain\tlabel"]
    for label, cls in enumerate((*CLASSES, "zebra")):
        path = root / "base" / f"base_{label:03d}.png"
        if with_images:
            Image.new("RGB", (8, 8), (10, label * 20, 10)).save(path)
        rows.append(f"{path}\ta {cls.replace('_', ' ')} on a lawn\tbase\t"
                    f"{label if label < len(CLASSES) else -1}")
    (root / "base.tsv").write_text("\n".join(rows) + "\n")
    return root


TINY_VIT = {
    "embed_dim": 16,
    "vision_cfg": {"image_size": 32, "layers": 2, "width": 32, "head_width": 16, "patch_size": 8},
    "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 16, "heads": 2, "layers": 1},
}


def write_tiny_run(run: Path, data_root: Path, *, mixture: str, setup: str, test_domain: str,
                   heldout: list[str], train_seed: int, mixture_seed: int) -> Path:
    """A one-checkpoint tiny ViT run directory as the trainer writes it (model_config.json,
    checkpoints/epoch_0.pt from seed 0, mixture.json, run.json)."""
    import json

    import torch

    from training.models import build_clip

    (run / "checkpoints").mkdir(parents=True)
    (run / "model_config.json").write_text(json.dumps(TINY_VIT))
    torch.manual_seed(0)
    torch.save({"epoch": 0, "name": run.name, "state_dict": build_clip(TINY_VIT).state_dict()},
               run / "checkpoints" / "epoch_0.pt")
    (run / "mixture.json").write_text(json.dumps({
        "name": mixture,
        "spec": {"setup": setup, "test_domain": test_domain, "seed": mixture_seed,
                 "data_root": str(data_root), "heldout": list(heldout)},
    }))
    (run / "run.json").write_text(json.dumps({"kind": "clip", "settings": {"seed": train_seed}}))
    return run
