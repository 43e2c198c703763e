#!/usr/bin/env python3
"""`make gpu-check`: the whole GPU validation of fastnoise in one command, one Markdown report + one CSV.

    python tools/gpu_check.py OUT_DIR [--dry-run] [--budget 480] [--grace 45]     (or: bash tools/gpu-check)

OUT_DIR gets report.md and report.csv (rewritten after every stage) and logs.tar.gz (the raw logs, at the end).
A watchdog stops everything at budget + grace seconds: the running stage is killed and reported
"failed: global timeout", the later ones "not run: global timeout", and the report is written (exit 2).

Stages, each with a time budget (unused time passes to the next stage; everything ends within --budget
seconds, 8 minutes by default, on an H100/H200-class machine), in this order:

  env        GPU, driver, nvcc, torch, triton, CPU; copy bandwidth and cuBLAS bf16 rate are measured in `bench`
  build      `pip install --no-build-isolation --no-deps --no-index -e .` with FASTNOISE_CUDA=1, the CUDA
             extension for the one GPU architecture found (TORCH_CUDA_ARCH_LIST) and the CPU kernels for the
             one capability this CPU runs, MAX_JOBS = the machine's cores (the extensions build in parallel)
  tests      `pytest tests -m gpu`: every test that runs on CUDA, Triton's on the GPU included (the `gpu`
             marker is set in tests/conftest.py); pytest-xdist when installed; tests that would start after
             the stage deadline are reported "not run: budget"
  sanitizer  one small case per CUDA kernel, discovered: the quick cases of every benchmarks/bench_*.py are
             profiled once to see which fastnoise_kernels ops and CUDA kernels each one runs, a set of cases
             covering them all runs under `compute-sanitizer --tool memcheck` and `--tool racecheck` (at once); the
             CUDA ops of csrc/*/cuda_glue.cpp that no case reaches are reported
  bench      every case of every benchmarks/bench_*.py on the GPU (discovered, nothing per op here):
             median time, ratios to the eager reference and torch.compile, GB/s as fractions of the measured
             copy bandwidth and of the GPU's HBM peak, TFLOP/s as a fraction of its tensor-core peak (table
             below, dense, vendor datasheets); cases that do not fit are reported "not run: budget", and
             torch.compile variants are dropped once 60% of the stage is spent (said per row)

--dry-run (the default on a machine without CUDA, run by CI): every stage as far as a CPU allows: the GPU
tests are collected and listed, the benchmark cases and CUDA ops listed, the build command shown, and the
report written with "not run: no GPU" rows. Exit status 1 when a stage failed (GPU) or could not list
what it must (dry run).
"""
from __future__ import annotations

import argparse
import csv
import importlib
import importlib.util
import json
import os
import platform
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Optional

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

# (stage, budget in seconds): 470 s of stages + report within the default 480 s
STAGES = [("env", 10), ("build", 140), ("tests", 135), ("sanitizer", 85), ("bench", 100)]
NO_GPU = "not run: no GPU"
BUDGET = "not run: budget"

# Dense peaks from the vendor datasheets (no sparsity): HBM GB/s, tensor-core TFLOP/s (TOP/s for int8) and fp32
# (CUDA cores). The first pattern that matches torch.cuda.get_device_name() wins.
GPU_PEAKS = [
    (r"H200 NVL", {"hbm_gbps": 4800, "tf32": 417.5, "bf16": 835.5, "fp16": 835.5, "int8": 1670, "fp32": 60}),
    (r"H200", {"hbm_gbps": 4800, "tf32": 494.7, "bf16": 989.4, "fp16": 989.4, "int8": 1979, "fp32": 67}),
    (r"H100 NVL", {"hbm_gbps": 3900, "tf32": 417.5, "bf16": 835.5, "fp16": 835.5, "int8": 1670, "fp32": 60}),
    (r"H100 PCIe", {"hbm_gbps": 2000, "tf32": 378, "bf16": 756, "fp16": 756, "int8": 1513, "fp32": 51}),
    (r"H100", {"hbm_gbps": 3350, "tf32": 494.7, "bf16": 989.4, "fp16": 989.4, "int8": 1979, "fp32": 67}),
    (r"A100.*80GB PCIe|A100-PCIE-80GB", {"hbm_gbps": 1935, "tf32": 156, "bf16": 312, "fp16": 312, "int8": 624, "fp32": 19.5}),
    (r"A100-SXM4-80GB|A100.*SXM.*80", {"hbm_gbps": 2039, "tf32": 156, "bf16": 312, "fp16": 312, "int8": 624, "fp32": 19.5}),
    (r"A100", {"hbm_gbps": 1555, "tf32": 156, "bf16": 312, "fp16": 312, "int8": 624, "fp32": 19.5}),
]
# the tensor-core peak a case is compared with, by the dtype of its first floating input
TC_PEAK_OF = {"torch.float32": "tf32", "torch.bfloat16": "bf16", "torch.float16": "fp16", "torch.int8": "int8"}

