"""Benchmark of fastnoise.ops.noise_conv2d on the shapes where each method puts its noise (batch 128):

* CTRW: the first conv 3->64, 32x32, input noise x * (mu + sigma delta), mu / sigma [3, 32, 32], one delta
  per batch;
* CNI (RSR) / PNI-W: 64->64 3x3 at 32x32 and 256->256 3x3 at 8x8, weight noise W + alpha std(W) eta with
  alpha per output channel (CNI with half the weights pruned: keep mask);
* PNI activation variants on the same layers: x + alpha std(x) delta ("pni-in") and y + alpha std(y) eps
  ("pni-out"), per sample; RSE (x + 0.1 delta per sample) and RPF (48 of 64 stem filters random).

Columns, timed side by side in one run: ``plain`` (nn.Conv2d alone, the floor), ``reference`` (the eager
composition a user writes: torch.randn noise + elementwise ops + F.conv2d,
`fastnoise.reference.noise_conv.eager_composition`), ``compile(reference)`` (the same under torch.compile)
and every usable backend. Forward and forward+backward (x, the weight, the bias and the noise parameters
all require grad, as in adversarial training / attacks; the backward gets a fixed dense gradient). Bytes
saved for the backward are measured with saved-tensor hooks for the backend and the eager composition.
float32 on CPU; float32 and bfloat16 on a GPU.

    python benchmarks/bench_noise_conv.py [--cases ctrw,cni-64] [--min-run-time 0.5] [--no-backward]
    python benchmarks/bench_noise_conv.py --dense-conv     # which dense CPU conv to call (oneDNN or not)
    python benchmarks/run.py --ops noise_conv              # the shared table / CSV of every op
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Callable, Optional

import torch
import torch.nn.functional as F

HERE = Path(__file__).resolve().parent
if str(HERE.parent) not in sys.path:
    sys.path.insert(0, str(HERE.parent))

import fastnoise  # noqa: E402
from benchmarks._common import Case, reference_variants, run_case, time_fn  # noqa: E402
from fastnoise.ops.noise_conv import InputNoise, OutputNoise, WeightNoise, noise_conv2d  # noqa: E402
from fastnoise.reference.noise_conv import eager_composition  # noqa: E402

BACKENDS = ("cpu", "triton", "cuda")


class _GradOut:
    """`Case.loss` result whose ``backward()`` backpropagates a fixed dense gradient (not a broadcast one)."""

    def __init__(self, out: torch.Tensor, g: torch.Tensor) -> None:
        self.out, self.g = out, g

    def backward(self) -> None:
        self.out.backward(self.g)


# (name, C_in, C_out, H, method)
SHAPES = [("ctrw", 3, 64, 32, "ctrw"), ("rpf", 3, 64, 32, "rpf"),
          ("cni-64", 64, 64, 32, "cni"), ("cni-256", 256, 256, 8, "cni"),
          ("pni-w-64", 64, 64, 32, "pni-w"), ("pni-w-256", 256, 256, 8, "pni-w"),
          ("pni-in-64", 64, 64, 32, "pni-in"), ("pni-in-256", 256, 256, 8, "pni-in"),
          ("pni-out-64", 64, 64, 32, "pni-out"), ("pni-out-256", 256, 256, 8, "pni-out"),
          ("rse-64", 64, 64, 32, "rse")]


def _sites(method: str, inp: dict) -> dict:
    if method == "ctrw":
        return dict(input_noise=InputNoise.ctrw(inp["mu"], inp["sigma"]))
    if method == "rse":
        return dict(input_noise=InputNoise.rse(inp["sigma"]))
    if method == "pni-in":
        return dict(input_noise=InputNoise.pni(inp["alpha"]))
    if method == "pni-out":
        return dict(output_noise=OutputNoise.pni(inp["alpha"]))
    if method == "pni-w":
        return dict(weight_noise=WeightNoise.pni(inp["alpha"]))
    if method == "cni":
        return dict(weight_noise=WeightNoise.cni(inp["alpha"], keep=inp["keep"]))
    if method == "rpf":
        return dict(weight_noise=WeightNoise.rpf(inp["replace"], 3))
    raise ValueError(method)


def _make(method: str, batch: int, c_in: int, c_out: int, h: int, device: str, dtype: torch.dtype) -> Callable[[], dict]:
    def make() -> dict:
        torch.manual_seed(0)
        kw = dict(device=device, dtype=dtype)
        inp = {"x": torch.randn(batch, c_in, h, h, **kw).requires_grad_(),
               "weight": (torch.randn(c_out, c_in, 3, 3, **kw) / (3 * c_in ** 0.5)).requires_grad_(),
               "bias": torch.zeros(c_out, **kw).requires_grad_()}
        if method == "ctrw":
            inp["mu"] = torch.ones(c_in, h, h, **kw).requires_grad_()
            inp["sigma"] = torch.ones(c_in, h, h, **kw).requires_grad_()
        elif method == "rse":
            inp["sigma"] = 0.1
        elif method in ("pni-in",):
            inp["alpha"] = torch.full((1,), 0.25, **kw).requires_grad_()
        elif method in ("pni-out",):
            inp["alpha"] = torch.full((c_out, 1, 1), 0.25, **kw).requires_grad_()
        elif method in ("pni-w", "cni"):
            inp["alpha"] = torch.full((c_out, 1, 1, 1), 0.25, **kw).requires_grad_()
            if method == "cni":
                inp["keep"] = torch.rand(c_out, c_in, 3, 3, device=device) < 0.5
        elif method == "rpf":
            inp["replace"] = torch.arange(c_out, device=device) >= c_out // 4
        return inp
    return make


def _case(name: str, c_in: int, c_out: int, h: int, method: str, device: str, dtype: torch.dtype, batch: int) -> Case:
    make = _make(method, batch, c_in, c_out, h, device, dtype)

    def eager(inp):
        return eager_composition(inp["x"], inp["weight"], inp["bias"], padding=1, **_sites(method, inp))

    def ours(inp, backend):
        return noise_conv2d(inp["x"], inp["weight"], inp["bias"], padding=1, seed=0, backend=backend,
                            **_sites(method, inp))

    variants = {"plain": lambda inp: F.conv2d(inp["x"], inp["weight"], inp["bias"], padding=1)}
    variants.update(reference_variants(eager, {b: (lambda inp, b=b: ours(inp, b)) for b in BACKENDS}, device))
    flops = 2 * batch * c_out * h * h * c_in * 9
    nbytes = (batch * (c_in + c_out) * h * h + c_out * c_in * 9) * torch.finfo(dtype).bits // 8
    tag = str(dtype).split(".")[-1]
    return Case(op="noise_conv", name=f"{name} {c_in}->{c_out} {h}x{h} b{batch} {tag}", make=make, variants=variants,
                bytes_moved=nbytes, flops=flops, loss=lambda outp: _GradOut(outp, _grad_like(outp)))


def cases(device: str, quick: bool = False) -> list[Case]:
    """Every benchmark case (quick: batch 8, for smoke runs)."""
    batch = 8 if quick else 128
    dtypes = (torch.float32, torch.bfloat16) if device == "cuda" else (torch.float32,)
    out = []
    for dt in dtypes:
        for name, c_in, c_out, h, method in SHAPES:
            out.append(_case(name, c_in, c_out, h, method, device, dt, batch))
    return out


_grads: dict = {}


def _grad_like(out: torch.Tensor) -> torch.Tensor:
    """A fixed dense output gradient per shape (what `Case.loss` backpropagates)."""
    key = (tuple(out.shape), out.dtype, out.device)
    if key not in _grads:
        _grads[key] = torch.randn(out.shape, generator=torch.Generator().manual_seed(1)).to(out.device, out.dtype)
    return _grads[key]


def saved_bytes(fn: Callable[[], object]) -> int:
    """Bytes of every tensor autograd saves for the backward of fn() (saved-tensor hooks)."""
    total = [0]

    def pack(t):
        total[0] += t.numel() * t.element_size()
        return t
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn()
    return total[0]


def run(case: Case, device: str, backward: bool, min_run_time: float) -> list[dict]:
    """One row per pass: the median ms of every variant (timed side by side by `_common.run_case`) and the
    bytes each variant saves for the backward."""
    rows: dict = {}
    for r in run_case(case, device, backward, min_run_time):
        rows.setdefault(r["pass"], {"case": case.name, "pass": r["pass"]})[r["variant"]] = r["median_ms"]
    inp = case.make()
    saved = {v: saved_bytes(lambda v=v: case.variants[v](inp)) for v in case.variants if v != "compile(reference)"}
    for r in rows.values():
        r["saved"] = saved
    return list(rows.values())


def format_rows(rows: list[dict], backends: list[str]) -> str:
    head = ["case", "pass", "plain ms", "eager ms", "compile(eager) ms"]
    for b in backends:
        head += [f"{b} ms", f"{b}/plain", f"eager/{b}", f"compile/{b}"]
    head += ["saved MB: plain / eager / " + " / ".join(backends)]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [r["case"], r["pass"], f"{r['plain']:.1f}", f"{r['reference']:.1f}", f"{r['compile(reference)']:.1f}"]
        for b in backends:
            t = r[b]
            cells += [f"{t:.1f}", f"{t / r['plain']:.3f}", f"{r['reference'] / t:.2f}", f"{r['compile(reference)'] / t:.2f}"]
        s = r["saved"]
        cells.append(" / ".join(f"{s[k] / 2 ** 20:.2f}" for k in ["plain", "reference"] + backends))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def dense_conv_choice(device: str, min_run_time: float) -> str:
    """F.conv2d with oneDNN (mkldnn) on and off: the dense conv the CPU kernel calls (at::convolution
    follows the same flag), forward and forward+backward, per shape."""
    lines = ["| shape | pass | oneDNN ms | no oneDNN (im2col + GEMM) ms |", "|---|---|---|---|"]
    for name, c_in, c_out, h, _ in [s for s in SHAPES if s[0] in ("ctrw", "cni-64", "cni-256")]:
        x = torch.randn(128, c_in, h, h, device=device, requires_grad=True)
        w = torch.randn(c_out, c_in, 3, 3, device=device, requires_grad=True)
        g = torch.randn(128, c_out, h, h, device=device)
        for pass_name in ("fwd", "fwd+bwd"):
            t = []
            for enabled in (True, False):
                with torch.backends.mkldnn.flags(enabled=enabled):
                    if pass_name == "fwd":
                        def call():
                            with torch.no_grad():
                                F.conv2d(x, w, padding=1)
                    else:
                        def call():
                            F.conv2d(x, w, padding=1).backward(g)
                    t.append(time_fn(call, device, min_run_time) * 1e3)
            lines.append(f"| {name} {c_in}->{c_out} {h}x{h} b128 | {pass_name} | {t[0]:.1f} | {t[1]:.1f} |")
    return "\n".join(lines)


def main(argv: Optional[list] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--cases", default=None, help="comma-separated case prefixes, e.g. ctrw,cni-64 (default: all)")
    p.add_argument("--min-run-time", type=float, default=0.5)
    p.add_argument("--no-backward", action="store_true")
    p.add_argument("--quick", action="store_true")
    p.add_argument("--dense-conv", action="store_true", help="compare the dense CPU convs instead")
    args = p.parse_args(argv)
    alloc = "caching (MALLOC_MMAP_THRESHOLD_ set)" if os.environ.get("MALLOC_MMAP_THRESHOLD_") else "glibc default"
    print(f"device {args.device}, {torch.get_num_threads()} threads, torch {torch.__version__}, allocator: {alloc}, "
          f"load average {_load()}")
    if args.dense_conv:
        print(dense_conv_choice(args.device, args.min_run_time))
        return 0
    wanted = args.cases.split(",") if args.cases else None
    rows = []
    backends = None
    for case in cases(args.device, quick=args.quick):
        if wanted and not any(case.name.split(" ")[0] == w for w in wanted):
            continue
        print(f"[bench] {case.name}", flush=True)
        rows += run(case, args.device, not args.no_backward, args.min_run_time)
        backends = [v for v in case.variants if v not in ("plain", "reference", "compile(reference)")]
    print()
    print(format_rows(rows, backends or []))
    print(f"load average at the end: {_load()}")
    return 0


def _load() -> str:
    return " ".join(f"{v:.2f}" for v in os.getloadavg())


if __name__ == "__main__":
    sys.exit(main())
