"""Sealed tasks for the tuning-free benchmark: a sixth holdout set, built after every tuner default was fixed, by
someone other than the tuners' author, to judge the tuners at the very end (no default may be chosen, or even
looked at, on them).

Each is of a kind no other lab task is (architecture, data), and each carries a property known to make automatic
lr tuners fail; all data is generated from numpy with fixed seeds (nothing downloads):

- ``sealed-gcn-graphs``: a graph convolutional network (dense adjacency, 3 rounds of mean-aggregation message
  passing, mean readout) regressing a two-hop neighbourhood statistic of random 24-node graphs with node features;
  the training and validation targets carry heavy-tailed noise (Student-t, 2 degrees of freedom) and validation is
  small (96 graphs), so the validation metric is noisy; the test targets are clean; MSE;
- ``sealed-moe-parity``: a soft mixture-of-experts MLP (4 experts, softmax gate) on the parity of 5 hidden bits
  of 40 (sparse parity): the loss sits at chance for a long initial plateau (a third of the run or more at the
  best lrs) before it drops; metric: test cross-entropy;
- ``sealed-vae-manifold``: a variational autoencoder (Gaussian encoder and decoder, latent 4) of 48-D points on
  a noisy, nonlinearly embedded torus; metric: the negative ELBO per coordinate; validation (40,000 rows) is
  large against the short run (200 steps of 256: one validation pass costs about a quarter of the budget);
- ``sealed-fno-reaction``: a 1-D Fourier neural operator pretrained (in its model builder) on one Allen-Cahn
  reaction-diffusion equation, fine-tuned to another (half the diffusivity, twice the reaction rate): initial
  field -> the solution at time 0.5; MSE; the pretrained weights are lost at a large lr (its data, solver and
  operator: :mod:`adaptlr.lab.reaction`);
- ``sealed-rbf-terrain``: a radial-basis-function network (learned centres, widths and weights) regressing
  elevation in decametres from coordinates in hectometres; every parameter lives in the data's units (~10), so
  the best lr is well above 0.1 (~1); its grid is its own (0.03 .. 30);
- ``sealed-deepsets-count``: a DeepSets network with an unnormalised sum over sets of 500 points predicting the
  (standardised) fraction of points inside the unit disc; the sum makes the initial loss ~10^3 times its final
  value, a transient that misleads tuners reading the early loss.

``GRIDS`` gives the tasks whose best lr lies outside the benchmark's default grid (1e-4 .. 1e-1), or on its edge
for some seed, a 7-point half-decade grid of their own around it (:func:`adaptlr.lab.tuning_free.grid_lrs` consults it).

>>> from adaptlr.lab.tasks import get_task
>>> get_task("sealed-vae-manifold").metric
'loss'
>>> SEALED[0]
'sealed-gcn-graphs'
"""

from __future__ import annotations

import functools

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from . import data as D
from .reaction import make_reaction, pretrained_fno_model
from .tasks import Task, mse, register_task

__all__ = [
    "GRIDS",
    "SEALED",
    "DeepSets",
    "GraphConvNet",
    "RBFNet",
    "SoftMoE",
    "VAE",
    "elbo_loss",
    "make_graphs",
    "make_manifold",
    "make_parity",
    "make_point_sets",
    "make_terrain",
]

SEALED: tuple[str, ...] = (
    "sealed-gcn-graphs",
    "sealed-moe-parity",
    "sealed-vae-manifold",
    "sealed-fno-reaction",
    "sealed-rbf-terrain",
    "sealed-deepsets-count",
)

#: task -> its own 7-point half-decade lr grid, for tasks whose best lr lies outside the default grid (1e-4 ..
#: 1e-1), or on its edge for some seed; each was placed so that its best lr is inside it, not at an edge
GRIDS: dict[str, tuple[float, ...]] = {
    "sealed-rbf-terrain": (0.03, 0.1, 0.3, 1.0, 3.0, 10.0, 30.0),
}


# ---- sealed-gcn-graphs -----------------------------------------------------------------------------------

