"""Build fastnoise: the C++ CPU kernels once per CPU capability, the CUDA extension when possible.

The `cpu` sources of csrc/sources.txt are compiled once per capability of csrc/cpu_capabilities.txt
(generic, avx2, avx512 on x86-64; generic elsewhere) into the modules fastnoise/_C_<capability>;
`import fastnoise` loads the one the running CPU supports best (fastnoise/_cpu_capability.py).

Environment:
  FASTNOISE_CPU_CAPABILITIES=a,b  build only these capabilities (default: every one of this machine's
                     architecture, for a wheel that runs everywhere); `host`: only those this machine's CPU
                     runs, i.e. can test (`make setup` and CI: no build that nothing here could load)
  FASTNOISE_NATIVE=1 also build `native` (-march=native: fastest here, runs only on CPUs with every flag of
                     this one); `import fastnoise` prefers it where it can run
  FASTNOISE_CUDA=1   force the CUDA extension (fails loudly if torch has no CUDA or nvcc is missing)
  FASTNOISE_CUDA=0   skip it
  TORCH_CUDA_ARCH_LIST  architectures for the CUDA extension (default "8.0;9.0")
  MAX_JOBS           parallel compile jobs per extension (the extensions build in parallel too)
"""
import copy
import json
import os
import platform
import subprocess
from pathlib import Path

from setuptools import find_packages, setup

import torch
from torch.utils.cpp_extension import BuildExtension, CppExtension, CUDAExtension, CUDA_HOME

ROOT = Path(__file__).resolve().parent


def read_sources() -> dict:
    """Parse csrc/sources.txt (the list CMakeLists.txt reads too) into {kind: [paths]}."""
    kinds = {"cpu": [], "glue": [], "cuda": []}
    for line in (ROOT / "csrc" / "sources.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        kind, path = line.split()
        if kind not in kinds:
            raise ValueError(f"csrc/sources.txt: unknown kind {kind!r} (expected one of {sorted(kinds)})")
        kinds[kind].append(path)
    return kinds


def _capability_module():
    """fastnoise/_cpu_capability.py, loaded by path (importing the package would load the kernels)."""
    import importlib.util
    spec = importlib.util.spec_from_file_location("_fastnoise_cpu_capability", ROOT / "fastnoise" / "_cpu_capability.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


CAP = _capability_module()


def capabilities_to_build(caps: dict) -> list:
    here = CAP.buildable(caps)
    asked = os.environ.get("FASTNOISE_CPU_CAPABILITIES", "").strip()
    if asked.lower() == "host":  # the ones this machine can run (and so test): generic + the supported others
        flags = CAP.cpu_flags()
        names = [n for n in here if set(caps[n]["needs"]) <= flags]
    elif asked:
        names = [a.strip().lower() for a in asked.split(",") if a.strip()]
        valid = here + ["native"]
        bad = [n for n in names if n not in valid]
        if bad:
            raise ValueError(f"FASTNOISE_CPU_CAPABILITIES: {bad} cannot be built on {CAP.machine()}; "
                             f"valid: {', '.join(valid)}")
    else:
        names = list(here)
    if os.environ.get("FASTNOISE_NATIVE") == "1" and "native" not in names:
        names.append("native")
    return names


def want_cuda() -> bool:
    flag = os.environ.get("FASTNOISE_CUDA")
    possible = torch.version.cuda is not None and CUDA_HOME is not None
    if flag == "0":
        return False
    if flag == "1":
        if not possible:
            raise RuntimeError(
                "FASTNOISE_CUDA=1 but the CUDA extension cannot be built: "
                f"torch.version.cuda={torch.version.cuda}, CUDA_HOME={CUDA_HOME}. "
                "Install a CUDA build of torch and the CUDA toolkit (nvcc).")
        return True
    return possible


def git_commit() -> str:
    try:
        return subprocess.check_output(["git", "rev-parse", "HEAD"], cwd=ROOT,
                                       stderr=subprocess.DEVNULL, text=True).strip()
    except Exception:
        return "unknown"


class Build(BuildExtension):
    """torch's BuildExtension with one build folder per extension under build/ext/ (the capability modules
    compile the same sources: their objects and ninja files must not collide; a folder that persists
    makes ninja rebuild only what changed, for editable installs too) and the extensions built in parallel."""

    def finalize_options(self) -> None:
        super().finalize_options()
        if self.parallel is None:
            self.parallel = len(self.distribution.ext_modules or []) or None

    def build_extension(self, ext) -> None:
        clone = copy.copy(self)  # thread-safe: the parallel builds must not share build_temp
        clone.build_temp = str(ROOT / "build" / "ext" / ext.name.split(".")[-1])
        super(Build, clone).build_extension(ext)


def main() -> None:
    src = read_sources()
    caps = CAP.read_table(ROOT / "csrc" / "cpu_capabilities.txt")
    build_caps = capabilities_to_build(caps)
    cuda = want_cuda()
    include = [str(ROOT / "csrc")]  # copied per extension: CppExtension appends torch's paths to the list in place
    ext = []
    for name in build_caps:
        cxx = caps["common"]["flags"] + caps[name]["flags"] + [f"-DFASTNOISE_CPU_CAPABILITY={name}", "-fopenmp"]
        ext.append(CppExtension(f"fastnoise._C_{name}", src["cpu"], include_dirs=list(include),
                                extra_compile_args={"cxx": cxx}, extra_link_args=["-fopenmp"]))
    arch = os.environ.get("TORCH_CUDA_ARCH_LIST")
    if cuda:
        if not arch:
            arch = "8.0;9.0"
            os.environ["TORCH_CUDA_ARCH_LIST"] = arch
        ext.append(CUDAExtension(
            "fastnoise._C_cuda", src["glue"] + src["cuda"], include_dirs=list(include),
            extra_compile_args={"cxx": ["-O3", "-std=c++17", "-g0"],
                                "nvcc": ["-O3", "-std=c++17", "-lineinfo"]}))
    native_needs = sorted(CAP.cpu_flags())
    info = {
        "version": (ROOT / "fastnoise" / "version.py").read_text().split('"')[1],
        "torch": torch.__version__,
        "torch_cuda": torch.version.cuda,
        "cuda_built": cuda,
        "cuda_arch_list": arch if cuda else None,
        "native": "native" in build_caps,
        "machine": platform.machine(),
        # {name: CPU flags it needs}: the modules fastnoise/_C_<name> built, read by fastnoise/_cpu_capability.py
        "cpu_capabilities": {n: (native_needs if n == "native" else caps[n]["needs"]) for n in build_caps},
        "cpu_capabilities_known": [n for n in caps if n != "common"],
        "git_commit": git_commit(),
    }
    (ROOT / "fastnoise" / "_build_info.json").write_text(json.dumps(info, indent=2) + "\n")
    setup(
        packages=find_packages(include=["fastnoise", "fastnoise.*"]) + ["fastnoise.triton_kernels"],
        package_dir={"fastnoise": "fastnoise", "fastnoise.triton_kernels": "triton_kernels"},
        package_data={"fastnoise": ["_build_info.json"]},
        ext_modules=ext,
        cmdclass={"build_ext": Build.with_options(use_ninja=True)},
    )


main()
