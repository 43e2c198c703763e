"""NENNIConv2d (channel granularity, default k, INT4, inference) vs nn.Conv2d on ResNet-18's 256->256, 8x8,
3x3, batch 128, float32, forward (issue #14): every round times the dense conv and the layer at r = 0.9 and
0.99 back to back, so the ratios are measured side by side; prints min and median over the rounds, the
allocator setting and the load average.

    python benchmarks/nenni_channel_speed.py [--rounds 15] [--threads 2]
    MALLOC_MMAP_THRESHOLD_=4000000000 MALLOC_TRIM_THRESHOLD_=8000000000 python benchmarks/nenni_channel_speed.py

It imports whichever fastnoise the interpreter finds (run it with another tree's interpreter to time that
tree: it prints the package path).
"""
from __future__ import annotations

import argparse
import os
import statistics
import time

import torch


def allocator() -> str:
    return "caching (MALLOC_MMAP/TRIM thresholds)" if os.environ.get("MALLOC_MMAP_THRESHOLD_") else "glibc default"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--rounds", type=int, default=15)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--ratios", type=float, nargs="+", default=[0.9, 0.99])
    p.add_argument("--ablation", action="store_true",
                   help="also time the layer without the fused CPU channel path (design note 59): pooled score "
                        "by torch, full-size channel_conv2d output + scatter")
    args = p.parse_args(argv)
    import fastnoise
    from fastnoise.nn import NENNIConv2d
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(256, 256, 3, padding=1, bias=False).eval()
    x = torch.randn(args.batch, 256, 8, 8)
    fns = {"conv": lambda: conv(x)}
    for r in args.ratios:
        layer = NENNIConv2d.from_conv(conv, ratio=r, granularity="channel")
        layer.quantize_()
        layer.eval()
        fns[f"nenni r={r} k={layer.k}"] = lambda layer=layer: layer(x)
        if args.ablation and hasattr(layer, "_fused_channel"):
            unfused = NENNIConv2d.from_conv(conv, ratio=r, granularity="channel")
            unfused.quantize_()
            unfused.eval()
            unfused._fused_channel = lambda x: False  # the layer's previous (unfused) inference path
            fns[f"  unfused r={r}"] = lambda layer=unfused: layer(x)
    load0 = os.getloadavg()[0]
    times = {n: [] for n in fns}
    with torch.no_grad():
        for f in fns.values():  # warm-up
            f()
        for _ in range(args.rounds):
            for n, f in fns.items():
                t0 = time.perf_counter()
                f()
                times[n].append(time.perf_counter() - t0)
    print(f"fastnoise {os.path.dirname(fastnoise.__file__)}, CPU kernels {fastnoise.cpu_capability()}, "
          f"{torch.get_num_threads()} threads, allocator {allocator()}, load average {load0:.2f} -> "
          f"{os.getloadavg()[0]:.2f}, {args.rounds} rounds")
    c_min, c_med = min(times["conv"]) * 1e3, statistics.median(times["conv"]) * 1e3
    for n, ts in times.items():
        t_min, t_med = min(ts) * 1e3, statistics.median(ts) * 1e3
        print(f"  {n:<18} min {t_min:7.2f} ms  median {t_med:7.2f} ms   speed-up vs conv: min {c_min / t_min:5.2f}x"
              f"  median {c_med / t_med:5.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
