"""Batched vs sequential EOT draws (issue #14): EOT-n PGD-20 of the digits small CNN with RSE noise, side by
side in one run, the adversarial examples compared bit for bit, peak memory of each (RSS high-water mark,
reset between the runs through /proc/self/clear_refs).

    python benchmarks/eot_batched.py [--eot 20] [--n 0 (all test images)] [--deployed] [--threads 2]

--deployed attacks RSE as deployed (`fastnoise.methods.rse`: the 20-pass MeanSoftmax ensemble inside the
EOT: EOT-n x 20 passes per step). Prints one table; the model is untrained (the cost does not depend on
the weights), seed 0 everywhere.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import fastnoise  # noqa: E402
import fastnoise.data as fd  # noqa: E402
from fastnoise import models  # noqa: E402
from fastnoise.attacks import make_attack  # noqa: E402
from fastnoise.nn import MeanSoftmax  # noqa: E402


def rss_peak_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def reset_peak() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def build(deployed: bool, ensemble: int) -> torch.nn.Module:
    torch.manual_seed(0)
    m = models.build("small_cnn", 10, 1, 8)
    m = fastnoise.convert(m, "rse", sigma=0.1, seed=0)
    if deployed:
        m = MeanSoftmax(m, ensemble)
    return m.eval()


def run(batch: bool, x, y, eot: int, deployed: bool, ensemble: int, bs: int):
    model = build(deployed, ensemble)  # fresh streams: both runs draw the same noise
    if deployed:
        model.batch = batch
    atk = make_attack("pgd20", model, 0.2, eot=eot, eot_batch=batch)
    torch.manual_seed(0)  # PGD's random start
    reset_peak()
    base = rss_peak_mb()
    t = time.perf_counter()
    adv = torch.cat([atk(x[i:i + bs], y[i:i + bs]) for i in range(0, len(x), bs)])
    secs = time.perf_counter() - t
    return adv, secs, rss_peak_mb() - base, atk.forward_calls, atk.forward_samples


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--eot", type=int, default=20)
    p.add_argument("--n", type=int, default=0, help="test images (0: all)")
    p.add_argument("--deployed", action="store_true", help="attack the 20-pass ensemble (RSE as deployed)")
    p.add_argument("--ensemble", type=int, default=20)
    p.add_argument("--bs", type=int, default=128)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    x, y = fd.load("digits", None, seed=0).test.tensors()
    if args.n:
        x, y = x[:args.n], y[:args.n]
    alloc = "caching" if os.environ.get("MALLOC_MMAP_THRESHOLD_") else "glibc default"
    print(f"EOT-{args.eot} PGD-20, RSE sigma 0.1, digits small_cnn, {len(x)} images, batch {args.bs}, "
          f"{'deployed (MeanSoftmax-%d inside)' % args.ensemble if args.deployed else 'one pass per draw'}; "
          f"{torch.get_num_threads()} threads, allocator: {alloc}, load average {os.getloadavg()[0]:.2f}")
    res = {}
    for name, batch in (("sequential", False), ("batched", True), ("sequential#2", False), ("batched#2", True)):
        res[name] = run(batch, x, y, args.eot, args.deployed, args.ensemble, args.bs)
    seq = min(res["sequential"][1], res["sequential#2"][1])
    bat = min(res["batched"][1], res["batched#2"][1])
    same = torch.equal(res["sequential"][0], res["batched"][0]) and torch.equal(res["sequential#2"][0], res["batched#2"][0])
    print("| draws | seconds (best of 2) | peak RSS growth MB | forward draws | samples forwarded |")
    print("|---|---|---|---|---|")
    for name, t in (("sequential", seq), ("batched", bat)):
        _, _, mem, calls, samples = res[name]
        print(f"| {name} | {t:.2f} | {mem:.0f} | {calls} | {samples} |")
    print(f"speed-up batched / sequential: {seq / bat:.2f}x; adversarial examples identical: {same}; "
          f"load average after: {os.getloadavg()[0]:.2f}")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