COLUMNS = ["stage", "item", "status", "seconds", "median_ms", "x_vs_reference", "x_vs_compile", "gb_per_s",
           "frac_of_copy_bw", "frac_of_hbm_peak", "tflops", "frac_of_tc_peak", "peak_mem_mb", "detail"]


CHILDREN: set = set()  # running child processes (each in its own process group), killed by the global watchdog


def _kill(p: subprocess.Popen) -> None:
    try:
        os.killpg(p.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def peaks_for(name: str) -> Optional[dict]:
    for pattern, peaks in GPU_PEAKS:
        if re.search(pattern, name):
            return {"match": pattern, **peaks}
    return None


def run(cmd: list, timeout: float, env: Optional[dict] = None, log: Optional[Path] = None) -> tuple:
    """(returncode or None on timeout, output, seconds); the whole process group is killed on timeout."""
    t0 = time.time()
    p = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                         start_new_session=True)
    CHILDREN.add(p)
    try:
        out, _ = p.communicate(timeout=max(1.0, timeout))
        rc = p.returncode
    except subprocess.TimeoutExpired:
        _kill(p)
        out, _ = p.communicate()
        rc = None
    finally:
        CHILDREN.discard(p)
    if log is not None:
        log.write_text(out or "")
    return rc, out or "", time.time() - t0


def tail(text: str, n: int = 15) -> str:
    return "\n".join(text.strip().splitlines()[-n:])


