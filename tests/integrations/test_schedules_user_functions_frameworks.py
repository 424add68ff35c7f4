"""User functions in schedules, unregistered, in Lightning and in the Hugging Face Trainer (the real packages):
each step applies the function's value, checkpoints save (the frameworks' own torch.save / torch.load) and a
resume with the same function continues bit for bit (issue 18)."""

from __future__ import annotations

import importlib.util
import os
import warnings

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")

import pytest  # noqa: E402
import torch  # noqa: E402
from _integrations import importable_torchvision  # noqa: E402

import adaptlr  # noqa: E402
from adaptlr import schedules as S  # noqa: E402

importable_torchvision()

STEPS_PER_EPOCH = 4


def _per_epoch(epoch):  # the oracle's copy of the function each test builds as a lambda or a closure
    return 0.05 * 0.5**epoch


def _closure(init, rate):
    def decay(step):
        return init * rate**step

    return decay


# ------------------------------------------------------------------------------------------------ Lightning
def _lightning():
    if importlib.util.find_spec("lightning") is None and importlib.util.find_spec("pytorch_lightning") is None:
        pytest.skip("the integrations extra (pytorch-lightning) is not installed")
    from adaptlr.integrations import lightning as al

    return al.pl


class _AppliedSGD:
    """The lr each step applied, measured on one weight: SGD without momentum moves it by -lr * grad (float64)."""

    def __init__(self):
        self.applied = []

    def before(self, p):
        self.p, self.x, self.g = p, p.detach().clone().flatten(), p.grad.detach().clone().flatten()

    def after(self):
        i = int(torch.argmax(self.g.abs()))
        self.applied.append(float((self.x[i] - self.p.detach().flatten()[i]) / self.g[i]))


def _lightning_run(tmp_path, make_optimizers, epochs, resume=None):
    pl = _lightning()
    applied = _AppliedSGD()

    class Module(pl.LightningModule):
        def __init__(self):
            super().__init__()
            torch.manual_seed(0)
            self.net = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1)).double()

        def training_step(self, batch, batch_idx):
            return torch.nn.functional.mse_loss(self.net(batch[0]), batch[1])

        def on_before_optimizer_step(self, optimizer):
            applied.before(self.net[0].weight)

        def on_train_batch_end(self, outputs, batch, batch_idx):
            applied.after()

        def configure_optimizers(self):
            return make_optimizers(self)

    g = torch.Generator().manual_seed(0)
    x = torch.randn(16, 4, generator=g, dtype=torch.float64)
    y = x.sum(1, keepdim=True).sin()
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=16 // STEPS_PER_EPOCH)
    ckpt = pl.callbacks.ModelCheckpoint(dirpath=tmp_path, save_top_k=-1, every_n_epochs=1, filename="{epoch}")
    trainer = pl.Trainer(
        max_epochs=epochs,
        logger=False,
        callbacks=[ckpt],
        accelerator="cpu",
        enable_progress_bar=False,
        enable_model_summary=False,
        deterministic=True,
    )
    module = Module()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", ".*(does not have many workers|LeafSpec|weights_only|dirpath has changed).*")
        trainer.fit(module, loader, ckpt_path=resume)
    return module, applied.applied


def _params(module):
    return torch.cat([p.detach().flatten() for p in module.parameters()])


