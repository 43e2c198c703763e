#!/usr/bin/env python3
"""Compile every Triton kernel launch of the test suite for the GPUs fastnoise targets, on a machine without one.

    python tools/triton_compile_check.py DIR [--arch 80,90] [--jobs 2]

The Triton analogue of `make cuda-check` (every .cu compiled for sm_80 and sm_90 by nvcc): Triton kernels run
here only in the interpreter (TRITON_INTERPRET=1), which executes them as numpy and never lowers them, so a
kernel that the GPU compiler rejects (a type the MLIR lowering refuses, a dot shape or dtype the tensor cores do
not take, an op the interpreter accepts but the backend does not) would pass every CPU test and fail on the
first GPU lent. Triton compiles for a target without a device: TTIR -> TTGIR -> LLVM -> PTX -> cubin (the
wheel's own ptxas), and that is what this does.

Phase 1, recording (tests/conftest.py): with ``FASTNOISE_TRITON_RECORD=DIR`` every launch the test suite makes
of one of fastnoise's ``@triton.jit`` kernels under the interpreter is reduced to its compile signature (the
pointer dtypes, the integer widths, the value of every ``tl.constexpr`` argument) and each process writes
the distinct ones to ``DIR/<pid>.json``. `make test` records (CI runs every Triton kernel, design note 52).

Phase 2, this script: the distinct signatures of all the files, each compiled with ``triton.compile`` for
``GPUTarget("cuda", arch, 32)`` of every ``--arch``. Prints one line per kernel (signatures, targets, time) and
every failure with its signature and the compiler's message; exit status 1 when any fails, 2 when nothing was
recorded. The recorded signatures are the interpreter's launches; where a wrapper launches differently on a
GPU (the implicit-GEMM kernels of triton_kernels/noise_conv.py and sampled.py: block sizes, CAST, the
bfloat16 output), its module's ``gpu_launch_args(kernel, args)`` gives the GPU's arguments, which are compiled too.
"""
from __future__ import annotations

import argparse
import collections
import concurrent.futures as cf
import importlib
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# torch dtype name -> Triton pointer element type (triton/runtime/jit.py's mapping for tensors)
_PTR = {"float32": "fp32", "float64": "fp64", "float16": "fp16", "bfloat16": "bf16", "int8": "i8", "int16": "i16",
        "int32": "i32", "int64": "i64", "uint8": "u8", "uint16": "u16", "uint32": "u32", "uint64": "u64",
        "bool": "i1"}


# ---- phase 1: recording (installed by tests/conftest.py) -------------------------------------------------

def _describe(value, constexpr: bool):
    """The compile-relevant description of one launch argument (JSON-serializable)."""
    import torch
    import triton.language as tl
    if isinstance(value, tl.constexpr):  # a module-level tl.constexpr passed by the host code
        value = value.value
    if constexpr:
        if isinstance(value, tl.dtype):
            return ["dtype", str(value)]
        if value is None or isinstance(value, (bool, int, float, str)):
            return ["value", value]
        raise TypeError(f"constexpr of type {type(value).__name__} cannot be recorded")
    if isinstance(value, torch.Tensor):
        return ["ptr", _PTR[str(value.dtype).replace("torch.", "")]]
    if value is None:
        return ["value", None]
    if isinstance(value, bool):
        return ["scalar", "i1"]
    if isinstance(value, int):
        return ["scalar", "i32" if -2 ** 31 <= value < 2 ** 31 else ("i64" if -2 ** 63 <= value < 2 ** 63 else "u64")]
    if isinstance(value, float):
        return ["scalar", "fp32"]
    raise TypeError(f"argument of type {type(value).__name__} cannot be recorded")


