"""Roofline of the CPU kernels (issue #14): each kernel's time against the bound that limits it, measured in
the same run, next to the eager PyTorch a user would write.

Bounds (all measured here, in this process, at the thread count of the run):
* memory: bytes the kernel must move (inputs read once, outputs written once) / the copy bandwidth of a
  preallocated 64 MB ``b.copy_(a)`` (read + write); the fresh-allocating ``clone`` beside it shows what
  page faults cost under the allocator of the run;
* RNG compute: normals per second of the Philox + Box-Muller generator alone, writing 64 KB chunks that
  stay in cache (`torch.ops.fastnoise_kernels.philox`), per core and for all threads;
* the noise ops are bounded by max(memory, RNG); the selection (mask_blend) by memory; the NENNI layer by
  the dense conv's FLOPs scaled to the kept channels at the conv's own measured FLOP rate.
"fraction" = bound time / kernel time (1.0 = at the bound). Run once per allocator setting:

    python benchmarks/roofline.py                       # glibc default allocator
    MALLOC_MMAP_THRESHOLD_=4000000000 MALLOC_TRIM_THRESHOLD_=8000000000 python benchmarks/roofline.py
"""
from __future__ import annotations

import argparse
import importlib
import os
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import fastnoise  # noqa: E402
from benchmarks._common import time_fn  # noqa: E402
from fastnoise.ops import mask_blend, noise_add, noise_mul, noise_sal  # noqa: E402


def allocator() -> str:
    return "caching (MALLOC_MMAP/TRIM thresholds)" if os.environ.get("MALLOC_MMAP_THRESHOLD_") else "glibc default"


def t(fn, rt: float) -> float:
    with torch.no_grad():
        return time_fn(fn, "cpu", min_run_time=rt)


def bounds(rt: float) -> dict:
    n = (64 << 20) // 4
    a = torch.empty(n).uniform_()
    b = torch.empty_like(a)
    copy = 2 * n * 4 / t(lambda: b.copy_(a), rt)
    clone = 2 * n * 4 / t(lambda: a.clone(), rt)
    st = fastnoise.rng.make_state(1, 0)
    chunk = 1 << 14
    philox = torch.ops.fastnoise_kernels.philox
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    per_core = chunk / t(lambda: philox(st, chunk, 2), rt)
    torch.set_num_threads(threads)
    big = 1 << 22
    all_threads = big / t(lambda: philox(st, big, 2), rt)
    return {"copy": copy, "clone": clone, "normals_core": per_core, "normals_all": all_threads}


def lean_topk(z, za, k):
    idx = za.abs().topk(k, dim=1).indices
    m = torch.zeros_like(z, dtype=torch.bool).scatter_(1, idx, True)
    return torch.where(m, z, za), m


def lean_nm(z, za, n, m):
    s = za.abs().view(-1, m)
    idx = s.topk(n, dim=1).indices
    mask = torch.zeros_like(s, dtype=torch.bool).scatter_(1, idx, True).view_as(z)
    return torch.where(mask, z, za), mask