@pytest.mark.slow
def test_lightning_adaptlr_optimizer_with_an_unregistered_per_epoch_lambda(tmp_path):
    def make(module):  # a new lambda each time: the same function, not the same object
        return adaptlr.SGD(module.parameters(), lr=S.from_epochs(lambda e: 0.05 * 0.5**e, STEPS_PER_EPOCH))

    whole, applied = _lightning_run(tmp_path / "a", make, epochs=3)
    assert applied == pytest.approx([_per_epoch(t // STEPS_PER_EPOCH) for t in range(12)], rel=1e-9)
    resumed, applied2 = _lightning_run(tmp_path / "b", make, epochs=3, resume=str(tmp_path / "a" / "epoch=0.ckpt"))
    assert applied2 == applied[STEPS_PER_EPOCH:]
    assert torch.equal(_params(resumed), _params(whole))


@pytest.mark.slow
def test_lightning_torch_optimizer_with_an_unregistered_closure_under_as_torch_scheduler(tmp_path):
    def make(module):
        opt = torch.optim.SGD(module.parameters(), lr=0.1)
        sched = S.as_torch_scheduler(opt, S.warmup(_closure(1.0, 0.9), steps=3))
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    def want(t):
        return 0.1 * (t / 3 if t < 3 else 0.9 ** (t - 3))

    whole, applied = _lightning_run(tmp_path / "a", make, epochs=3)
    assert applied == pytest.approx([want(t) for t in range(12)], rel=1e-9)
    resumed, applied2 = _lightning_run(tmp_path / "b", make, epochs=3, resume=str(tmp_path / "a" / "epoch=0.ckpt"))
    assert applied2 == applied[STEPS_PER_EPOCH:]
    assert torch.equal(_params(resumed), _params(whole))


# ------------------------------------------------------------------------------------------------ HF Trainer
def _transformers():
    transformers = pytest.importorskip("transformers", reason="the integrations extra (transformers) is not installed")
    pytest.importorskip("accelerate", reason="the integrations extra (accelerate) is not installed")
    return transformers


class _Tokens(torch.utils.data.Dataset):
    def __init__(self, n, seed):
        self.ids = torch.randint(0, 32, (n, 8), generator=torch.Generator().manual_seed(seed))

    def __len__(self):
        return len(self.ids)

    def __getitem__(self, i):
        return {"input_ids": self.ids[i], "labels": self.ids[i]}


def _hf_run(out, fn, resume=None):
    transformers = _transformers()
    from adaptlr.integrations.transformers import optimizers

    torch.manual_seed(0)
    config = transformers.GPT2Config(
        vocab_size=32, n_positions=8, n_embd=16, n_layer=1, n_head=2, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0
    )
    model = transformers.GPT2LMHeadModel(config).double()
    applied = _AppliedSGD()

    class Applied(transformers.TrainerCallback):
        def on_pre_optimizer_step(self, args, state, control, model=None, **kwargs):
            applied.before(model.transformer.wte.weight)

        def on_optimizer_step(self, args, state, control, **kwargs):
            applied.after()

    args = transformers.TrainingArguments(
        output_dir=str(out),
        per_device_train_batch_size=4,
        max_steps=8,
        save_strategy="steps",
        save_steps=4,
        logging_steps=1,
        report_to=[],
        max_grad_norm=0.0,
        use_cpu=True,
        seed=0,
        disable_tqdm=True,
        dataloader_num_workers=0,
    )
    opt = adaptlr.SGD(model.parameters(), lr=S.warmup(fn, steps=2))
    trainer = transformers.Trainer(
        model=model, args=args, train_dataset=_Tokens(32, 0), callbacks=[Applied()], optimizers=optimizers(opt)
    )
    trainer.train(resume_from_checkpoint=resume)
    return trainer, applied.applied


@pytest.mark.slow
def test_hf_trainer_adaptlr_optimizer_with_an_unregistered_closure_logs_applies_and_resumes(tmp_path):
    whole, applied = _hf_run(tmp_path / "a", _closure(0.05, 0.8))
    want = [0.05 * (t / 2 if t < 2 else 0.8 ** (t - 2)) for t in range(8)]
    assert applied == pytest.approx(want, rel=1e-9)
    logged = [e["learning_rate"] for e in whole.state.log_history if "learning_rate" in e]
    assert logged == pytest.approx(want, rel=1e-12)  # the lr each step used
    # the Trainer's own checkpoint (optimizer.pt, loaded with torch.load(weights_only=True)), the same function
    resumed, applied2 = _hf_run(tmp_path / "b", _closure(0.05, 0.8), resume=str(tmp_path / "a" / "checkpoint-4"))
    assert applied2 == applied[4:]
    assert torch.equal(_params(resumed.model), _params(whole.model))