class Recorder:
    """Collects the distinct compile signatures of the interpreter's kernel launches."""

    def __init__(self, out_dir: str, modules: str = "") -> None:
        self.out = Path(out_dir)
        self.modules = modules  # record the kernels of modules whose name starts with this (tests: "fastnoise.")
        self.seen: dict = {}

    def install(self) -> None:
        import inspect

        from triton.runtime import interpreter

        original = interpreter.InterpretedFunction.run
        recorder = self

        def run(fn_self, *args, grid, warmup, **kwargs):
            fn = fn_self.fn
            if not fn.__module__.startswith(recorder.modules):
                return original(fn_self, *args, grid=grid, warmup=warmup, **kwargs)
            params = inspect.signature(fn).parameters
            bound = dict(zip(fn_self.arg_names, args))
            bound.update((k, v) for k, v in kwargs.items() if k in params)
            try:
                # a constexpr parameter as Triton decides it (triton/runtime/jit.py KernelParam.is_constexpr: the
                # annotation names constexpr; a string under `from __future__ import annotations`)
                sig = tuple((name, tuple(_describe(bound[name], "constexpr" in str(params[name].annotation))))
                            for name in fn_self.arg_names if name in bound)
                key = (fn.__module__, fn.__name__, sig)
                if key not in recorder.seen:
                    recorder.seen[key] = {"module": fn.__module__, "kernel": fn.__name__,
                                          "args": {n: list(d) for n, d in sig}}
            except (TypeError, KeyError) as e:  # recorded as a failure of the check, never silently dropped
                key = (fn.__module__, fn.__name__, "unrecordable", str(e))
                recorder.seen.setdefault(key, {"module": fn.__module__, "kernel": fn.__name__,
                                               "unrecordable": str(e)})
            return original(fn_self, *args, grid=grid, warmup=warmup, **kwargs)

        self._restore = (interpreter.InterpretedFunction, original)
        interpreter.InterpretedFunction.run = run

    def uninstall(self) -> None:
        cls, original = self._restore
        cls.run = original

    def write(self) -> None:
        if not self.seen:
            return
        self.out.mkdir(parents=True, exist_ok=True)
        path = self.out / f"{os.getpid()}.json"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(list(self.seen.values())))
        os.replace(tmp, path)


# ---- phase 2: compiling -----------------------------------------------------------------------------------

def _load(paths) -> list[dict]:
    seen, out = set(), []
    for p in paths:
        for rec in json.loads(Path(p).read_text()):
            key = json.dumps(rec, sort_keys=True)
            if key not in seen:
                seen.add(key)
                out.append(rec)
    return out


def _compile(rec: dict, arch: int) -> tuple[bool, float, str]:
    """Compile one recorded signature for sm_<arch>: (ok, seconds, error message)."""
    import triton
    import triton.language as tl
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    t0 = time.perf_counter()
    if "unrecordable" in rec:
        return False, 0.0, f"launch not recordable: {rec['unrecordable']}"
    fn = getattr(importlib.import_module(rec["module"]), rec["kernel"])
    signature, constexprs = {}, {}
    for name, (kind, value) in rec["args"].items():
        if kind == "ptr":
            signature[name] = "*" + value
        elif kind == "scalar":
            signature[name] = value
        else:  # a constexpr (or a None argument, which Triton passes as a constexpr)
            signature[name] = "constexpr"
            constexprs[name] = tl.dtype(value) if kind == "dtype" else value
    try:
        triton.compile(ASTSource(fn, signature, constexprs=constexprs), target=GPUTarget("cuda", arch, 32))
    except Exception as e:  # noqa: BLE001 - every compiler error is the result being reported
        return False, time.perf_counter() - t0, _root_cause(e)
    return True, time.perf_counter() - t0, ""


def _root_cause(e: BaseException) -> str:
    """The innermost error of a chain of Triton CompilationErrors, with the source line of each level."""
    chain = []
    while e is not None:
        chain.append(e)
        e = e.__cause__ or e.__context__
    lines = []
    for c in chain[:-1]:  # each CompilationError's first line names the position; its last the source line
        text = [t for t in str(c).splitlines() if t.strip()]
        caret = next((i for i, t in enumerate(text) if t.strip() == "^"), len(text))
        if text:
            lines.append(f"{text[0]} {text[caret - 1].strip() if caret > 1 else ''}".strip())
    root = chain[-1]
    lines.append(f"{type(root).__name__}: {str(root).strip()[:1200]}")
    return "\n  ".join(lines)