def rows(b: dict, rt: float, quick: bool) -> list:
    out = []
    shape = (8, 64, 32, 32) if quick else (128, 64, 32, 32)
    x = torch.randn(shape)
    N = x.numel()
    w = torch.zeros(64, 1, 1)
    bb = torch.full((64, 1, 1), -4.6)
    noise = {
        "noise_add": (lambda: noise_add(x, 0.1, seed=1, offset=0), lambda: x + 0.1 * torch.randn_like(x)),
        "noise_mul": (lambda: noise_mul(x, 1.0, 0.1, seed=1, offset=0),
                      lambda: x * (1.0 + 0.1 * torch.randn_like(x))),
        "noise_sal": (lambda: noise_sal(x, w, bb, seed=1, offset=0),
                      lambda: x + torch.randn_like(x) * torch.exp((x * w + bb) / 2)),
    }
    for name, (ours, eager) in noise.items():
        tk, te = t(ours, rt), t(eager, rt)
        mem = 2 * N * 4 / b["copy"]
        rng = N / b["normals_all"]
        bound, kind = (mem, "memory") if mem >= rng else (rng, "RNG")
        out.append({"kernel": f"{name} {'x'.join(map(str, shape))}", "ms": tk * 1e3, "eager_ms": te * 1e3,
                    "bound": kind, "bound_ms": bound * 1e3, "fraction": bound / tk,
                    "gbs": 2 * N * 4 / tk / 1e9, "normals_core": N / tk / torch.get_num_threads()})
    rows_, F = (1024, 512) if quick else (16384, 512)
    g = torch.Generator().manual_seed(0)
    z, za = torch.randn(rows_, F, generator=g), torch.randn(rows_, F, generator=g)
    k = importlib.import_module("fastnoise.ops.mask_blend").keep_count(0.9, F)
    sel = {
        "mask_blend top-k r=0.9": (lambda: mask_blend(z, za, ratio=0.9), lambda: lean_topk(z, za, k)),
        "mask_blend N:M 2:8": (lambda: mask_blend(z, za, nm=(2, 8)), lambda: lean_nm(z, za, 2, 8)),
    }
    for name, (ours, eager) in sel.items():
        tk, te = t(ours, rt), t(eager, rt)
        moved = (3 * 4 + 1) * z.numel()  # z, za read; out written (fp32); mask written (bool)
        bound = moved / b["copy"]
        out.append({"kernel": f"{name} {rows_}x{F}", "ms": tk * 1e3, "eager_ms": te * 1e3, "bound": "memory",
                    "bound_ms": bound * 1e3, "fraction": bound / tk, "gbs": moved / tk / 1e9, "normals_core": None})
    from fastnoise.nn import NENNIConv2d
    batch = 8 if quick else 128
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(256, 256, 3, padding=1, bias=False).eval()
    xc = torch.randn(batch, 256, 8, 8)
    tc = t(lambda: conv(xc), rt)
    for ratio in (0.9, 0.99):
        layer = NENNIConv2d.from_conv(conv, ratio=ratio, granularity="channel")
        layer.quantize_()
        layer.eval()
        tk = t(lambda: layer(xc), rt)
        bound = tc * (1 - ratio)  # the kept channels' share of the dense conv at the conv's FLOP rate
        out.append({"kernel": f"NENNI channel r={ratio} k={layer.k} b{batch} (vs Conv2d)", "ms": tk * 1e3,
                    "eager_ms": tc * 1e3, "bound": "kept-channel FLOPs", "bound_ms": bound * 1e3,
                    "fraction": bound / tk, "gbs": None, "normals_core": None})
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--min-run-time", type=float, default=0.5)
    p.add_argument("--quick", action="store_true")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    load0 = os.getloadavg()[0]
    b = bounds(args.min_run_time)
    rs = rows(b, args.min_run_time, args.quick)
    print(f"roofline: {torch.get_num_threads()} threads, allocator {allocator()}, load average "
          f"{load0:.2f} -> {os.getloadavg()[0]:.2f}, CPU kernels {fastnoise.cpu_capability()}")
    print(f"copy bandwidth (preallocated, 64 MB): {b['copy'] / 1e9:.1f} GB/s; fresh clone: {b['clone'] / 1e9:.1f} GB/s; "
          f"RNG: {b['normals_core'] / 1e9:.3f} G normals/s on 1 core (in cache), {b['normals_all'] / 1e9:.3f} G/s on "
          f"{torch.get_num_threads()} threads (16 MB output)")
    print("| kernel | ms | eager / reference ms | speed-up | bound | bound ms | fraction of bound | GB/s | G normals/s/core |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rs:
        nc = f"{r['normals_core'] / 1e9:.3f}" if r["normals_core"] else ""
        gbs = f"{r['gbs']:.1f}" if r["gbs"] else ""
        print(f"| {r['kernel']} | {r['ms']:.2f} | {r['eager_ms']:.2f} | {r['eager_ms'] / r['ms']:.2f}x | {r['bound']} | "
              f"{r['bound_ms']:.2f} | {r['fraction']:.2f} | {gbs} | {nc} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
