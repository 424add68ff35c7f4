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
