"""Build fastnoise: the C++ CPU extension always, the CUDA extension when possible.

Environment:
  FASTNOISE_CUDA=1   force the CUDA extension (fails loudly if torch has no CUDA or nvcc is missing)
  FASTNOISE_CUDA=0   skip it
  FASTNOISE_NATIVE=1 compile the CPU kernels with -march=native (the Makefile sets it: it builds
                     for the machine it runs on; leave it unset for portable wheels)
  TORCH_CUDA_ARCH_LIST  architectures for the CUDA extension (default "8.0;9.0")
"""
import json
import os
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


def main() -> None:
    src = read_sources()
    cuda = want_cuda()
    cxx = ["-O3", "-std=c++17", "-fno-math-errno"]  # sqrtf as one instruction: vectorized Box-Muller
    if os.environ.get("FASTNOISE_NATIVE") == "1":
        cxx.append("-march=native")
    include = [str(ROOT / "csrc")]
    ext = [CppExtension("fastnoise._C", src["cpu"], include_dirs=include,
                        extra_compile_args={"cxx": cxx + ["-fopenmp"]}, extra_link_args=["-fopenmp"])]
    arch = os.environ.get("TORCH_CUDA_ARCH_LIST")
    if cuda:
        if not arch:
            arch = "8.0;9.0"
            os.environ["TORCH_CUDA_ARCH_LIST"] = arch
        ext.append(CUDAExtension(
            "fastnoise._C_cuda", src["glue"] + src["cuda"], include_dirs=include,
            extra_compile_args={"cxx": ["-O3", "-std=c++17"],
                                "nvcc": ["-O3", "-std=c++17", "-lineinfo"]}))
    info = {
        "version": (ROOT / "fastnoise" / "version.py").read_text().split('"')[1],
        "torch": torch.__version__,
        "torch_cuda": torch.version.cuda,
        "cuda_built": cuda,
        "cuda_arch_list": arch if cuda else None,
        "native": os.environ.get("FASTNOISE_NATIVE") == "1",
        "git_commit": git_commit(),
    }
    (ROOT / "fastnoise" / "_build_info.json").write_text(json.dumps(info, indent=2) + "\n")
    setup(
        packages=find_packages(include=["fastnoise", "fastnoise.*"]) + ["fastnoise.triton_kernels"],
        package_dir={"fastnoise": "fastnoise", "fastnoise.triton_kernels": "triton_kernels"},
        package_data={"fastnoise": ["_build_info.json"]},
        ext_modules=ext,
        cmdclass={"build_ext": BuildExtension.with_options(use_ninja=True)},
    )


main()
