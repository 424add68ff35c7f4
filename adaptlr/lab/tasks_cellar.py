"""Cellar tasks for the tuning-free benchmark: an eighth holdout set, built by someone other than the tuners' author
and kept from him until the very end (no default may be chosen, or even looked at, on them).

Each is of a kind no other lab task is (architecture, loss, data), and each carries a property known to make
automatic lr tuners fail; all data is generated from numpy with fixed seeds (nothing downloads). "A tenth of the
run" below is a separate run of a tenth of the budget (its own warmup and cosine), as a tuner's short trial is;
every lr named is the AdamW warmup-cosine grid's choice on the final validation metric (seeds 0 and 1, or 0 .. 2):

- ``cellar-kan-additive``: a Kolmogorov-Arnold network (radial-basis edges) regressing a smooth 5-input function from
  480 noisy rows; the full run does best at 0.1 (seeds 0, 1, where 0.3 and up diverge over it; 0.3 on seed 2), a tenth
  of the run at 1 .. 3: a short horizon prefers an lr a decade or more too high; the best lr is the default grid's
  top, so its grid is its own (3e-3 .. 3);
- ``cellar-modular-sums``: residue embeddings and an MLP classifying ``(a + b) mod 47`` from 75% of the pairs; it
  memorises before it generalises: over a tenth of the run every lr's validation loss is above chance (log 47 =
  3.85; 4.3 at 3e-4, the least trained, the best; ~7 at 0.03 .. 0.1), while over the full run 0.1 generalises
  (validation loss 0.05, 0.003; 0.03 next): a short horizon prefers an lr 2.5 decades too low; its grid is its own
  (3e-4 .. 0.3: 0.3 diverges);
- ``cellar-duffing-sysid``: system identification of a driven Duffing oscillator, its four physical parameters
  learned in their natural units through an RK4 integration; the full run does best at 0.1 (it settles in a local
  fit, validation MSE 4.4 cm^2 against a noise floor of 0.01), a tenth of the run at 1: a decade too high; its grid
  is its own (0.01 .. 10: the best lr is the default grid's top);
- ``cellar-cox-survival``: a DeepSurv risk network under the Cox partial likelihood of right-censored survival
  times (56% censored), with a 100-row validation split: its metric moves by 0.1 .. 0.9 nats between evaluations
  at one lr (from 3e-3 up), more than it separates the best lrs, and it picks 1e-3 on seeds 0 .. 2 where the test
  metric prefers 3e-3 on two; a tenth of the run does best at 0.03 .. 0.1, 1.5 to 2 decades above the full run;
- ``cellar-lora-shift``: low-rank adapters (LoRA) on a classifier pretrained in its builder on one sensor domain,
  fine-tuned to a rotated one (its data and model: :mod:`adaptlr.lab.sensorshift`): it starts near a good solution
  (validation cross-entropy 0.21 before any step; a fresh model 2.1); the full run does best at 1e-3, a tenth of it at
  1e-2; from 3e-3 up the validation loss falls, then climbs (it overfits late), and 0.1 diverges;
- ``cellar-sgns-topics``: word2vec's skip-gram with negative sampling on a synthetic topic-model corpus; validation
  (150,000 rows) is large against the short run (800 steps of 256: one validation pass costs about a quarter of the
  budget, at the benchmark's one forward = a third of a step); best lr 0.03 at both horizons.

``GRIDS`` gives the tasks whose best lr lies outside the benchmark's default grid (1e-4 .. 1e-1), on its edge, or
whose short runs' best does, a 7-point half-decade grid of their own around it (:func:`adaptlr.lab.tuning_free.grid_lrs`
consults it).

>>> from adaptlr.lab.tasks import get_task
>>> get_task("cellar-cox-survival").metric
'loss'
>>> CELLAR[0]
'cellar-kan-additive'
"""

from __future__ import annotations

import functools

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from . import data as D
from .sensorshift import LoRAClassifier, make_lora_shift
from .tasks import Task, mse, register_task