class Check:
    """Runs the stages against one clock and collects the report rows."""

    def __init__(self, out: Path, dry: bool, budget: float):
        self.out, self.dry = out, dry
        self.logs = out / "logs"  # raw logs, packed into OUT/logs.tar.gz by the final report
        self.logs.mkdir(parents=True, exist_ok=True)
        self.final = False
        self.t0 = time.time()
        self.end = self.t0 + budget
        scale = budget / sum(b for _, b in STAGES)
        self.budgets = {s: b * scale for s, b in STAGES}
        self.carry = 0.0
        self.rows: list[dict] = []
        self.stages: list[dict] = []
        self.info: dict = {}
        self.failed = False
        self.built = False

    # ---- bookkeeping ----
    def row(self, stage: str, item: str, status: str, **kw) -> None:
        self.rows.append({"stage": stage, "item": item, "status": status, **kw})
        if status.startswith(("failed", "error")):
            self.failed = True

    def stage(self, name: str, fn) -> None:
        start = time.time()
        allotted = self.budgets[name] + self.carry
        deadline = min(start + allotted, self.end)
        status = "ok"
        if deadline - start < 5:
            status = f"skipped: no time left ({deadline - start:.0f} s of the {budget_total(self):.0f} s budget)"
            self.row(name, "(stage)", BUDGET + f" ({deadline - start:.0f} s left)")
        else:
            try:
                status = fn(deadline) or "ok"
            except Exception as e:  # a broken stage is reported, the others still run
                status = f"error: {type(e).__name__}: {e}"
                self.row(name, "(stage)", status)
        if status.startswith(("failed", "error")):
            self.failed = True
        used = time.time() - start
        self.carry = max(0.0, allotted - used)
        self.stages.append({"stage": name, "allotted_s": round(allotted, 1), "used_s": round(used, 1), "status": status})
        print(f"[gpu-check] {name}: {status} ({used:.0f} s of {allotted:.0f} s)", flush=True)
        self.report()  # partial report after every stage: a later stage that hangs or is killed loses nothing

    # ---- stages ----
    def env(self, deadline: float) -> str:
        import torch
        info = {"dry_run": self.dry, "python": platform.python_version(), "torch": torch.__version__,
                "torch_cuda": torch.version.cuda, "cpu": _cpu_name(), "cores": os.cpu_count(),
                "git_commit": _git("rev-parse", "HEAD"), "date": time.strftime("%Y-%m-%d %H:%M:%S %Z")}
        try:
            import triton
            info["triton"] = triton.__version__
        except ImportError:
            info["triton"] = None
        cap = _capability_module()
        table = cap.read_table(ROOT / "csrc" / "cpu_capabilities.txt")
        ok = cap.supported({n: table[n]["needs"] for n in cap.buildable(table)}, cap.cpu_flags())
        info["cpu_capability"] = ok[0] if ok else "generic"
        rc, out, _ = run(["nvcc", "--version"], 10) if _which("nvcc") else (None, "nvcc not found", 0)
        release = [l for l in out.splitlines() if "release" in l]
        info["nvcc"] = (release[0].strip() if release else tail(out, 1)) if rc == 0 else "not found"
        if not self.dry:
            p = torch.cuda.get_device_properties(0)
            info.update(gpu=torch.cuda.get_device_name(0), gpu_capability=f"{p.major}.{p.minor}",
                        gpu_sms=p.multi_processor_count, gpu_memory_gb=round(p.total_memory / 2 ** 30, 1),
                        gpu_count=torch.cuda.device_count())
            if _which("nvidia-smi"):
                rc, out, _ = run(["nvidia-smi", "--query-gpu=name,driver_version,clocks.max.sm,clocks.max.mem",
                                  "--format=csv,noheader"], 20)
                info["nvidia_smi"] = out.strip() if rc == 0 else f"failed: {tail(out, 2)}"
            info["peaks"] = peaks_for(info["gpu"])
        else:
            info["gpu"] = "none (dry run)" if torch.cuda.is_available() else "none"
        wheels = sorted((ROOT / ".whl").glob("*.whl"))  # pure-Python test deps carried to a machine without pip
        if wheels:
            site = Path(os.environ.get("TMPDIR", "/tmp")) / "fastnoise-gpu-check-site"
            cmd = [sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--no-compile",
                   "--upgrade", "--target", str(site)] + [str(w) for w in wheels]
            if self.dry:
                info["carried_wheels"] = f"{len(wheels)} in .whl/ (not installed: dry run)"
            else:
                rc, out, _ = run(cmd, 60, log=self.logs / "wheels.log")
                info["carried_wheels"] = f"{len(wheels)} from .whl/ into {site}" if rc == 0 else f"failed: {tail(out, 2)}"
                if rc == 0:
                    os.environ["PYTHONPATH"] = os.pathsep.join([str(site)] + [p for p in
                                                               os.environ.get("PYTHONPATH", "").split(os.pathsep) if p])
            info["carried_wheels"] += ": " + ", ".join(w.name for w in wheels)
        self.info = info
        for k, v in info.items():
            self.row("env", k, "ok", detail=json.dumps(v) if isinstance(v, dict) else str(v))
        return "ok"

    def build(self, deadline: float) -> str:
        arch = self.info.get("gpu_capability", "<GPU capability>")
        env = {**os.environ, "FASTNOISE_CUDA": "1", "TORCH_CUDA_ARCH_LIST": arch, "MAX_JOBS": str(os.cpu_count() or 4),
               "FASTNOISE_CPU_CAPABILITIES": self.info["cpu_capability"]}
        cmd = [sys.executable, "-m", "pip", "install", "--no-build-isolation", "--no-deps", "--no-index", "-e", "."]
        shown = " ".join(f"{k}={env[k]}" for k in ("FASTNOISE_CUDA", "TORCH_CUDA_ARCH_LIST", "MAX_JOBS",
                                                    "FASTNOISE_CPU_CAPABILITIES")) + " " + shlex.join(cmd)
        if self.dry:
            self.row("build", "CUDA extension + CPU kernels", NO_GPU, detail=shown)
            return NO_GPU
        rc, out, sec = run(cmd, deadline - time.time(), env, self.logs / "build.log")
        if rc != 0:
            why = "timed out (stage budget)" if rc is None else f"exit {rc}"
            self.row("build", "pip install -e .", f"failed: {why}", seconds=round(sec, 1), detail=tail(out))
            return f"failed: {why}"
        rc, out, _ = run([sys.executable, "-c", "import fastnoise, sys; print(fastnoise.info()); "
                          "sys.exit(0 if fastnoise._backend.is_usable('cuda', 'cuda') else 3)"], 120)
        (self.logs / "fastnoise_info.txt").write_text(out)
        if rc != 0:
            self.row("build", "import fastnoise (cuda backend usable)", "failed", detail=tail(out))
            return "failed: cuda backend not usable after the build"
        self.built = True
        self.row("build", "pip install -e .", "ok", seconds=round(sec, 1), detail=shown)
        return "ok"

    def tests(self, deadline: float) -> str:
        collected = self.logs / "tests_collected.txt"
        results = self.logs / "tests.jsonl"
        for p in (collected, results):
            p.unlink(missing_ok=True)
        env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
        env.update(PYTHONPATH=os.pathsep.join([str(ROOT / "tools"), env.get("PYTHONPATH", "")]).rstrip(os.pathsep),
                   GPU_CHECK_COLLECTED=str(collected), GPU_CHECK_RESULTS=str(results),
                   GPU_CHECK_DEADLINE=str(deadline - 10), TORCHINDUCTOR_FORCE_DISABLE_CACHES="1")
        cmd = [sys.executable, "-m", "pytest", "tests", "-m", "gpu", "-q", "-p", "no:cacheprovider",
               "-p", "gpu_check_pytest", "-o", "addopts=", "--continue-on-collection-errors"]
        if self.dry:
            rc, out, sec = run(cmd + ["--collect-only"], deadline - time.time(), env, self.logs / "tests.log")
            ids = collected.read_text().split() if collected.exists() else []
            if rc != 0 or not ids:
                self.row("tests", "collect -m gpu", f"error: collection failed (exit {rc}, {len(ids)} tests)",
                         detail=tail(out))
                return "error"
            for nodeid in ids:
                self.row("tests", nodeid, NO_GPU)
            return f"{len(ids)} GPU tests collected, {NO_GPU}"
        if not self.built:
            self.row("tests", "pytest -m gpu", "not run: build failed")
            return "not run: build failed"
        if importlib.util.find_spec("xdist") is not None:
            cmd += ["-n", str(min(8, max(1, (os.cpu_count() or 2) // 2)))]
        if importlib.util.find_spec("pytest_timeout") is not None:
            cmd += ["--timeout=120"]
        rc, out, sec = run(cmd, deadline - time.time(), env, self.logs / "tests.log")
        ids = collected.read_text().split() if collected.exists() else []
        outcome: dict = {}
        if results.exists():
            for line in results.read_text().splitlines():
                r = json.loads(line)
                if r["when"] == "collect":  # a module pytest could not import: its GPU tests are unknown
                    self.row("tests", f"{r['nodeid']} (collection)", "error: not collected",
                             detail=r["reason"] + " (a missing pure-Python package can travel in .whl/, docs/gpu.md)")
                elif r["outcome"] != "passed" or r["nodeid"] not in outcome:
                    outcome[r["nodeid"]] = r
        counts: dict = {}
        for nodeid in ids or list(outcome):
            r = outcome.get(nodeid)
            if r is None:
                status = "not run: pytest stopped (stage timeout)" if rc is None else f"not run: pytest exit {rc}"
            elif r["outcome"] == "skipped" and "budget" in r["reason"]:
                status = BUDGET
            elif r["outcome"] == "skipped":
                status = f"skipped: {r['reason'][:120]}"
            else:
                status = r["outcome"]
            counts[status.split(":")[0]] = counts.get(status.split(":")[0], 0) + 1
            self.row("tests", nodeid, status, seconds=r["seconds"] if r else None,
                     detail=r["reason"] if r and r["outcome"] == "failed" else "")
        if not ids:
            self.row("tests", "pytest -m gpu", f"error: nothing collected (exit {rc})", detail=tail(out))
        return ", ".join(f"{v} {k}" for k, v in sorted(counts.items())) or "error"

    def sanitizer(self, deadline: float) -> str:
        ops = cuda_ops()
        if self.dry:
            for op in ops:
                self.row("sanitizer", f"cuda op {op}", NO_GPU, detail="memcheck + racecheck on one small case")
            for case_id in child_case_list(quick=True, device="cpu"):
                self.row("sanitizer", f"candidate case {case_id}", NO_GPU)
            return NO_GPU if ops else "error: no CUDA op found in csrc/*/cuda_glue.cpp"
        if not self.built:
            self.row("sanitizer", "(stage)", "not run: build failed")
            return "not run: build failed"
        prof = self.logs / "sanitizer_profile.json"
        me = [sys.executable, str(Path(__file__).resolve())]
        rc, out, _ = run(me + ["--child", "profile", str(prof)], deadline - time.time() - 20,
                         log=self.logs / "sanitizer_profile.log")
        if rc != 0 or not prof.exists():
            self.row("sanitizer", "profile the quick cases", f"failed: exit {rc}", detail=tail(out))
            return "failed: profile"
        seen = json.loads(prof.read_text())
        chosen = cover(seen)
        reached = {op for c in seen.values() for op in c["ops"]}
        for op in ops:
            if op not in reached:
                self.row("sanitizer", f"cuda op {op}", "failed: no benchmark case runs it (add one to a "
                                                        "benchmarks/bench_*.py)")
        if not _which("compute-sanitizer"):
            for tool in ("memcheck", "racecheck"):
                self.row("sanitizer", tool, "not run: compute-sanitizer not found")
            return "not run: compute-sanitizer not found"
        left = deadline - time.time()
        if left < 15:
            for tool in ("memcheck", "racecheck"):
                self.row("sanitizer", tool, BUDGET + f" ({left:.0f} s left)")
            return BUDGET
        results: dict = {}

        def one(tool: str) -> None:  # both tools run at once (separate processes on the one GPU)
            base = ["compute-sanitizer", "--tool", tool, "--print-limit", "50", "--error-exitcode", "99"]
            cmd = base + ["--kernel-name", "kns=fastnoise"] + me + ["--child", "sanitize"] + chosen
            rc, out, sec = run(cmd, deadline - time.time(), log=self.logs / f"sanitizer_{tool}.log")
            if "[gpu-check case]" not in out and rc not in (0, None):  # the kernel filter refused: check all
                rc, out, sec = run(base + me + ["--child", "sanitize"] + chosen, deadline - time.time(),
                                   log=self.logs / f"sanitizer_{tool}.log")
            results[tool] = (rc, out, sec)

        import threading
        threads = [threading.Thread(target=one, args=(t,)) for t in ("memcheck", "racecheck")]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return "; ".join(f"{tool}: {self._sanitizer_rows(tool, *results[tool], chosen, seen)}"
                         for tool in ("memcheck", "racecheck"))

    def _sanitizer_rows(self, tool: str, rc, out: str, sec: float, chosen: list, seen: dict) -> str:
        if "Device not supported" in out or "not supported on this" in out:
            self.row("sanitizer", tool, "not run: compute-sanitizer refused the device", detail=tail(out, 4))
            return "refused the device"
        per_case: dict = {}
        current = None
        for line in out.splitlines():
            m = re.match(r"\[gpu-check case\] (.*)$", line.strip())
            if m:
                current = m.group(1)
                per_case[current] = []
            elif current is not None and line.startswith("=========") and re.search(
                    r"(Invalid|Race|Hazard|Error|error|hazard|Leaked|uninitialized)", line) \
                    and "SUMMARY" not in line:
                per_case[current].append(line.strip("= ").strip())
        summary = [l for l in out.splitlines() if "SUMMARY" in l]
        bad = 0
        for case_id in chosen:
            issues = per_case.get(case_id)
            kern = ", ".join(seen.get(case_id, {}).get("kernels", [])[:6])
            if issues is None:
                status = BUDGET if rc is None else f"failed: did not run (exit {rc})"
            elif issues:
                status, bad = f"failed: {len(issues)} report lines", bad + 1
            else:
                status = "ok"
            self.row("sanitizer", f"{tool} {case_id}", status, seconds=None,
                     detail=("; ".join(issues[:3]) if issues else "") + (f" kernels: {kern}" if kern else ""))
        if rc not in (0, None) and not bad:
            self.row("sanitizer", tool, f"failed: exit {rc}", seconds=round(sec, 1), detail=tail(out, 6))
        else:
            self.row("sanitizer", tool, "ok" if not bad and rc == 0 else ("failed" if bad else BUDGET),
                     seconds=round(sec, 1), detail=" / ".join(s.strip("= ") for s in summary))
        return "ok" if rc == 0 and not bad else f"{bad} cases with reports" if bad else f"exit {rc}"

    def bench(self, deadline: float) -> str:
        if self.dry:
            for case_id in child_case_list(quick=False, device="cuda"):
                self.row("bench", case_id, NO_GPU)
            n = sum(1 for r in self.rows if r["stage"] == "bench")
            return f"{n} cases listed, {NO_GPU}" if n else "error: no benchmark case found"
        if not self.built:
            self.row("bench", "(stage)", "not run: build failed")
            return "not run: build failed"
        out_path = self.logs / "bench.jsonl"
        out_path.unlink(missing_ok=True)
        now = time.time()
        compile_until = now + 0.6 * (deadline - now)
        me = [sys.executable, str(Path(__file__).resolve())]
        rc, out, sec = run(me + ["--child", "bench", str(out_path), str(deadline - 5), str(compile_until),
                                 json.dumps(self.info.get("peaks"))], deadline - now + 15, log=self.logs / "bench.log")
        rows = [json.loads(l) for l in out_path.read_text().splitlines()] if out_path.exists() else []
        every = [r["case_id"] for r in rows if r.get("kind") == "case"]
        listed = {r["case_id"] for r in rows if r.get("kind") is None}
        for r in rows:
            if r.get("kind") == "case":
                continue
            if r.get("kind") == "ceiling":
                self.info.setdefault("ceilings", {})[r["name"]] = r["value"]
                self.row("bench", f"ceiling: {r['name']}", "ok", detail=str(r["value"]))
                continue
            item = f"{r['case_id']} | {r.get('pass', '')} | {r.get('variant', '')}".rstrip(" |")
            self.row("bench", item, r["status"], **{k: r.get(k) for k in COLUMNS[4:] if k in r})
        for case_id in every:
            if case_id not in listed:
                self.row("bench", case_id, BUDGET if rc is None else f"not run: bench exit {rc}")
        if rc not in (0, None):
            self.row("bench", "(runner)", f"failed: exit {rc}", detail=tail(out))
        return f"{len(listed)} cases" + ("" if rc == 0 else f", runner exit {rc}")

    # ---- report ----
    def report(self, final: bool = False) -> None:
        """report.md + report.csv (rewritten after every stage; `final`: also pack logs/ into logs.tar.gz, so
        that OUT holds three files: a device machine returns only a few)."""
        self.final = final
        self.out.mkdir(parents=True, exist_ok=True)
        with (self.out / "report.csv").open("w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=COLUMNS, extrasaction="ignore")
            w.writeheader()
            w.writerows(self.rows)
        (self.out / "report.md").write_text(render_markdown(self))
        if final and self.logs.exists():
            import shutil
            import tarfile
            with tarfile.open(self.out / "logs.tar.gz", "w:gz") as tar:
                tar.add(self.logs, arcname="logs")
            shutil.rmtree(self.logs, ignore_errors=True)

    def stop(self, why: str) -> None:
        """The global watchdog / a signal: kill the running children, record why, write the final report."""
        for p in list(CHILDREN):
            _kill(p)
        done = {s["stage"] for s in self.stages}
        first = True
        for name, _ in STAGES:
            if name in done:
                continue
            status = f"failed: {why}" if first else f"not run: {why}"
            first = False
            self.row(name, "(stage)", status)
            self.stages.append({"stage": name, "allotted_s": round(self.budgets[name], 1), "used_s": None,
                                "status": status})
        self.report(final=True)


def budget_total(check: Check) -> float:
    return check.end - check.t0


# ---- discovery shared by the stages and the children ----

def bench_modules() -> list:
    return sorted(p.stem for p in (ROOT / "benchmarks").glob("bench_*.py"))


def cuda_ops() -> list:
    """Kernel ops with a CUDA implementation: the m.impl("name", ...) of the glue sources of csrc/sources.txt."""
    ops = []
    for line in (ROOT / "csrc" / "sources.txt").read_text().splitlines():
        parts = line.split("#", 1)[0].split()
        if len(parts) == 2 and parts[0] == "glue":
            ops += re.findall(r'm\.impl\(\s*"(\w+)"', (ROOT / parts[1]).read_text())
    return sorted(set(ops))


def iter_cases(quick: bool, device: str, safe: bool = False):
    """(case id, case) of every benchmark module; `safe`: a module whose cases cannot be built on `device`
    (no GPU here) is listed from its CPU cases (same names)."""
    for name in bench_modules():
        mod = importlib.import_module(f"benchmarks.{name}")
        try:
            cases = mod.cases(device, quick=quick)
        except Exception:
            if not safe:
                raise
            cases = mod.cases("cpu", quick=quick)
        for case in cases:
            yield f"{case.op}/{case.name}", case


def child_case_list(quick: bool, device: str, safe: bool = True) -> list:
    import torch
    if device == "cuda" and not torch.cuda.is_available():
        device = "cpu"
    return [cid for cid, _ in iter_cases(quick, device, safe=safe)]


def cover(seen: dict) -> list:
    """Greedy set cover: cases that together run every (op, kernel) seen, fewest first."""
    need = {("op", o) for c in seen.values() for o in c["ops"]} | {("k", k) for c in seen.values() for k in c["kernels"]}
    chosen = []
    while need:
        best = max(seen, key=lambda cid: len(need & ({("op", o) for o in seen[cid]["ops"]} |
                                                     {("k", k) for k in seen[cid]["kernels"]})))
        got = need & ({("op", o) for o in seen[best]["ops"]} | {("k", k) for k in seen[best]["kernels"]})
        if not got:
            break
        chosen.append(best)
        need -= got
    return chosen


def _call_case(case, variant: str) -> None:
    import torch
    inputs = case.make()
    out = case.variants[variant](inputs)
    if case.loss is not None:
        case.loss(out).backward()
    torch.cuda.synchronize()


# ---- child processes (run on the GPU machine) ----

def child_profile(path: str) -> int:
    """For every quick case with a `cuda` variant: the fastnoise_kernels ops and CUDA kernels it runs."""
    import torch
    from torch.profiler import ProfilerActivity, profile
    seen = {}
    for cid, case in iter_cases(quick=True, device="cuda"):
        if "cuda" not in case.variants:
            continue
        _call_case(case, "cuda")  # warm-up: lazy module loads outside the profile
        with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
            _call_case(case, "cuda")
        names = {e.name for e in prof.events()}
        seen[cid] = {"ops": sorted(n.split("::", 1)[1].split(".")[0] for n in names
                                   if n.startswith("fastnoise_kernels::")),
                     "kernels": sorted(n for n in names if "fastnoise" in n and "::" in n and "(" in n)}
    Path(path).write_text(json.dumps(seen, indent=1))
    return 0


def child_sanitize(case_ids: list) -> int:
    """Run the given quick cases' cuda variants once each (forward + backward), with markers for the parser."""
    wanted = set(case_ids)
    for cid, case in iter_cases(quick=True, device="cuda"):
        if cid in wanted:
            print(f"[gpu-check case] {cid}", flush=True)
            _call_case(case, "cuda")
            print(f"[gpu-check done] {cid}", flush=True)
    return 0


def child_bench(path: str, deadline: float, compile_until: float, peaks_json: str) -> int:
    """Time every case on the GPU; one JSON line per row, written as it is measured."""
    import torch
    import triton.testing
    from benchmarks import _common
    peaks = json.loads(peaks_json) if peaks_json != "null" else None
    f = open(path, "a")

    def emit(**row):
        f.write(json.dumps(row) + "\n")
        f.flush()

    bw = _common.copy_bandwidth("cuda")
    emit(kind="ceiling", case_id="ceiling", name="measured copy GB/s (read + write)", value=round(bw / 1e9, 1))
    a = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
    t = triton.testing.do_bench(lambda: a @ a, warmup=50, rep=200, return_mode="median") / 1e3
    emit(kind="ceiling", case_id="ceiling", name="measured cuBLAS bf16 8192^3 TFLOP/s", value=round(2 * 8192 ** 3 / t / 1e12, 1))
    del a
    cases = list(iter_cases(quick=False, device="cuda"))
    for cid, _ in cases:
        emit(kind="case", case_id=cid)
    for cid, case in cases:
        if time.time() > deadline:
            emit(case_id=cid, status=BUDGET)
            continue
        note = ""
        if time.time() > compile_until and "compile(reference)" in case.variants:
            case.variants.pop("compile(reference)")
            note = "compile(reference) not run: budget"
        try:
            rows = _common.run_case(case, "cuda")
        except Exception as e:  # one broken case must not hide the others
            emit(case_id=cid, status=f"error: {type(e).__name__}: {str(e)[:200]}")
            continue
        inp = case.make()
        dtype = next((str(v.dtype) for v in inp.values() if hasattr(v, "is_floating_point") and v.is_floating_point()),
                     "torch.float32")
        tc = TC_PEAK_OF.get(dtype)
        for r in rows:
            extra = {}
            if peaks and r.get("gb_per_s"):
                extra["frac_of_hbm_peak"] = round(r["gb_per_s"] / peaks["hbm_gbps"], 3)
            if peaks and r.get("tflops") and tc:
                extra["frac_of_tc_peak"] = round(r["tflops"] / peaks[tc], 4)
            emit(case_id=cid, status="ok", detail=(note + f" dtype {dtype.split('.')[-1]}"
                 + (f", TC peak {tc}" if tc and r.get("tflops") else "")).strip(), **r, **extra)
        torch.cuda.empty_cache()
    f.close()
    return 0


# ---- report rendering ----

def _md_table(head: list, rows: list) -> str:
    esc = lambda x: "" if x is None else str(x).replace("|", "\\|").replace("\n", " ")
    return "\n".join(["| " + " | ".join(head) + " |", "|" + "---|" * len(head)] +
                     ["| " + " | ".join(esc(x) for x in r) + " |" for r in rows])


def render_markdown(c: Check) -> str:
    i = c.info
    total = time.time() - c.t0
    lines = [f"# fastnoise GPU check{' (dry run: no GPU)' if c.dry else ''}", "",
             f"{i.get('date', '')}; GPU **{i.get('gpu', '?')}** (capability {i.get('gpu_capability', '-')}, "
             f"{i.get('gpu_sms', '-')} SMs, {i.get('gpu_memory_gb', '-')} GiB); {i.get('nvidia_smi', '')}",
             f"torch {i.get('torch')} (CUDA {i.get('torch_cuda')}), triton {i.get('triton')}, nvcc: {i.get('nvcc')}; "
             f"python {i.get('python')}; CPU {i.get('cpu')} x{i.get('cores')} (kernels built for "
             f"{i.get('cpu_capability')}); git {str(i.get('git_commit'))[:12]}",
             f"Total {total:.0f} s of a {budget_total(c):.0f} s budget. Result: "
             f"**{'FAILED' if c.failed else ('listed (dry run)' if c.dry else 'passed')}**"
             f"{'' if c.final else ' so far (partial report: the check is still running or was stopped)'}.",
             "Raw logs: `logs.tar.gz` (build, tests, sanitizer, benchmark logs and JSON lines).", "",
             "## Stages", "", _md_table(["stage", "allotted s", "used s", "status"],
                                          [[s["stage"], s["allotted_s"], s["used_s"], s["status"]] for s in c.stages])]
    peaks = i.get("peaks")
    lines += ["", "## Ceilings", "",
              f"Peak table entry: {json.dumps(peaks) if peaks else 'none for this GPU (fractions of peak left blank)'}"
              " (dense, vendor datasheets). Measured in this run: " +
              (", ".join(f"{k} = {v}" for k, v in i.get("ceilings", {}).items()) or "nothing (no GPU)") + "."]
    by_stage: dict = {}
    for r in c.rows:
        by_stage.setdefault(r["stage"], []).append(r)
    lines += ["", "## Build", ""] + [f"- {r['item']}: {r['status']}" + (f" — `{r['detail']}`" if r.get("detail") else "")
                                     for r in by_stage.get("build", [])]
    tests = by_stage.get("tests", [])
    counts: dict = {}
    for r in tests:
        counts[r["status"].split(":")[0]] = counts.get(r["status"].split(":")[0], 0) + 1
    lines += ["", "## Tests (`pytest tests -m gpu`)", "", ", ".join(f"{v} {k}" for k, v in sorted(counts.items())) or "none"]
    bad = [r for r in tests if r["status"].startswith(("failed", "error"))]
    if bad:
        lines += ["", _md_table(["test", "status", "reason"], [[r["item"], r["status"], r.get("detail")] for r in bad[:100]])]
    per_fn: dict = {}
    for r in tests:
        fn = r["item"].split("[")[0]
        per_fn.setdefault(fn, {}).setdefault(r["status"].split(":")[0], 0)
        per_fn[fn][r["status"].split(":")[0]] += 1
    lines += ["", _md_table(["test function", "outcomes"],
                            [[k, ", ".join(f"{n} {s}" for s, n in v.items())] for k, v in per_fn.items()])]
    lines += ["", "<details><summary>every GPU test</summary>", "",
              "\n".join(f"- `{r['item']}`: {r['status']}" for r in tests), "", "</details>"]
    lines += ["", "## compute-sanitizer (memcheck, racecheck)", "",
              _md_table(["item", "status", "detail"], [[r["item"], r["status"], r.get("detail")]
                                                       for r in by_stage.get("sanitizer", [])])]
    bench = by_stage.get("bench", [])
    lines += ["", "## Benchmarks", "",
              "median_ms: median time (triton.testing.do_bench); x_vs_*: the eager reference's / torch.compile's "
              "time over this row's; GB/s: the fewest bytes the forward must move over its time; frac_of_copy_bw: of "
              "the copy bandwidth measured above; frac_of_hbm_peak, frac_of_tc_peak: of the table's peaks (tensor-core "
              "peak of the inputs' dtype: TF32 for float32); peak_mem_mb: peak allocation of one call.", "",
              _md_table(["case / pass / variant", "status", "median_ms", "x_vs_reference", "x_vs_compile", "GB/s",
                         "frac copy bw", "frac HBM peak", "TFLOP/s", "frac TC peak", "peak MB", "note"],
                        [[r["item"], r["status"], r.get("median_ms"), r.get("x_vs_reference"), r.get("x_vs_compile"),
                          r.get("gb_per_s"), r.get("frac_of_copy_bw"), r.get("frac_of_hbm_peak"), r.get("tflops"),
                          r.get("frac_of_tc_peak"), r.get("peak_mem_mb"), r.get("detail")] for r in bench])]
    lines += ["", "## Environment", "", _md_table(["key", "value"], [[r["item"], r.get("detail")] for r in by_stage.get("env", [])])]
    return "\n".join(lines) + "\n"


# ---- small helpers ----

def _which(cmd: str) -> bool:
    from shutil import which
    return which(cmd) is not None


def _git(*args) -> str:
    try:
        return subprocess.check_output(["git", *args], cwd=ROOT, text=True, stderr=subprocess.DEVNULL).strip()
    except Exception:
        return "unknown"


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _capability_module():
    spec = importlib.util.spec_from_file_location("_fastnoise_cpu_capability", ROOT / "fastnoise" / "_cpu_capability.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("out", nargs="?", default="runs/gpu-check", help="folder for report.md, report.csv and logs")
    p.add_argument("--dry-run", action="store_true", help="list everything, run nothing that needs a GPU")
    p.add_argument("--budget", type=float, default=480, help="seconds for all stages (default 480 = 8 min)")
    p.add_argument("--grace", type=float, default=45, help="the global watchdog stops everything at budget + grace "
                                                            "seconds and writes the partial report (default 45)")
    p.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        kind, rest = args.child[0], args.child[1:]
        if kind == "profile":
            return child_profile(rest[0])
        if kind == "sanitize":
            return child_sanitize(rest)
        if kind == "bench":
            return child_bench(rest[0], float(rest[1]), float(rest[2]), rest[3])
        p.error(f"unknown child {kind}")
    import torch
    dry = args.dry_run or not torch.cuda.is_available()
    if not args.dry_run and dry:
        print("[gpu-check] no CUDA device: dry run", flush=True)
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    check = Check(out, dry, args.budget)

    def watchdog(signum, frame):  # global limit (--budget + --grace) or SIGTERM/SIGINT: partial results, exit 2
        why = "global timeout" if signum == signal.SIGALRM else f"stopped by signal {signal.Signals(signum).name}"
        print(f"[gpu-check] {why}: killing the running stage, writing the report", flush=True)
        check.stop(why)
        print(f"[gpu-check] report: {out / 'report.md'} (partial)", flush=True)
        os._exit(2)

    for sig in (signal.SIGALRM, signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, watchdog)
    signal.alarm(max(1, int(args.budget + args.grace)))
    for name, _ in STAGES:
        check.stage(name, getattr(check, name))
    signal.alarm(0)
    check.report(final=True)
    print(f"[gpu-check] report: {out / 'report.md'} and {out / 'report.csv'} ({time.time() - check.t0:.0f} s)")
    return 1 if check.failed else 0


if __name__ == "__main__":
    sys.exit(main())
