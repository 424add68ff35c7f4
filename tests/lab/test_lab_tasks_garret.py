"""The tuning-free benchmark's garret tasks: each builds, has disjoint train / validation / test splits of the right
shapes and dtypes, is deterministic by seed, and AdamW steps lower its training loss; each has the property its
docstring claims where that is cheap to check; the set is wired into the benchmark (``--tasks garret``)."""

import numpy as np
import pytest
import torch
from _task_sets import (
    check_data,
    check_held_out_set,
    check_registered_by_the_lab,
    check_runs_deterministic,
    check_training_progress,
)

from adaptlr.lab import tasks_garret as Ga
from adaptlr.lab import tuning_free as TF
from adaptlr.lab.tasks import get_task

NAMES = list(Ga.GARRET)
FACTORIES = {
    "garret-curriculum-noise": Ga.make_curriculum,
    "garret-tied-autoencoder": Ga.make_manifold64,
    "garret-mos-markov": Ga.make_markov_text,
    "garret-cosine-fewval": Ga.make_few_val,
    "garret-hetero-weak": Ga.make_hetero_weak,
    "garret-attn-recall": Ga.make_recall,
}
#: (input shape after the batch, input dtype, target shape after the batch, target dtype)
SHAPES = {
    "garret-curriculum-noise": ((Ga.CUR_DIM,), torch.float32, (), torch.int64),
    "garret-tied-autoencoder": ((Ga.AE_DIM,), torch.float32, (Ga.AE_DIM,), torch.float32),
    "garret-mos-markov": ((Ga.MOS_CONTEXT,), torch.int64, (), torch.int64),
    "garret-cosine-fewval": ((Ga.FEW_DIM,), torch.float32, (), torch.int64),
    "garret-hetero-weak": ((Ga.HET_DIM,), torch.float32, (1,), torch.float32),
    "garret-attn-recall": ((2 * Ga.REC_PAIRS + 1,), torch.int64, (), torch.int64),
}
#: an lr at which 40 AdamW steps (150 for the mixture of softmaxes, slower to start) make clear progress
LRS = {
    "garret-curriculum-noise": 3e-3,
    "garret-tied-autoencoder": 3e-3,
    "garret-mos-markov": 0.01,
    "garret-cosine-fewval": 3e-3,
    "garret-hetero-weak": 0.01,
    "garret-attn-recall": 3e-3,
}


def test_the_set_is_registered_listed_and_new():
    check_held_out_set("garret", Ga, FACTORIES)
    assert TF.grid_lrs("loft-softtree-noisy")[-1] == 30.0  # the other sets' grids are still consulted
    assert TF.task_sets()["loft"] == list(TF.tasks_loft.LOFT)


@pytest.mark.parametrize("name", NAMES)
def test_data_is_deterministic_with_shapes_dtypes_and_disjoint_splits(name):
    check_data(name, FACTORIES[name], SHAPES[name], val_rows=Ga.FEW_VAL if name == "garret-cosine-fewval" else None)


@pytest.mark.parametrize("name", sorted(LRS))
def test_a_few_adamw_steps_lower_the_training_loss(name):
    check_training_progress(name, LRS[name], 150 if name == "garret-mos-markov" else 40)


@pytest.mark.parametrize("name", ["garret-curriculum-noise", "garret-mos-markov", "garret-hetero-weak"])
def test_runs_are_deterministic_by_seed(name):
    check_runs_deterministic(name)


