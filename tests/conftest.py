"""Test set-up: Triton kernels run in the interpreter on machines without CUDA.

TRITON_INTERPRET must be set before triton kernels are defined, so it is set here, before any test
imports fastnoise. GPU tests skip with a reason on CPU machines; nothing else is skipped. Every test
that runs on a GPU gets the marker `gpu` (a CUDA device / backend parameter, or a skip reason naming
CUDA or a GPU): `make gpu-check` runs `pytest -m gpu` on a GPU machine and lists them in its dry run.
"""
import os
import re
import sys
from pathlib import Path

import pytest
import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

sys.path.insert(0, str(Path(__file__).resolve().parent))  # `import conformance`


def _on_cuda(value) -> bool:
    return (isinstance(value, str) and value == "cuda") or (isinstance(value, torch.device) and value.type == "cuda")


def _needs_gpu(item) -> bool:
    """A test runs on the GPU when a parameter is the CUDA device / backend or its skip reason names CUDA/GPU."""
    callspec = getattr(item, "callspec", None)
    if callspec is not None and any(_on_cuda(v) for v in callspec.params.values()):
        return True
    for mark in item.iter_markers():
        if mark.name in ("skip", "skipif"):
            reason = str(mark.kwargs.get("reason", "")) + " ".join(a for a in mark.args if isinstance(a, str))
            if re.search(r"\b(cuda|gpu)\b", reason, re.IGNORECASE):
                return True
    return False


def _triton_subset(config, items) -> None:
    """FASTNOISE_TRITON_SUBSET=k (CI sets 4, design note 52): under the Triton interpreter keep every k-th
    Triton-on-CPU case of each test function (the first always), so every Triton kernel and test still runs
    in CI while the interpreter's cost shrinks k-fold; `make test-full` (k = 1) and the GPU check run all."""
    k = os.environ.get("FASTNOISE_TRITON_SUBSET", "1")
    if not k.isdigit() or int(k) < 1:
        raise pytest.UsageError(f"FASTNOISE_TRITON_SUBSET must be an integer >= 1, got {k!r}")
    k = int(k)
    if k == 1 or os.environ.get("TRITON_INTERPRET") != "1":
        return
    seen: dict = {}
    keep, drop = [], []
    for item in items:
        cs = getattr(item, "callspec", None)
        if cs is not None and "triton" in cs.id.split("-") and "cuda" not in cs.id.split("-"):
            key = (item.module.__name__ if item.module else "", item.originalname)
            n = seen.get(key, 0)
            seen[key] = n + 1
            if n % k:
                drop.append(item)
                continue
        keep.append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


def pytest_collection_modifyitems(config, items):
    """Mark every GPU test `gpu` (pyproject.toml): `pytest -m gpu` is what `make gpu-check` runs on a GPU."""
    _triton_subset(config, items)
    for item in items:
        if _needs_gpu(item):
            item.add_marker(pytest.mark.gpu)


# ---- the fuzz suite's report (issue 16): cases tried per target --------------------------------------------
# Counted by tests/fuzz/fuzzkit.py in the process that runs the tests. Under pytest-xdist (CI: -n 2) that is
# a worker: each worker sends its counts to the controller (workeroutput), which prints the sum. (A summary
# printed from tests/fuzz/conftest.py never showed in CI: the controller does not collect, so it never loads
# that conftest, and its own counts are empty.)
_FUZZ_FROM_WORKERS: dict = {}


def _fuzz_counts() -> dict:
    """{target: [total, valid, invalid]} of this process."""
    fk = sys.modules.get("fuzzkit")
    if fk is None:
        return {}
    return {t: [n, fk.OUTCOMES[(t, "result")], fk.OUTCOMES[(t, "error")]] for t, n in fk.COUNTS.items()}


# ---- Triton launch signatures for tools/triton_compile_check.py (FASTNOISE_TRITON_RECORD=DIR, `make test`) ------
_TRITON_RECORDER = None


def pytest_configure(config):
    global _TRITON_RECORDER
    out = os.environ.get("FASTNOISE_TRITON_RECORD")
    if out and os.environ.get("TRITON_INTERPRET") == "1":
        import importlib.util
        path = Path(__file__).resolve().parent.parent / "tools" / "triton_compile_check.py"
        spec = importlib.util.spec_from_file_location("_triton_compile_check", path)
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        _TRITON_RECORDER = mod.Recorder(out, modules="fastnoise.")  # not a test's own kernels
        _TRITON_RECORDER.install()


def pytest_sessionfinish(session):
    if _TRITON_RECORDER is not None:
        _TRITON_RECORDER.write()
    workeroutput = getattr(session.config, "workeroutput", None)
    if workeroutput is not None:  # an xdist worker
        workeroutput["fuzz_counts"] = _fuzz_counts()


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node, error):  # xdist controller: one worker finished
    for t, c in getattr(node, "workeroutput", {}).get("fuzz_counts", {}).items():
        acc = _FUZZ_FROM_WORKERS.setdefault(t, [0, 0, 0])
        for i in range(3):
            acc[i] += c[i]


def pytest_terminal_summary(terminalreporter):
    counts = _FUZZ_FROM_WORKERS or _fuzz_counts()
    if not counts:
        return
    tr = terminalreporter
    tr.section("fuzz cases tried (issue 16): target  total  (valid / invalid)")
    for target in sorted(counts):
        n, ok, bad = counts[target]
        tr.write_line(f"{target:34s} {n:5d}  ({ok} / {bad})")
    tr.write_line(f"{'total':34s} {sum(c[0] for c in counts.values()):5d}")
