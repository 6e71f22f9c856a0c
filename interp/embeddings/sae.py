"""A sparse autoencoder (dictionary) on ``(N, E)`` embeddings or pooled layer activations.

Architecture, as in the paper: ``z = ReLU(W_enc (x - b_pre) + b_enc)``, ``x_hat = W_dec z +
b_pre`` with a tied pre-encoder bias ``b_pre`` (initialised at the data mean), ``L = expansion
x E`` latents, decoder columns kept at unit L2 norm (renormalised after every step, and the
gradient's component along each column removed before it, so the L1 penalty cannot be
dodged by shrinking latents and growing columns). Loss per batch: mean over rows of
``||x - x_hat||^2 + l1 * ||z||_1``. Optimiser Adam (paper: lr 1e-4, L1 1e-4, batch 2048).

Written here rather than taken from a library: sae-lens, dictionary-learning and
overcomplete were compared (README, "Embeddings and features"); each pulls a heavy stack
(transformers/datasets, nnsight<0.4/wandb, timm/opencv) for a 40-line module.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd
import torch
from torch import Tensor, nn

from training.util.seeding import torch_generator


@dataclass(frozen=True)
class SAEConfig:
    """Training settings of :func:`train_sae` (defaults: the paper's)."""

    expansion: int = 4
    lr: float = 1e-4
    l1: float = 1e-4
    batch_size: int = 2048
    epochs: int = 100
    seed: int = 0

    def validate(self) -> SAEConfig:
        from training.util.validate import check_number

        check_number("expansion", self.expansion, low=1, integer=True)
        check_number("lr", self.lr, low=0, low_open=True)
        check_number("l1", self.l1, low=0)
        check_number("batch_size", self.batch_size, low=1, integer=True)
        check_number("epochs", self.epochs, low=1, integer=True)
        return self


class SparseAutoencoder(nn.Module):
    """ReLU SAE with a tied pre-encoder bias and unit-norm decoder columns (module doc)."""

    def __init__(self, d_in: int, n_latents: int, generator: torch.Generator | None = None):
        super().__init__()
        w = torch.randn(d_in, n_latents, generator=generator)
        w = w / w.norm(dim=0, keepdim=True)
        self.b_pre = nn.Parameter(torch.zeros(d_in))
        self.W_dec = nn.Parameter(w)                    # (E, L), unit columns
        self.W_enc = nn.Parameter(w.t().clone())        # (L, E), starts as the transpose
        self.b_enc = nn.Parameter(torch.zeros(n_latents))

    @property
    def n_latents(self) -> int:
        return int(self.W_dec.shape[1])

    def encode(self, x: Tensor) -> Tensor:
        """``(N, E)`` -> latents ``(N, L)``, non-negative."""
        return torch.relu((x - self.b_pre) @ self.W_enc.t() + self.b_enc)

    def decode(self, z: Tensor) -> Tensor:
        """Latents ``(N, L)`` -> reconstruction ``(N, E)``."""
        return z @ self.W_dec.t() + self.b_pre

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        z = self.encode(x)
        return self.decode(z), z

    @torch.no_grad()
    def normalise_decoder(self) -> None:
        self.W_dec.div_(self.W_dec.norm(dim=0, keepdim=True).clamp_min(1e-12))

    @torch.no_grad()
    def _project_decoder_grad(self) -> None:
        g = self.W_dec.grad
        if g is not None:  # remove the radial part: the step keeps columns on the unit sphere
            g.sub_(self.W_dec * (g * self.W_dec).sum(dim=0, keepdim=True))


def sae_loss(sae: SparseAutoencoder, x: Tensor, l1: float) -> tuple[Tensor, Tensor, Tensor]:
    """``(total, reconstruction, l1 term)``, each a mean over rows."""
    x_hat, z = sae(x)
    recon = (x - x_hat).pow(2).sum(dim=1).mean()
    sparsity = z.abs().sum(dim=1).mean()
    return recon + l1 * sparsity, recon, sparsity


def train_sae(x: Tensor | np.ndarray, config: SAEConfig | None = None
              ) -> tuple[SparseAutoencoder, pd.DataFrame]:
    """Train an SAE on ``x`` ``(N, E)``; returns it (eval mode) and the history (columns
    epoch, loss, reconstruction, l1: means over the epoch's batches). Seeded by
    ``config.seed`` (initialisation and batch order)."""
    config = (config or SAEConfig()).validate()
    x = torch.as_tensor(np.asarray(x), dtype=torch.float32)
    if x.ndim != 2 or len(x) < 2:
        raise ValueError(f"SAE input must be (N, E) with N >= 2, got shape {tuple(x.shape)}")
    if not torch.isfinite(x).all():
        raise ValueError("SAE input contains NaN or infinite values")
    gen = torch_generator(config.seed, "sae")
    sae = SparseAutoencoder(x.shape[1], config.expansion * x.shape[1], generator=gen)
    with torch.no_grad():
        sae.b_pre.copy_(x.mean(dim=0))
    opt = torch.optim.Adam(sae.parameters(), lr=config.lr)
    rows = []
    for epoch in range(1, config.epochs + 1):
        order = torch.randperm(len(x), generator=gen)
        sums = np.zeros(3)
        batches = 0
        for start in range(0, len(x), config.batch_size):
            batch = x[order[start:start + config.batch_size]]
            loss, recon, sparsity = sae_loss(sae, batch, config.l1)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            sae._project_decoder_grad()
            opt.step()
            sae.normalise_decoder()
            sums += [loss.item(), recon.item(), sparsity.item()]
            batches += 1
        rows.append({"epoch": epoch, **dict(zip(("loss", "reconstruction", "l1"),
                                                 sums / batches, strict=True))})
    return sae.eval(), pd.DataFrame(rows)


@torch.no_grad()
def encode(sae: SparseAutoencoder, x: Tensor | np.ndarray, batch_size: int = 8192) -> np.ndarray:
    """Latents of ``x`` ``(N, E)`` as a float32 array ``(N, L)``."""
    x = torch.as_tensor(np.asarray(x), dtype=torch.float32)
    return torch.cat([sae.encode(x[i:i + batch_size]) for i in range(0, len(x), batch_size)]
                     ).numpy()


@torch.no_grad()
def sae_quality(sae: SparseAutoencoder, x: Tensor | np.ndarray) -> dict[str, float]:
    """Reconstruction quality on ``x`` ``(N, E)``: explained_variance (``1 - SSE / SST``, SST
    around the column means), mse (per row, summed over dims), l0 (mean number of active
    latents per row), dead (latents never active on ``x``), dead_fraction, n_latents."""
    x = torch.as_tensor(np.asarray(x), dtype=torch.float32)
    x_hat, z = sae(x)
    sse = (x - x_hat).pow(2).sum()
    sst = (x - x.mean(dim=0)).pow(2).sum()
    active = z > 0
    dead = int((~active.any(dim=0)).sum())
    return {
        "explained_variance": float(1 - sse / sst) if sst > 0 else float("nan"),
        "mse": float(sse / len(x)),
        "l0": float(active.sum(dim=1).float().mean()),
        "dead": dead,
        "dead_fraction": dead / sae.n_latents,
        "n_latents": sae.n_latents,
    }


def save_sae(sae: SparseAutoencoder, config: SAEConfig, path) -> None:
    """Write the SAE's weights and config atomically (``torch_save``)."""
    from training.util.files import torch_save

    torch_save({"config": asdict(config), "d_in": int(sae.W_dec.shape[0]),
                "state": sae.state_dict()}, path)


def load_sae(path) -> tuple[SparseAutoencoder, SAEConfig]:
    """Read an SAE written by :func:`save_sae`."""
    payload = torch.load(path, map_location="cpu", weights_only=True)
    config = SAEConfig(**payload["config"])
    sae = SparseAutoencoder(payload["d_in"], payload["d_in"] * config.expansion)
    sae.load_state_dict(payload["state"])
    return sae.eval(), config