def test_the_curriculum_runs_from_clean_to_noisy_in_stream_order():
    d = Ga.make_curriculum()
    task = get_task("garret-curriculum-noise")
    assert len(d.x_train) == task.steps * task.batch_size  # the budget walks the stream once
    x = d.x_train.numpy().astype(np.float64)
    clean = Ga._teacher_logits(x, Ga.CUR_CLASSES, 111).argmax(1) == d.y_train.numpy()
    tenth = len(x) // 10
    assert clean[:tenth].mean() > 0.97 and 0.55 < clean[-tenth:].mean() < 0.7  # noise rises along the stream
    val = Ga._teacher_logits(d.x_val.numpy().astype(np.float64), Ga.CUR_CLASSES, 111).argmax(1)
    assert (val == d.y_val.numpy()).all()
    batches = d.batches(task.batch_size, torch.Generator().manual_seed(0))
    first = torch.cat([next(batches)[0] for _ in range(8)])
    assert {r.numpy().tobytes() for r in first} == {r.numpy().tobytes() for r in d.x_train[: 8 * task.batch_size]}


def test_the_autoencoder_decodes_with_its_encoders_transposes():
    torch.manual_seed(0)
    model = Ga.TiedAutoencoder()
    assert {n for n, _ in model.named_parameters()} == {
        "enc1.weight",
        "enc1.bias",
        "enc2.weight",
        "enc2.bias",
        "dec2",
        "dec1",
    }
    x = torch.randn(3, Ga.AE_DIM)
    h = torch.tanh(model.enc2(torch.tanh(model.enc1(x))))
    manual = torch.tanh(h @ model.enc2.weight) @ model.enc1.weight  # the decoder biases start at zero
    assert torch.allclose(model(x), manual, atol=1e-6)
    d = Ga.make_manifold64()
    assert torch.equal(d.x_train, d.y_train)


def test_the_mixture_of_softmaxes_is_a_distribution_over_the_vocabulary():
    torch.manual_seed(0)
    model = Ga.MixtureOfSoftmaxes()
    d = Ga.make_markov_text()
    out = model(d.x_val[:5])
    assert out.shape == (5, Ga.MOS_VOCAB)
    assert torch.allclose(out.exp().sum(1), torch.ones(5), atol=1e-5)
    assert int(d.x_train.max()) < Ga.MOS_VOCAB and int(d.y_train.max()) < Ga.MOS_VOCAB


def test_the_cosine_classifier_logits_are_bounded_by_its_scale():
    torch.manual_seed(0)
    model = Ga.CosineClassifier()
    with torch.no_grad():
        out = model(torch.randn(8, Ga.FEW_DIM) * 100)
        assert float(out.abs().max()) <= float(model.scale) + 1e-4
    assert len(Ga.make_few_val().x_val) == Ga.FEW_VAL


def test_the_gaussian_nll_and_the_weak_signal():
    y = torch.tensor([[1.0], [0.0]])
    out = torch.tensor([[0.0, 0.0], [0.0, float(np.log(4.0))]])
    assert float(Ga.gaussian_nll(out, y)) == pytest.approx(0.5 * ((0 + 1) + (np.log(4.0) + 0)) / 2)
    d = Ga.make_hetero_weak()
    y = d.y_test.numpy()[:, 0].astype(np.float64)
    assert y.std() > 1.2  # the noise dwarfs the mean (its std about 0.2)


def test_the_recall_target_is_the_querys_value_and_the_model_attends_only():
    d = Ga.make_recall()
    x, y = d.x_val.numpy(), d.y_val.numpy()
    keys, values = x[:, 0:-1:2], x[:, 1:-1:2] - Ga.REC_KEYS
    assert (keys < Ga.REC_KEYS).all() and (values >= 0).all()
    assert all(len(set(k)) == Ga.REC_PAIRS for k in keys[:200])  # the keys in a sequence are distinct
    hit = keys == x[:, -1:]
    assert (hit.sum(1) == 1).all() and (values[hit] == y).all()
    model = Ga.AttentionOnly()
    kinds = {type(m) for m in model.modules()}
    assert torch.nn.MultiheadAttention in kinds and not kinds & {torch.nn.LayerNorm, torch.nn.ReLU, torch.nn.GELU}


def test_importing_the_lab_registers_them():
    check_registered_by_the_lab("garret", NAMES)