def _worker_init() -> None:
    os.environ.pop("TRITON_INTERPRET", None)  # real JITFunctions: the kernels as the GPU compiles them
    sys.path.insert(0, str(ROOT))


def _with_gpu_variants(recs: list[dict]) -> list[dict]:
    """`recs` plus, for each launch whose module defines ``gpu_launch_args(kernel, args)`` (the implicit-GEMM
    kernels: other block sizes, CAST, output dtype on a GPU), the arguments the GPU launch takes instead."""
    out, seen = list(recs), {json.dumps(r, sort_keys=True) for r in recs}
    for rec in recs:
        if "args" not in rec:
            continue
        gpu = getattr(importlib.import_module(rec["module"]), "gpu_launch_args", None)
        if gpu is None:
            continue
        args = gpu(rec["kernel"], rec["args"])
        if args != rec["args"]:
            v = {**rec, "args": args, "variant": "gpu"}
            key = json.dumps({k: x for k, x in v.items() if k != "variant"}, sort_keys=True)
            if key not in seen:
                seen.add(key)
                out.append(v)
    return out


def _short(rec: dict) -> str:
    if "args" not in rec:
        return "?"
    cs = [f"{n}={v}" for n, (k, v) in rec["args"].items() if k in ("value", "dtype")]
    ptrs = sorted({v for k, v in rec["args"].values() if k == "ptr"})
    return f"ptr {'/'.join(ptrs)}; " + ", ".join(cs)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("dir", help="folder of the recorded signatures (FASTNOISE_TRITON_RECORD of the test run)")
    p.add_argument("--arch", default="80,90", help="comma-separated compute capabilities (default 80,90)")
    p.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1))
    args = p.parse_args(argv)
    try:
        archs = [int(a) for a in args.arch.split(",")]
    except ValueError:
        p.error(f"--arch must be comma-separated integers such as 80,90, got {args.arch!r}")
    if args.jobs < 1:
        p.error(f"--jobs must be >= 1, got {args.jobs}")
    files = sorted(Path(args.dir).glob("*.json"))
    recs = _load(files)
    if not recs:
        print(f"triton-compile-check: no recorded launches in {args.dir} (run the tests with "
              f"FASTNOISE_TRITON_RECORD={args.dir})", file=sys.stderr)
        return 2
    _worker_init()  # this process imports the kernel modules too (their gpu_launch_args)
    recorded = len(recs)
    recs = _with_gpu_variants(recs)
    t0 = time.perf_counter()
    jobs = [(r, a) for r in recs for a in archs]
    with cf.ProcessPoolExecutor(args.jobs, initializer=_worker_init) as ex:
        results = list(ex.map(_compile, [r for r, _ in jobs], [a for _, a in jobs]))
    per_kernel: dict = collections.defaultdict(lambda: [0, 0, 0.0])
    failures = []
    for (rec, arch), (ok, secs, msg) in zip(jobs, results):
        k = per_kernel[f"{rec['module']}.{rec['kernel']}"]
        k[0] += 1
        k[1] += not ok
        k[2] += secs
        if not ok:
            failures.append((rec, arch, msg))
    print(f"triton-compile-check: {recorded} distinct launch signatures from {len(files)} file(s) + "
          f"{len(recs) - recorded} GPU launch configurations of them, targets sm_{', sm_'.join(map(str, archs))}, "
          f"{len(jobs)} compilations in {time.perf_counter() - t0:.0f} s")
    for name in sorted(per_kernel):
        n, bad, secs = per_kernel[name]
        print(f"  {name:55s} {n:4d} compiled  {bad:3d} failed  {secs:6.1f} s")
    for rec, arch, msg in failures:
        launch = " (GPU launch configuration)" if rec.get("variant") == "gpu" else ""
        print(f"\nFAILED sm_{arch} {rec['module']}.{rec['kernel']}{launch} ({_short(rec)}):\n  {msg}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
