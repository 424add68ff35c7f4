"""Peak memory of adaptlr.Auto against one plain run of the same loop (issue 20: bounded memory).

Each measurement runs in its own process (peak resident memory, ``ru_maxrss``, is per process): a plain run
(AdamW, ``--steps`` steps) and ``Auto(offload=...).fit`` with the same budget, on an MLP of ``--params``
parameters (50M by default: 200 MB of float32 weights, 800 MB with gradients and AdamW's two moments). On CUDA
(``--device cuda``) it reports ``torch.cuda.max_memory_allocated`` instead: racer states then wait in host memory
(``offload="auto"``), and the target is a peak at most 1.2x the plain run's.

    python benchmarks/auto_memory.py                      # CPU: plain vs Auto(offload="disk") and "host"
    python benchmarks/auto_memory.py --device cuda        # GPU: plain vs Auto(offload="auto")
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time


def _model(params: int, device: str):
    import torch

    width = int((params / 3) ** 0.5)  # three square layers
    torch.manual_seed(0)
    layers = [torch.nn.Linear(width, width, bias=False) for _ in range(3)]
    return torch.nn.Sequential(layers[0], torch.nn.Tanh(), layers[1], torch.nn.Tanh(), layers[2]).to(device), width


def _batches(width: int, n: int, device: str):
    import torch

    g = torch.Generator().manual_seed(1)
    return [
        (torch.randn(4, width, generator=g).to(device), torch.randn(4, width, generator=g).to(device)) for _ in range(n)
    ]


def child(mode: str, params: int, steps: int, device: str) -> dict:
    import torch
    from torch.nn import functional as F

    import adaptlr
    from adaptlr.auto import Auto

    torch.set_num_threads(1)
    model, width = _model(params, device)
    train, val = _batches(width, 8, device), _batches(width, 2, device)
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    if mode == "plain":
        opt = adaptlr.AdamW(model.parameters(), lr=1e-3)
        for i in range(steps):
            x, y = train[i % len(train)]
            opt.zero_grad()
            F.mse_loss(model(x), y).backward()
            opt.step()
    else:
        with tempfile.TemporaryDirectory() as d:
            Auto(offload=mode, offload_dir=d if mode == "disk" else None).fit(
                model, F.mse_loss, train, val, steps, val_cost=1.0
            )
    out = {"mode": mode, "seconds": time.perf_counter() - start}
    if device == "cuda":
        out["peak_mb"] = torch.cuda.max_memory_allocated() / 2**20
    else:
        out["peak_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--params", type=int, default=50_000_000)
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--modes", default=None, help="comma-separated: plain,disk,host,auto,device")
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        print(json.dumps(child(a.child, a.params, a.steps, a.device)))
        return
    modes = (a.modes or ("plain,auto,device" if a.device == "cuda" else "plain,disk,host")).split(",")
    rows = []
    for mode in modes:
        cmd = [sys.executable, __file__, "--child", mode, "--params", str(a.params), "--steps", str(a.steps)]
        out = subprocess.run([*cmd, "--device", a.device], check=True, capture_output=True, text=True).stdout
        rows.append(json.loads(out.strip().splitlines()[-1]))
    base = rows[0]["peak_mb"] if rows[0]["mode"] == "plain" else float("nan")
    unit = "peak device MiB" if a.device == "cuda" else "peak RSS MiB"
    print(f"{a.params / 1e6:.0f}M parameters, {a.steps} steps, {a.device}")
    print(f"| run | {unit} | / plain | seconds |")
    print("|---|---|---|---|")
    for r in rows:
        name = "plain AdamW" if r["mode"] == "plain" else f'Auto(offload="{r["mode"]}")'
        print(f"| {name} | {r['peak_mb']:.0f} | {r['peak_mb'] / base:.2f} | {r['seconds']:.1f} |")


if __name__ == "__main__":
    main()
