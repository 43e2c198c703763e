"""Shared benchmark machinery (DESIGN §6): one timing rule, one table, one CSV for every op.

A benchmark module `benchmarks/bench_<op>.py` defines `cases(device) -> list[Case]`. Each Case names
the variants to time side by side in one run: the eager reference, `torch.compile(reference)` and
every usable backend, forward and forward+backward. Rows report the median time, the ratio to the
reference and to torch.compile, peak memory (CUDA) and achieved GB/s as a fraction of the machine's
measured copy bandwidth. Rows append to results/bench.csv with device, versions and git commit.
"""
from __future__ import annotations

import csv
import dataclasses
import datetime as _dt
import os
import platform
import subprocess
from pathlib import Path
from typing import Callable, Optional, Sequence

import torch

import fastnoise

RESULTS = Path(os.environ.get("FASTNOISE_RESULTS", "results")) / "bench.csv"


@dataclasses.dataclass
class Case:
    """One benchmark shape. `make()` builds fresh inputs; `variants` maps a name to fn(inputs) -> outputs.

    `bytes_moved`: the fewest bytes the forward must move (each input read once, each output written
    once); used for GB/s. `flops`: arithmetic of the forward (0 when memory-bound).
    `loss(outputs)` reduces outputs to a scalar for the backward timing (None: forward only).
    """
    op: str
    name: str
    make: Callable[[], dict]
    variants: dict
    bytes_moved: int = 0
    flops: int = 0
    loss: Optional[Callable] = None


def reference_variants(ref: Callable, backends: dict, device: str) -> dict:
    """{'reference', 'compile(reference)', <backend>...}: the columns every op benchmark reports."""
    out = {"reference": ref, "compile(reference)": torch.compile(ref, dynamic=False)}
    for name, fn in backends.items():
        if fastnoise._backend.is_usable(name, device) and not (name == "triton" and device == "cpu"):
            out[name] = fn
    return out


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def time_fn(fn: Callable[[], object], device: str, min_run_time: float = 1.0) -> float:
    """Median seconds per call: CUDA via triton.testing.do_bench (events), CPU via torch.utils.benchmark."""
    fn()
    fn()  # warm up (compilation, allocator)
    _sync(device)
    if device == "cuda":
        import triton.testing
        return triton.testing.do_bench(fn, warmup=25, rep=200, return_mode="median") / 1e3
    import torch.utils.benchmark as tb
    m = tb.Timer(stmt="fn()", globals={"fn": fn}, num_threads=torch.get_num_threads()).blocked_autorange(
        min_run_time=min_run_time)
    return m.median


_bw_cache: dict[str, float] = {}


def copy_bandwidth(device: str) -> float:
    """Measured bytes/s of a large device copy (read + write): the machine's practical limit."""
    if device not in _bw_cache:
        n = (256 << 20) // 4 if device == "cuda" else (64 << 20) // 4
        a = torch.empty(n, device=device).uniform_()
        b = torch.empty_like(a)
        t = time_fn(lambda: b.copy_(a), device, min_run_time=0.5)
        _bw_cache[device] = 2 * a.numel() * 4 / t
    return _bw_cache[device]


def _peak_memory(fn: Callable[[], object], device: str) -> Optional[int]:
    if device != "cuda":
        return None
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    fn()
    torch.cuda.synchronize()
    return torch.cuda.max_memory_allocated() - base


def device_name(device: str) -> str:
    if device == "cuda":
        return torch.cuda.get_device_name(0)
    return f"{platform.processor() or platform.machine()} x{torch.get_num_threads()} threads"


def git_commit() -> str:
    try:
        return subprocess.check_output(["git", "rev-parse", "--short", "HEAD"], text=True,
                                       stderr=subprocess.DEVNULL).strip()
    except Exception:
        return "unknown"


def run_case(case: Case, device: str, backward: bool = True, min_run_time: float = 1.0) -> list[dict]:
    """Time every variant of `case` side by side; returns one row per (variant, pass)."""
    rows = []
    inputs = case.make()
    passes = [("fwd", False)] + ([("fwd+bwd", True)] if backward and case.loss is not None else [])
    for pass_name, with_bwd in passes:
        times = {}
        for vname, fn in case.variants.items():
            if with_bwd:
                def call(fn=fn):
                    out = fn(inputs)
                    case.loss(out).backward()
            else:
                def call(fn=fn):
                    with torch.no_grad():
                        return fn(inputs)
            times[vname] = (time_fn(call, device, min_run_time), _peak_memory(call, device))
        ref_t = times["reference"][0]
        comp_t = times.get("compile(reference)", (None,))[0]
        bw = copy_bandwidth(device)
        for vname, (t, mem) in times.items():
            gbs = case.bytes_moved / t if case.bytes_moved and pass_name == "fwd" else None
            rows.append({
                "op": case.op, "case": case.name, "pass": pass_name, "variant": vname,
                "median_ms": round(t * 1e3, 4),
                "x_vs_reference": round(ref_t / t, 3),
                "x_vs_compile": round(comp_t / t, 3) if comp_t else None,
                "peak_mem_mb": round(mem / 2 ** 20, 2) if mem is not None else None,
                "gb_per_s": round(gbs / 1e9, 2) if gbs else None,
                "frac_of_copy_bw": round(gbs / bw, 3) if gbs else None,
                "tflops": round(case.flops / t / 1e12, 3) if case.flops and pass_name == "fwd" else None,
            })
    return rows


def context(device: str) -> dict:
    try:
        import triton
        tv = triton.__version__
    except ImportError:
        tv = None
    return {"timestamp": _dt.datetime.now().isoformat(timespec="seconds"), "device": device_name(device),
            "torch": torch.__version__, "triton": tv, "fastnoise": fastnoise.__version__, "commit": git_commit(),
            "cpu_capability": fastnoise.cpu_capability()}


def append_csv(rows: Sequence[dict], device: str, path: Path = RESULTS) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    ctx = context(device)
    full = [{**ctx, **r} for r in rows]
    fields = list(full[0].keys()) if full else []
    old_fields, old_rows = [], []
    if path.exists():
        with path.open(newline="") as f:
            reader = csv.DictReader(f)
            old_fields = list(reader.fieldnames or [])
            if old_fields != fields:  # columns were added: rewrite the file with every column
                old_rows = list(reader)
    if path.exists() and old_fields == fields:
        with path.open("a", newline="") as f:
            csv.DictWriter(f, fieldnames=fields).writerows(full)
        return path
    fields = old_fields + [c for c in fields if c not in old_fields]
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields)
        w.writeheader()
        w.writerows(old_rows + full)
    return path


def format_table(rows: Sequence[dict]) -> str:
    cols = ["op", "case", "pass", "variant", "median_ms", "x_vs_reference", "x_vs_compile", "gb_per_s",
            "frac_of_copy_bw", "peak_mem_mb"]
    cells = [[("" if r.get(c) is None else str(r.get(c))) for c in cols] for r in rows]
    widths = [max([len(c)] + [len(row[i]) for row in cells]) for i, c in enumerate(cols)]
    line = lambda xs: "| " + " | ".join(x.ljust(w) for x, w in zip(xs, widths)) + " |"
    out = [line(cols), "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    out += [line(r) for r in cells]
    return "\n".join(out)