GRAPH_NODES, GRAPH_FEATURES = 24, 4


@functools.cache
def make_graphs(n: int = 1700, n_test: int = 500, seed: int = 51) -> D.ArrayData:
    """Random graphs of ``GRAPH_NODES`` nodes (Erdos-Renyi, edge probability 0.08 .. 0.25 per graph) with node
    features ``N(0, 1)`` of ``GRAPH_FEATURES`` dims; inputs ``(n, 24, 24 + 4)``: the symmetric 0/1 adjacency (no
    self loops) then the features. The target ``(n, 1)``: the mean over nodes of ``tanh(2 s_i) x_i0`` plus
    ``0.5 tanh(t_i)``, where ``s_i`` is the mean of ``x_j1 - x_j2`` over ``i``'s neighbours and ``t_i`` the mean
    of ``s_j`` over them (two hops), standardised; the training and validation targets get Student-t noise (2
    degrees of freedom, scale 0.25), the test targets none. Validation: 96 graphs carved from the 1200 training
    ones."""
    rng = np.random.default_rng(seed)
    p = rng.uniform(0.08, 0.25, (n, 1, 1))
    upper = np.triu(rng.random((n, GRAPH_NODES, GRAPH_NODES)) < p, 1)
    adj = (upper | upper.transpose(0, 2, 1)).astype(np.float64)
    feats = rng.standard_normal((n, GRAPH_NODES, GRAPH_FEATURES))
    deg = np.maximum(adj.sum(2), 1.0)
    s = (adj @ (feats[:, :, 1] - feats[:, :, 2])[:, :, None])[:, :, 0] / deg
    t = (adj @ s[:, :, None])[:, :, 0] / deg
    y = (np.tanh(2 * s) * feats[:, :, 0] + 0.5 * np.tanh(t)).mean(1)
    y = (y - y.mean()) / y.std()
    x = np.concatenate([adj, feats], 2).astype(np.float32)
    perm = rng.permutation(n)
    test, train = perm[:n_test], perm[n_test:]
    noisy = y[train] + 0.25 * rng.standard_t(2.0, len(train))
    t_ = torch.from_numpy
    return D.ArrayData(
        t_(x[train]),
        t_(noisy[:, None].astype(np.float32)),
        t_(x[test]),
        t_(y[test][:, None].astype(np.float32)),
        val_fraction=0.08,
    )


