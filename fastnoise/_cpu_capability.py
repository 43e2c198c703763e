"""Which CPU build of the kernels to load: the capability (instruction set) the running CPU supports best.

setup.py compiles every C++ CPU kernel once per capability of csrc/cpu_capabilities.txt into its own module
`fastnoise/_C_<capability>` (generic, avx2, avx512 on x86-64; generic elsewhere; `native` with
FASTNOISE_NATIVE=1) and records in `_build_info.json` which were built and which CPU flags each needs.
`import fastnoise` loads exactly one of them, chosen here once: the first of PREFERENCE that was built and
whose flags the CPU has, or the one `FASTNOISE_CPU_CAPABILITY` names (for tests and benchmarks). All of them
register the same `fastnoise_kernels` ops, so two are never loaded together. An unknown, unbuilt or
unsupported name raises `CpuCapabilityError` naming the values that work here.

This file imports nothing from fastnoise: setup.py and tools/gpu_check.py load it by path (before anything
is built) to read csrc/cpu_capabilities.txt with `read_table` and to pick the build for a machine.
"""
from __future__ import annotations

import os
import platform
from pathlib import Path
from typing import Iterable, Mapping, Optional

ENV = "FASTNOISE_CPU_CAPABILITY"
PREFERENCE = ("native", "avx512", "avx2", "generic")  # fastest first


class CpuCapabilityError(ValueError):
    """FASTNOISE_CPU_CAPABILITY names a capability that is unknown, not built, or not supported by this CPU."""


def read_table(path: Path) -> dict:
    """csrc/cpu_capabilities.txt as {name: {"machines": [...], "needs": [...], "flags": [...]}} (file order)."""
    caps = {}
    for line in Path(path).read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        name, machines, needs, flags = (f.strip() for f in line.split("|"))
        caps[name] = {"machines": machines.split(), "needs": [] if needs.startswith("(") else needs.split(),
                      "flags": flags.split()}
    return caps


def machine() -> str:
    """platform.machine() as the table names it (x86_64, aarch64, ...)."""
    m = platform.machine().lower()
    return {"amd64": "x86_64", "arm64": "aarch64"}.get(m, m)


def buildable(table: Mapping[str, dict], on: Optional[str] = None) -> list:
    """The capabilities built by default on machine `on` (this one by default): all but `common` / `native`."""
    on = on or machine()
    return [n for n, c in table.items() if n not in ("common", "native") and ("*" in c["machines"] or on in c["machines"])]


def cpu_flags() -> frozenset:
    """The running CPU's feature flags, named as Linux's /proc/cpuinfo names them (x86 `flags`, Arm `Features`).

    Linux lists a feature only when the kernel enabled it (e.g. AVX-512 state saving), so this is what a
    program may use. Elsewhere the x86 levels come from torch's cpuinfo-based checks.
    """
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        text = ""
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            return frozenset(value.split())
    return _flags_from_torch()


def _flags_from_torch() -> frozenset:  # pragma: no cover - non-Linux machines
    import torch
    out = set()
    if torch.cpu._is_avx2_supported():
        out |= {"cx16", "lahf_lm", "popcnt", "pni", "sse4_1", "sse4_2", "ssse3", "avx", "avx2", "bmi1", "bmi2",
                "f16c", "fma", "abm", "movbe", "xsave"}
    if torch.cpu._is_avx512_supported():
        out |= {"avx512f", "avx512bw", "avx512cd", "avx512dq", "avx512vl"}
    return frozenset(out)


def supported(built: Mapping[str, Iterable[str]], flags: frozenset) -> list:
    """The built capabilities this CPU can run, fastest first."""
    order = [n for n in PREFERENCE if n in built] + sorted(n for n in built if n not in PREFERENCE)
    return [n for n in order if set(built[n]) <= flags]


def select(built: Mapping[str, Iterable[str]], flags: frozenset, requested: Optional[str],
           known: Iterable[str] = PREFERENCE) -> str:
    """The capability to load: `requested` (the value of FASTNOISE_CPU_CAPABILITY; None, "" or "auto": the
    fastest supported one). `built` maps each built capability to the CPU flags it needs."""
    ok = supported(built, flags)
    here = ", ".join(ok) if ok else "none"
    req = (requested or "").strip().lower()
    if req in ("", "auto"):
        if not ok:
            raise CpuCapabilityError(
                f"this CPU ({platform.machine()}) supports none of the fastnoise CPU builds "
                f"({', '.join(built) or 'none built'}); rebuild fastnoise here (`pip install --no-build-isolation .`)")
        return ok[0]
    if req not in set(known) | set(built):
        raise CpuCapabilityError(f"{ENV}={requested!r} is not a CPU capability; supported values on this "
                                 f"machine: {here} (or auto)")
    if req not in built:
        how = "build with FASTNOISE_NATIVE=1" if req == "native" else f"not built for {platform.machine()}"
        raise CpuCapabilityError(f"{ENV}={requested!r}: this fastnoise has no {req} build ({how}); supported "
                                 f"values on this machine: {here} (or auto)")
    if req not in ok:
        missing = sorted(set(built[req]) - flags)
        shown = ", ".join(missing[:8]) + (f" and {len(missing) - 8} more" if len(missing) > 8 else "")
        raise CpuCapabilityError(f"{ENV}={requested!r}: this CPU does not support {req} (lacks {shown}); "
                                 f"supported values on this machine: {here} (or auto)")
    return req


def requested() -> Optional[str]:
    return os.environ.get(ENV)
