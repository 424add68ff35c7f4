"""Helpers shared by the framework integration tests (tests/test_integrations_*.py)."""

from __future__ import annotations

import glob
import importlib.util
import os
import sys


def importable_torchvision() -> None:
    """Let torchvision's Python parts import where its C++ extension cannot load.

    timm (``torchvision.ops.misc.FrozenBatchNorm2d``) and torchmetrics (so Lightning) import torchvision. The
    torchvision wheels on PyPI link CUDA torch (``libc10_cuda.so``); with the CPU build of torch, its ``_C``
    extension does not load, and torchvision 0.28's ``_meta_registrations`` then fails at import on
    ``torch.library.register_fake("torchvision::nms")`` (the only registration it does not guard with
    ``extension._has_ops()``; ``qnms`` likewise). Defining those two op schemas lets the import finish; the
    ops themselves stay unavailable (no test uses them). Does nothing where the extension loads.
    """
    if "torchvision" in sys.modules:
        return
    spec = importlib.util.find_spec("torchvision")
    if spec is None or not spec.submodule_search_locations:
        return
    import torch

    libraries = glob.glob(os.path.join(spec.submodule_search_locations[0], "_C*.so"))
    try:
        if libraries:
            torch.ops.load_library(libraries[0])
            return
    except OSError:
        pass
    try:
        torch.ops.torchvision.nms  # noqa: B018 - defined by someone already
        return
    except (AttributeError, RuntimeError):
        pass
    lib = torch.library.Library("torchvision", "DEF")
    lib.define("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    lib.define("qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    importable_torchvision.library = lib  # keep the definitions alive


def tiny_gpt2(dtype=None):
    """A 2-layer GPT-2 of 32 tokens built from its config (nothing downloads), seeded, dropout off, float64 by
    default: the HF Trainer tests' model."""
    import torch
    import transformers

    torch.manual_seed(0)
    config = transformers.GPT2Config(
        vocab_size=32,
        n_positions=8,
        n_embd=16,
        n_layer=2,
        n_head=2,
        bos_token_id=0,
        eos_token_id=0,
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
    )
    return transformers.GPT2LMHeadModel(config).to(dtype or torch.float64)


def token_dataset(n: int, seed: int):
    """``n`` rows of 8 random token ids (labels = inputs), as dict items for the HF Trainer's collator."""
    import torch

    class Tokens(torch.utils.data.Dataset):
        def __init__(self) -> None:
            self.ids = torch.randint(0, 32, (n, 8), generator=torch.Generator().manual_seed(seed))

        def __len__(self) -> int:
            return len(self.ids)

        def __getitem__(self, i: int) -> dict:
            return {"input_ids": self.ids[i], "labels": self.ids[i]}

    return Tokens()