class GraphConvNet(nn.Module):
    """A graph convolutional network on dense adjacency: a linear embedding of the node features (width 64), 3
    rounds of ``h <- h + relu(h W_self + mean_{j ~ i} h_j W_nbr)``, a mean over nodes and an MLP head
    64-64-1."""

    def __init__(self, width: int = 64, rounds: int = 3) -> None:
        super().__init__()
        self.embed = nn.Linear(GRAPH_FEATURES, width)
        self.self_maps = nn.ModuleList(nn.Linear(width, width) for _ in range(rounds))
        self.nbr_maps = nn.ModuleList(nn.Linear(width, width, bias=False) for _ in range(rounds))
        self.head = nn.Sequential(nn.Linear(width, width), nn.ReLU(), nn.Linear(width, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        adj, feats = x[:, :, :GRAPH_NODES], x[:, :, GRAPH_NODES:]
        adj = adj / adj.sum(2, keepdim=True).clamp(min=1.0)  # row-normalised: the mean over neighbours
        h = self.embed(feats)
        for own, nbr in zip(self.self_maps, self.nbr_maps, strict=True):
            h = h + F.relu(own(h) + nbr(adj @ h))
        return self.head(h.mean(1))


# ---- sealed-moe-parity -----------------------------------------------------------------------------------

PARITY_BITS = 40
PARITY_SUPPORT = (3, 11, 17, 22, 34)


@functools.cache
def make_parity(n: int = 40000, n_test: int = 4000, seed: int = 52) -> D.ArrayData:
    """Uniform ``{-1, +1}`` vectors ``(n, 40)``; the label ``(n,)`` is 1 when the product of the 5 bits at
    ``PARITY_SUPPORT`` is -1 (sparse parity: no set of fewer than 5 bits says anything about it)."""
    rng = np.random.default_rng(seed)
    x = (1 - 2 * rng.integers(0, 2, (n, PARITY_BITS))).astype(np.float32)
    y = (x[:, list(PARITY_SUPPORT)].prod(1) < 0).astype(np.int64)
    return D.split_arrays(x, y, n_test, seed)


class SoftMoE(nn.Module):
    """A soft mixture of experts: a softmax gate (a linear map 40 -> 4) weighs the logits of 4 expert MLPs
    40-128-2 (ReLU); every expert runs on every row (dense routing)."""

    def __init__(self, experts: int = 4, hidden: int = 128) -> None:
        super().__init__()
        self.gate = nn.Linear(PARITY_BITS, experts)
        self.experts = nn.ModuleList(
            nn.Sequential(nn.Linear(PARITY_BITS, hidden), nn.ReLU(), nn.Linear(hidden, 2)) for _ in range(experts)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weights = torch.softmax(self.gate(x), -1)  # (batch, experts)
        outs = torch.stack([e(x) for e in self.experts], 1)  # (batch, experts, 2)
        return (weights[:, :, None] * outs).sum(1)


# ---- sealed-vae-manifold ---------------------------------------------------------------------------------

MANIFOLD_DIM, LATENT_DIM = 48, 4
VAE_NOISE = 0.1  # the decoder's fixed standard deviation, which is also the data's noise


@functools.cache
def make_manifold(n_train: int = 8000, n_val: int = 40000, n_test: int = 8000, seed: int = 53) -> D.ArrayData:
    """Points ``(n, 48)`` on a 2-D manifold: two angles ``(a, b)`` uniform on the circle, fed as ``(cos a, sin a,
    cos b, sin b)`` through a fixed random tanh layer (width 32) and a random linear map to 48 dims (a torus
    embedded nonlinearly), each coordinate standardised, plus Gaussian noise of std ``VAE_NOISE``. The target is
    the input (autoencoding). Validation (``n_val`` rows) is given, large, not carved."""
    rng = np.random.default_rng(seed)
    n = n_train + n_val + n_test
    ang = rng.uniform(0, 2 * np.pi, (n, 2))
    z = np.concatenate([np.cos(ang), np.sin(ang)], 1)
    w1, w2 = rng.standard_normal((4, 32)), rng.standard_normal((32, MANIFOLD_DIM)) / np.sqrt(32)
    clean = np.tanh(z @ w1) @ w2
    clean = (clean - clean.mean(0)) / clean.std(0)
    x = (clean + VAE_NOISE * rng.standard_normal(clean.shape)).astype(np.float32)
    t = torch.from_numpy
    a, b = t(x[:n_train]), t(x[n_train : n_train + n_val])
    c = t(x[n_train + n_val :])
    return D.ArrayData(a, a.clone(), c, c.clone(), x_val=b, y_val=b.clone())


def elbo_loss(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    r"""The negative ELBO per coordinate of a :class:`VAE`'s ``out`` = ``(reconstruction, mu, logvar)``
    concatenated, against ``y``, up to its constant: with the decoder's std :math:`\sigma` = ``VAE_NOISE``,

    .. math:: \frac{1}{d}\Big(\frac{\lVert y - \hat y\rVert^2}{2\sigma^2}
              + \tfrac12 \sum_k (\mu_k^2 + e^{\ell_k} - 1 - \ell_k)\Big)."""
    recon, mu, logvar = out[:, :MANIFOLD_DIM], out[:, MANIFOLD_DIM:-LATENT_DIM], out[:, -LATENT_DIM:]
    nll = (y - recon).pow(2).sum(1) / (2 * VAE_NOISE**2)
    kl = 0.5 * (mu.pow(2) + logvar.exp() - 1 - logvar).sum(1)
    return (nll + kl).mean() / MANIFOLD_DIM


class VAE(nn.Module):
    """A variational autoencoder: encoder MLP 48-256-256 -> (mu, log-variance) of a latent of 4, decoder MLP
    4-256-256-48 (SiLU). Training samples the latent (the reparameterisation trick, from the global RNG); in eval
    mode the latent is the posterior mean, so the evaluation is deterministic. Returns ``(reconstruction, mu,
    logvar)`` concatenated, ``(batch, 48 + 4 + 4)``."""

    def __init__(self, hidden: int = 256) -> None:
        super().__init__()
        self.encoder = nn.Sequential(
            nn.Linear(MANIFOLD_DIM, hidden), nn.SiLU(), nn.Linear(hidden, hidden), nn.SiLU(), nn.Linear(hidden, 8)
        )
        self.decoder = nn.Sequential(
            nn.Linear(LATENT_DIM, hidden),
            nn.SiLU(),
            nn.Linear(hidden, hidden),
            nn.SiLU(),
            nn.Linear(hidden, MANIFOLD_DIM),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mu, logvar = self.encoder(x).chunk(2, -1)
        z = mu + torch.randn_like(mu) * (0.5 * logvar).exp() if self.training else mu
        return torch.cat([self.decoder(z), mu, logvar], -1)


# ---- sealed-rbf-terrain ----------------------------------------------------------------------------------

TERRAIN_SIZE = 50.0  # hectometres on a side (5 km)


@functools.cache
def make_terrain(n: int = 3000, n_test: int = 800, seed: int = 56) -> D.ArrayData:
    """Points ``(n, 2)`` uniform on a 5 km square, coordinates in hectometres (0 .. 50), and their elevation
    ``(n, 1)`` in decametres: a 400 m plain tilted by 40 m per km, 8 Gaussian hills and hollows (heights -150 ..
    450 m, widths 250 .. 900 m) and survey noise of std 5 m (0.5 dam; the MSE floor is 0.25)."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(0, TERRAIN_SIZE, (n, 2))
    centres = rng.uniform(0, TERRAIN_SIZE, (8, 2))
    heights, widths = rng.uniform(-15, 45, 8), rng.uniform(2.5, 9.0, 8)
    d2 = ((x[:, None] - centres[None]) ** 2).sum(-1)
    h = 40 + 0.04 * (x[:, 0] - x[:, 1]) + (heights * np.exp(-0.5 * d2 / widths**2)).sum(1)
    y = h + 0.5 * rng.standard_normal(n)
    return D.split_arrays(x.astype(np.float32), y[:, None].astype(np.float32), n_test, seed)


class RBFNet(nn.Module):
    """A radial-basis-function network: ``f(x) = b + sum_j w_j exp(-|x - c_j|^2 / (2 s_j^2))`` over 192 units,
    every parameter in the data's units: centres ``c_j`` uniform on the terrain (hectometres), widths ``s_j`` from
    6 (hectometres; the sign does not matter), weights and bias from 0 (decametres of elevation), so that each
    must move by ~10 to fit."""

    def __init__(self, units: int = 192) -> None:
        super().__init__()
        self.centres = nn.Parameter(TERRAIN_SIZE * torch.rand(units, 2))
        self.widths = nn.Parameter(torch.full((units,), 6.0))
        self.weights = nn.Parameter(torch.zeros(units))
        self.bias = nn.Parameter(torch.zeros(()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        d2 = (x[:, None] - self.centres[None]).pow(2).sum(-1)
        phi = torch.exp(-0.5 * d2 / (self.widths.pow(2) + 0.01))
        return (self.bias + phi @ self.weights)[:, None]


# ---- sealed-deepsets-count -------------------------------------------------------------------------------

SET_SIZE = 500


@functools.cache
def make_point_sets(n: int = 2400, n_test: int = 600, seed: int = 57) -> D.ArrayData:
    """Sets ``(n, 500, 2)`` of 2-D points, each set Gaussian around a random centre (``N(0, 0.5^2 I)``) with a
    random scale (0.4 .. 1.6) and aspect (0.5 .. 2); the target ``(n, 1)``: the fraction of the set's points
    inside the unit disc, standardised."""
    rng = np.random.default_rng(seed)
    centre = 0.5 * rng.standard_normal((n, 1, 2))
    scale = rng.uniform(0.4, 1.6, (n, 1, 1)) * np.stack([np.ones(n), rng.uniform(0.5, 2.0, n)], 1)[:, None]
    pts = centre + scale * rng.standard_normal((n, SET_SIZE, 2))
    frac = ((pts**2).sum(-1) < 1.0).mean(1)
    y = (frac - frac.mean()) / frac.std()
    return D.split_arrays(pts.astype(np.float32), y[:, None].astype(np.float32), n_test, seed)


class DeepSets(nn.Module):
    """DeepSets (Zaheer et al., 2017): ``rho(sum_i phi(x_i))``, ``phi`` an MLP 2-64-64 (ReLU) on each point,
    ``rho`` an MLP 64-64-1; the pooling is an unnormalised sum over the set's 500 points."""

    def __init__(self, hidden: int = 64) -> None:
        super().__init__()
        self.phi = nn.Sequential(nn.Linear(2, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU())
        self.rho = nn.Sequential(nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.rho(self.phi(x).sum(1))


for _task in [
    Task(
        "sealed-gcn-graphs",
        GraphConvNet,
        make_graphs,
        mse,
        "mse",
        steps=600,
        batch_size=32,
        description="graph convolutional net (dense adjacency, 3 residual mean-aggregation rounds of width 64, mean "
        "readout) regressing a two-hop neighbourhood statistic of random 24-node graphs; Student-t (2 dof) noise on "
        "the training and the small (96-graph) validation targets, clean test; metric: test MSE",
    ),
    Task(
        "sealed-moe-parity",
        SoftMoE,
        make_parity,
        metric="loss",
        steps=2000,
        batch_size=128,
        description="soft mixture of 4 expert MLPs (40-128-2, softmax gate) on sparse parity (5 hidden bits of 40): "
        "a long plateau at chance before the loss drops; metric: test cross-entropy",
    ),
    Task(
        "sealed-vae-manifold",
        VAE,
        make_manifold,
        elbo_loss,
        "loss",
        steps=200,
        batch_size=256,
        description="variational autoencoder (MLPs 48-256-256, latent 4) of noisy 48-D points on a nonlinearly "
        "embedded torus; 40,000 validation rows against 200 steps of 256; metric: test negative ELBO per coordinate "
        "(posterior mean as the sample)",
    ),
    Task(
        "sealed-fno-reaction",
        pretrained_fno_model,
        make_reaction,
        mse,
        "mse",
        steps=300,
        batch_size=64,
        description="1-D Fourier neural operator (3 layers, 24 channels, 12 modes) pretrained on one Allen-Cahn "
        "reaction-diffusion equation, fine-tuned to map initial fields to the solution of another (half the "
        "diffusivity, twice the reaction rate); metric: test MSE",
    ),
    Task(
        "sealed-rbf-terrain",
        RBFNet,
        make_terrain,
        mse,
        "mse",
        steps=1500,
        batch_size=256,
        description="radial-basis-function network (192 units, learned centres, widths and weights) regressing "
        "elevation in decametres from coordinates in hectometres (5 km square, 8 hills, noise 0.5 dam): best lr "
        "well above 0.1; metric: test MSE (dam^2)",
    ),
    Task(
        "sealed-deepsets-count",
        DeepSets,
        make_point_sets,
        mse,
        "mse",
        steps=300,
        batch_size=32,
        description="DeepSets (phi 2-64-64, unnormalised sum over 500 points, rho 64-64-1) predicting the "
        "standardised fraction of a Gaussian point set inside the unit disc; the initial loss is ~10^3 times the "
        "final one; metric: test MSE",
    ),
]:
    register_task(_task)