__all__ = [
    "CELLAR",
    "GRIDS",
    "KAN",
    "DuffingModel",
    "KANLayer",
    "ModularSumNet",
    "SkipGram",
    "cox_loss",
    "make_duffing",
    "make_kan_additive",
    "make_modular_sums",
    "make_sgns",
    "make_survival",
    "sgns_loss",
]

CELLAR: tuple[str, ...] = (
    "cellar-kan-additive",
    "cellar-modular-sums",
    "cellar-duffing-sysid",
    "cellar-cox-survival",
    "cellar-lora-shift",
    "cellar-sgns-topics",
)

#: task -> its own 7-point half-decade lr grid, for tasks whose best lr lies on the default grid's (1e-4 .. 1e-1)
#: edge, or whose short runs' best lies outside it; each was placed so that its full run's best lr is inside it
GRIDS: dict[str, tuple[float, ...]] = {
    "cellar-duffing-sysid": (0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0),
    "cellar-kan-additive": (3e-3, 0.01, 0.03, 0.1, 0.3, 1.0, 3.0),
    "cellar-modular-sums": (3e-4, 1e-3, 3e-3, 0.01, 0.03, 0.1, 0.3),
}


# ---- cellar-kan-additive ---------------------------------------------------------------------------------

KAN_NOISE = 0.4


def _kan_target(x: np.ndarray) -> np.ndarray:
    """A smooth function of 5 inputs in Kolmogorov-Arnold form: an outer function of a sum of inner 1-D ones, plus
    an interaction and a linear term."""
    inner = np.sin(np.pi * x[:, 0]) + x[:, 1] ** 2 + 0.5 * np.tanh(3 * x[:, 2]) - 0.7 * np.abs(x[:, 3])
    return np.exp(-0.5 * inner**2) + 0.5 * np.cos(2 * x[:, 0] * x[:, 3]) + 0.3 * x[:, 4]


@functools.cache
def make_kan_additive(n: int = 600, n_test: int = 2000, seed: int = 71) -> D.ArrayData:
    """Inputs ``(n, 5)`` uniform on ``[-1, 1]^5``, the target ``(n, 1)``: :func:`_kan_target`, standardised; the
    ``n`` training rows (100 of them carved for validation) carry Gaussian noise of std ``KAN_NOISE``, the test rows
    none."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(-1, 1, (n + n_test, 5))
    y = _kan_target(x)[:, None]
    y = (y - y.mean()) / y.std()
    noisy = y[:n] + KAN_NOISE * rng.standard_normal((n, 1))
    t = torch.from_numpy
    f32 = np.float32
    return D.ArrayData(t(x[:n].astype(f32)), t(noisy.astype(f32)), t(x[n:].astype(f32)), t(y[n:].astype(f32)))


class KANLayer(nn.Module):
    """A Kolmogorov-Arnold layer (Liu et al., 2024) with Gaussian radial bases (as FastKAN, Li 2024): output ``o``
    is ``sum_i phi_oi(x_i)``, each edge's ``phi_oi(x) = sum_k c_oik exp(-((x - g_k) / h)^2) + w_oi silu(x)`` on
    ``basis`` centres ``g_k`` evenly spaced on ``[low, high]`` (width ``h`` their spacing)."""

    def __init__(self, inputs: int, outputs: int, basis: int = 12, low: float = -2.0, high: float = 2.0) -> None:
        super().__init__()
        self.register_buffer("centres", torch.linspace(low, high, basis), persistent=False)
        self.width = (high - low) / (basis - 1)
        self.coef = nn.Parameter(0.1 * torch.randn(outputs, inputs, basis))
        self.base = nn.Linear(inputs, outputs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        phi = torch.exp(-(((x[..., None] - self.centres) / self.width) ** 2))  # (batch, inputs, basis)
        return torch.einsum("bik,oik->bo", phi, self.coef) + self.base(F.silu(x))


class KAN(nn.Module):
    """A Kolmogorov-Arnold network 5-16-16-1 (:class:`KANLayer`, 12 bases per edge), the inputs scaled to
    ``[-2, 2]``, a LayerNorm (no affine) before each later layer to keep its inputs on the bases' range."""

    def __init__(self, sizes: tuple[int, ...] = (5, 16, 16, 1), basis: int = 12) -> None:
        super().__init__()
        self.layers = nn.ModuleList(KANLayer(i, o, basis) for i, o in zip(sizes[:-1], sizes[1:], strict=True))
        self.norms = nn.ModuleList(nn.LayerNorm(o, elementwise_affine=False) for o in sizes[1:-1])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for k, layer in enumerate(self.layers):
            x = layer(x * 2 if k == 0 else self.norms[k - 1](x))
        return x


