"""Measurements of the NIT acceptance points that are not timings (docs/methods.md):

1. LR estimate vs the pathwise (backprop) gradient of the same noisy objective on small smooth networks
   (tanh, Gaussian noise): cosine and relative error for C = 16, 256, 4096 replicas.
2. Peak tensor memory of one NIT gradient estimate on the MNIST spiking MLP 784-500-10 (T = 8, batch
   128) for C = 1, 4, 16, 64 replicas, in chunks of 4 replicas and in one chunk (torch profiler
   allocation events: `fastnoise.methods.nit.peak_memory`; baseline "clean" so that C = 1 works).
3. Peak tensor memory of one gradient estimate, the seed's algorithm (eager reference: eps and X of every
   layer stored per noise row, `benchmarks/bench_lr_grad.seed_reference`) against the fused estimator
   (`fastnoise.methods.nit.lr_estimate`, replicas in chunks of 4) side by side, for C = 4, 16, 64 replicas
   and T = 2, 8, 32 time steps (MLP 784-500-10, batch 32).
4. What a recorded forward keeps (bytes per layer: input as float or bits, noise state) against the
   eps it does not keep, and the largest single allocation during the estimate.

    python benchmarks/nit_checks.py [--quick] [--json out.json] [--only pathwise,memory,versus,records]
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from fastnoise import data, models  # noqa: E402
from fastnoise.methods import nit as nc  # noqa: E402
from fastnoise.nn import lr_layers, recording  # noqa: E402


def pathwise(quick: bool) -> list[dict]:
    rows = []
    torch.manual_seed(0)
    nets = {"tanh MLP 4-16-3, B=8": (models.LRMLP(3, 1, (1, 4), width=16, depth=1, sigma_init=0.5, seed=1),
                                      torch.randn(8, 1, 1, 4), torch.randint(0, 3, (8,)))}
    sp = data.load("digits")
    xd, yd = sp.train.tensors()
    nets["tanh MLP 64-32-10 (digits), B=16"] = (models.LRMLP(10, 1, (8, 8), width=32, depth=1, sigma_init=0.5, seed=2),
                                                xd[:16], yd[:16])
    for name, (m, x, y) in nets.items():
        for C in (16, 256) if quick else (16, 256, 4096):
            out = nc.lr_vs_pathwise(m, x, y, replicas=C, pathwise_replicas=4096 if quick else 65536,
                                    chunk=min(C, 512))
            rows.append({"network": name, "replicas": C, "cosine": round(out["cosine"], 4),
                         "rel_error": round(out["rel_error"], 4)})
            print(json.dumps(rows[-1]), flush=True)
    return rows


def memory(quick: bool) -> list[dict]:
    K, H, B, T = (64, 64, 16, 4) if quick else (784, 500, 128, 8)
    torch.manual_seed(0)
    m = models.SpikingMLP(10, 1, (1, K), hidden=H, steps=T, seed=0)
    x, y = torch.rand(B, 1, 1, K), torch.randint(0, 10, (B,))
    rows = []
    for C in (1, 4, 16, 64):
        for chunk in sorted({min(4, C), C}):
            _, peak = nc.peak_memory(lambda: nc.lr_estimate(m, x, y, replicas=C, chunk=chunk, baseline="clean"))
            rows.append({"replicas": C, "chunk": chunk, "peak_mb": round(peak / 2 ** 20, 2)})
            print(json.dumps(rows[-1]), flush=True)
    return rows


def versus(quick: bool) -> list[dict]:
    """Peak memory of the seed's eager algorithm vs the fused estimator over C and T (module docstring, 3)."""
    from benchmarks.bench_lr_grad import seed_reference
    K, H, B = (64, 32, 8) if quick else (784, 500, 32)
    rows = []
    for T in (2, 8) if quick else (2, 8, 32):
        torch.manual_seed(0)
        m = models.SpikingMLP(10, 1, (1, K), hidden=H, steps=T, seed=0)
        x, y = torch.rand(B, 1, 1, K), torch.randint(0, 10, (B,))
        f0, f1 = m.fcs
        p = [t.detach() for t in (f0.weight, f0.bias, f0.sigma, f1.weight, f1.bias, f1.sigma)]
        for C in (4, 16) if quick else (4, 16, 64):
            with torch.no_grad():
                _, ref = nc.peak_memory(lambda: seed_reference(x, y, *p, T=T, C=C))
            _, fused = nc.peak_memory(lambda: nc.lr_estimate(m, x, y, replicas=C, chunk=4))
            rows.append({"T": T, "replicas": C, "reference_peak_mb": round(ref / 2 ** 20, 2),
                         "fused_chunk4_peak_mb": round(fused / 2 ** 20, 2), "reference_over_fused": round(ref / fused, 1)})
            print(json.dumps(rows[-1]), flush=True)
    return rows


def records(quick: bool) -> list[dict]:
    K, H, B, T, C = (64, 64, 16, 4, 4) if quick else (784, 500, 128, 8, 8)
    m = models.SpikingMLP(10, 1, (1, K), hidden=H, steps=T, seed=0)
    x = torch.rand(B, 1, 1, K)
    rows = []
    with recording(m), torch.no_grad():
        m(x, replicas=C)
        for k, layer in enumerate(lr_layers(m)):
            rec = layer.record
            n = layer.out_features
            x_float = rec.x.shape[0] * rec.x.shape[1] * 4 if hasattr(rec.x, "words") else rec.x.numel() * 4
            rows.append({"layer": k, "kept": "bits" if hasattr(rec.x, "words") else "float32 (shared by C and T)",
                         "record_bytes": rec.nbytes, "input_as_float32_bytes": x_float,
                         "eps_bytes_not_kept": rec.rows * n * 4,
                         "seed_stores_bytes": (rec.rows * layer.in_features + rec.rows * n) * 4})
            print(json.dumps(rows[-1]), flush=True)
        w = torch.randn(B * C)

        def estimate():
            for layer in lr_layers(m):
                layer.lr_gradients(w, release=False)
        prof_rows = []
        from torch.profiler import ProfilerActivity, profile
        with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
            estimate()
        allocs = [e.nbytes() for e in prof.profiler.kineto_results.events() if e.name() == "[memory]" and e.nbytes() > 0]
        prof_rows.append({"largest_allocation_during_estimate_bytes": max(allocs) if allocs else 0,
                          "eps_layer1_bytes": T * B * C * H * 4})
        print(json.dumps(prof_rows[-1]), flush=True)
    return rows + prof_rows


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--json", default=None)
    p.add_argument("--only", default="pathwise,memory,versus,records")
    args = p.parse_args(argv)
    out = {}
    for part in args.only.split(","):
        print(f"== {part}", flush=True)
        out[part] = {"pathwise": pathwise, "memory": memory, "versus": versus, "records": records}[part](args.quick)
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