# ---- cellar-modular-sums ------------------------------------------------------------------------------

MODULUS = 47


@functools.cache
def make_modular_sums(train_fraction: float = 0.75, n_val: int = 200, seed: int = 72) -> D.ArrayData:
    """Every pair ``(a, b)`` of residues modulo ``MODULUS`` (47) as int64 ``(n, 2)``, the class ``(a + b) mod 47``:
    ``train_fraction`` of the 2,209 pairs train, ``n_val`` validate, the rest (353) test."""
    rng = np.random.default_rng(seed)
    a, b = np.meshgrid(np.arange(MODULUS), np.arange(MODULUS), indexing="ij")
    x = np.stack([a.ravel(), b.ravel()], 1)
    y = (x[:, 0] + x[:, 1]) % MODULUS
    perm = rng.permutation(len(x))
    n_train = int(train_fraction * len(x))
    tr, va, te = perm[:n_train], perm[n_train : n_train + n_val], perm[n_train + n_val :]
    t = torch.from_numpy
    return D.ArrayData(t(x[tr]), t(y[tr]), t(x[te]), t(y[te]), x_val=t(x[va]), y_val=t(y[va]))


class ModularSumNet(nn.Module):
    """An embedding of each residue (dimension 32, shared by ``a`` and ``b``), concatenated, into an MLP 64-512-47
    (GELU, a LayerNorm before the readout): class logits of the sum."""

    def __init__(self, dim: int = 32, hidden: int = 512) -> None:
        super().__init__()
        self.embed = nn.Embedding(MODULUS, dim)
        self.net = nn.Sequential(
            nn.Linear(2 * dim, hidden), nn.GELU(), nn.LayerNorm(hidden), nn.Linear(hidden, MODULUS)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(self.embed(x).flatten(1))


# ---- cellar-duffing-sysid --------------------------------------------------------------------------------

DUFFING_TIMES = 16
DUFFING_DT = 0.02  # seconds per RK4 step; the trajectory: 2 steps apart, 0.04 s .. 0.64 s
#: the true parameters: stiffness alpha (s^-2), damping delta (s^-1), cubic stiffness beta (m^-2 s^-2), drive
#: frequency omega (rad/s)
DUFFING_TRUE = {"alpha": 400.0, "delta": 3.0, "beta": 3.0e4, "omega": 14.0}
DUFFING_NOISE_CM = 0.1
DUFFING_GUESS = {"alpha": 250.0, "delta": 8.0, "beta": 1.0e4, "omega": 14.0}


def _duffing_rk4(state: torch.Tensor, gamma: torch.Tensor, p: dict[str, torch.Tensor], steps: int) -> torch.Tensor:
    """The positions (metres) every second step of a classical RK4 integration (step ``DUFFING_DT``) of the driven
    Duffing oscillator ``x'' = gamma cos(omega t) - delta x' - alpha x - beta x^3`` from ``state = (x, x')``
    ``(n, 2)`` with drive amplitudes ``gamma`` ``(n, 1)`` (m s^-2) and parameters ``p``: ``(n, steps // 2)``."""

    def f(t: float, s: torch.Tensor) -> torch.Tensor:
        x, v = s[:, :1], s[:, 1:]
        acc = gamma * torch.cos(p["omega"] * t) - p["delta"] * v - p["alpha"] * x - p["beta"] * x**3
        return torch.cat([v, acc], 1)

    out, t, h = [], 0.0, DUFFING_DT
    for i in range(steps):
        k1 = f(t, state)
        k2 = f(t + h / 2, state + h / 2 * k1)
        k3 = f(t + h / 2, state + h / 2 * k2)
        k4 = f(t + h, state + h * k3)
        state = state + h / 6 * (k1 + 2 * k2 + 2 * k3 + k4)
        t += h
        if (i + 1) % 2 == 0:
            out.append(state[:, :1])
    return torch.cat(out, 1)


@functools.cache
def make_duffing(n: int = 1500, n_test: int = 500, seed: int = 73) -> D.ArrayData:
    """Rows ``(n, 3)``: an initial position (m, uniform on +-3 cm), velocity (m/s, +-0.5) and drive amplitude
    (m s^-2, 5 .. 25); the target ``(n, 16)``: the oscillator's position in centimetres at 0.04 .. 0.64 s under
    ``DUFFING_TRUE`` (integrated in float64), with measurement noise of std ``DUFFING_NOISE_CM``."""
    rng = np.random.default_rng(seed)
    x0 = np.stack([rng.uniform(-0.03, 0.03, n), rng.uniform(-0.5, 0.5, n), rng.uniform(5.0, 25.0, n)], 1)
    xt = torch.from_numpy(x0)
    p = {k: torch.tensor(v, dtype=torch.float64) for k, v in DUFFING_TRUE.items()}
    y = _duffing_rk4(xt[:, :2], xt[:, 2:], p, 2 * DUFFING_TIMES).numpy() * 100  # centimetres
    y = y + DUFFING_NOISE_CM * rng.standard_normal(y.shape)
    return D.split_arrays(x0.astype(np.float32), y.astype(np.float32), n_test, seed)


class DuffingModel(nn.Module):
    """A grey-box model: the Duffing oscillator of :func:`_duffing_rk4` with its four physical parameters learned,
    in their natural units (``alpha`` s^-2, ``delta`` s^-1, ``beta`` m^-2 s^-2, ``omega`` rad/s), started at
    ``DUFFING_GUESS`` (the global RNG unused); ``(n, 3) -> (n, 16)`` positions in centimetres."""

    def __init__(self) -> None:
        super().__init__()
        self.physical = nn.ParameterDict({k: nn.Parameter(torch.tensor(v)) for k, v in DUFFING_GUESS.items()})

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 100 * _duffing_rk4(x[:, :2], x[:, 2:], dict(self.physical), 2 * DUFFING_TIMES)


# ---- cellar-cox-survival ---------------------------------------------------------------------------------

SURVIVAL_FEATURES = 12


@functools.cache
def make_survival(n: int = 3000, n_test: int = 2000, n_val: int = 100, seed: int = 74) -> D.ArrayData:
    """Covariates ``(n, 12)`` (standard normal) and ``(time, event)`` ``(n, 2)``: Weibull (shape 1.5) event times
    whose log-hazard is a nonlinear function of 5 covariates (an interaction, a sine, a hinge squared), right-censored
    by independent exponential times; ``event`` is 1 where the event was seen, 0 where censored. Validation:
    ``n_val`` rows carved from the training ones."""
    rng = np.random.default_rng(seed)
    m = n + n_test
    x = rng.standard_normal((m, SURVIVAL_FEATURES))
    risk = 1.6 * x[:, 0] - 1.2 * x[:, 1] * x[:, 2] + np.sin(2 * x[:, 3]) + 0.8 * np.maximum(x[:, 4], 0) ** 2
    times = rng.weibull(1.5, m) * np.exp(-risk / 1.5)
    censor = rng.exponential(np.median(times) * 1.2, m)
    event = (times <= censor).astype(np.float32)
    y = np.stack([np.minimum(times, censor), event], 1).astype(np.float32)
    perm = rng.permutation(m)
    te, rest = perm[:n_test], perm[n_test:]
    t = torch.from_numpy
    x = x.astype(np.float32)
    return D.ArrayData(t(x[rest]), t(y[rest]), t(x[te]), t(y[te]), val_fraction=n_val / len(rest))


def cox_loss(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    r"""The negative Cox partial log-likelihood per event (Breslow; DeepSurv, Katzman et al., 2018) of risk scores
    ``out`` ``(n, 1)`` over the rows given (their risk sets: the rows of the batch still at risk),
    :math:`-\frac{1}{|E|}\sum_{i \in E} \big(r_i - \log \sum_{j: t_j \ge t_i} e^{r_j}\big)`."""
    time, event = y[:, 0], y[:, 1]
    order = torch.argsort(time, descending=True)
    risk, event = out[order, 0], event[order]
    log_risk_set = torch.logcumsumexp(risk, 0)
    return -((risk - log_risk_set) * event).sum() / event.sum().clamp_min(1.0)


def _survival_model() -> nn.Module:
    """DeepSurv's network: an MLP 12-128-128-1 (ELU) writing a risk score."""
    return nn.Sequential(nn.Linear(SURVIVAL_FEATURES, 128), nn.ELU(), nn.Linear(128, 128), nn.ELU(), nn.Linear(128, 1))


# ---- cellar-sgns-topics ----------------------------------------------------------------------------------

VOCAB, NEGATIVES = 500, 5


@functools.cache
def make_sgns(n_train: int = 80000, n_val: int = 150000, n_test: int = 20000, seed: int = 78) -> D.ArrayData:
    """Skip-gram rows ``(n, 7)`` int64 of a synthetic corpus of ``VOCAB`` (500) words: a centre word (Zipf
    frequencies), a context word that shares a topic with it (25 topics, each word's topic mixture Dirichlet(0.1):
    ``p(c | w)`` proportional to ``freq(c) sum_k p(k | w) p(k | c)``) and 5 negatives drawn from the unigram
    distribution to the 3/4; the target ``(n, 1)`` is unused (zeros). Every row distinct; validation
    (``n_val`` rows) is given, large, not carved."""
    rng = np.random.default_rng(seed)
    topics = 25
    word_topic = rng.dirichlet(np.full(topics, 0.1), VOCAB)  # each word's topics
    freq = 1.0 / np.arange(1, VOCAB + 1) ** 1.0
    freq /= freq.sum()
    m = int(1.2 * (n_train + n_val + n_test))
    centre = rng.choice(VOCAB, m, p=freq)
    # a context word shares a topic with its centre word: p(c | w) ∝ freq(c) sum_k p(k | w) p(k | c)
    affinity = word_topic @ word_topic.T * freq[None]
    affinity /= affinity.sum(1, keepdims=True)
    cdf = affinity.cumsum(1)
    context = (cdf[centre] < rng.uniform(0, 1, (m, 1))).sum(1).clip(0, VOCAB - 1)
    noise = freq**0.75 / (freq**0.75).sum()
    neg = rng.choice(VOCAB, (m, NEGATIVES), p=noise)
    x = np.concatenate([centre[:, None], context[:, None], neg], 1)
    x = np.unique(x, axis=0)
    x = x[rng.permutation(len(x))][: n_train + n_val + n_test]
    y = np.zeros((len(x), 1), np.float32)
    t = torch.from_numpy
    a, b = n_train, n_train + n_val
    return D.ArrayData(t(x[:a]), t(y[:a]), t(x[b:]), t(y[b:]), x_val=t(x[a:b]), y_val=t(y[a:b]))


def sgns_loss(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    r"""Skip-gram with negative sampling's loss (Mikolov et al., 2013) from a :class:`SkipGram`'s scores ``out``
    ``(n, 6)`` (the context's, then the negatives'): :math:`-\log\sigma(s_c) - \sum_k \log\sigma(-s_k)`, mean
    over rows (``y`` unused)."""
    return -(F.logsigmoid(out[:, :1]).sum(1) + F.logsigmoid(-out[:, 1:]).sum(1)).mean()


class SkipGram(nn.Module):
    """word2vec's skip-gram: a centre-word and a context-word embedding table (500 x 32; the centre's uniform on
    ``+-0.5 / 32``, the context's zero, as word2vec starts them), each row's scores the dot products of its centre
    word's vector with its context word's and its negatives'."""

    def __init__(self, dim: int = 32) -> None:
        super().__init__()
        self.centre = nn.Embedding(VOCAB, dim)
        self.context = nn.Embedding(VOCAB, dim)
        nn.init.uniform_(self.centre.weight, -0.5 / dim, 0.5 / dim)
        nn.init.zeros_(self.context.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.einsum("bd,bkd->bk", self.centre(x[:, 0]), self.context(x[:, 1:]))


for _task in [
    Task(
        "cellar-kan-additive",
        KAN,
        make_kan_additive,
        mse,
        "mse",
        steps=2000,
        batch_size=32,
        description="Kolmogorov-Arnold network 5-16-16-1 (Gaussian radial bases, 12 per edge) regressing a smooth "
        "5-input function from 400 noisy rows (noise std 0.4 on a unit-variance target); best lrs 0.1 .. 0.3, a "
        "tenth of the run prefers 1 .. 3 (its own grid, 3e-3 .. 3); metric: test MSE on clean targets",
    ),
    Task(
        "cellar-modular-sums",
        ModularSumNet,
        make_modular_sums,
        metric="loss",
        steps=2000,
        batch_size=64,
        description="residue embeddings and an MLP (64-512-47, GELU, LayerNorm) classifying (a + b) mod 47 from 75% "
        "of the pairs: it memorises first (validation loss above chance) and generalises only late, at a large lr "
        "(its own grid, 1e-3 .. 1); metric: test cross-entropy",
    ),
    Task(
        "cellar-duffing-sysid",
        DuffingModel,
        make_duffing,
        mse,
        "mse",
        steps=300,
        batch_size=64,
        description="system identification: the four physical parameters (natural units) of a driven Duffing "
        "oscillator integrated by RK4, fitted to noisy trajectories (16 positions in cm over 0.64 s) from a poor "
        "guess (its own grid, 0.01 .. 10); metric: test MSE",
    ),
    Task(
        "cellar-cox-survival",
        _survival_model,
        make_survival,
        cox_loss,
        "loss",
        steps=1500,
        batch_size=64,
        description="DeepSurv: an MLP 12-128-128-1 (ELU) scoring risk under the Cox partial likelihood of "
        "right-censored Weibull survival times; a 100-row validation split (its partial likelihood is noisy); "
        "metric: test negative partial log-likelihood per event (risk sets within batches of 1000)",
    ),
    Task(
        "cellar-lora-shift",
        LoRAClassifier,
        make_lora_shift,
        metric="loss",
        steps=1000,
        batch_size=64,
        description="LoRA (rank 4, biases trained) on a frozen MLP 20-128-128-8 pretrained in its builder on one "
        "sensor domain, fine-tuned to a rotated one (960 training rows); metric: test cross-entropy",
    ),
    Task(
        "cellar-sgns-topics",
        SkipGram,
        make_sgns,
        sgns_loss,
        "loss",
        steps=800,
        batch_size=256,
        description="word2vec skip-gram with 5 negatives (embeddings 500 x 32) on a synthetic topic-model corpus "
        "(Zipf word frequencies); 150,000 validation rows against 800 steps of 256; metric: test SGNS loss",
    ),
]:
    register_task(_task)
