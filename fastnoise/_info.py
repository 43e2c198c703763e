"""`python -m fastnoise info`: what is built and what is usable."""
from __future__ import annotations

import importlib.util
import platform

import torch

from . import _backend, _cpu_capability, _ext


def info_text() -> str:
    b = _ext.build_info()
    lines = [f"fastnoise {b.get('version', '?')} (git {b.get('git_commit', '?')[:12]})",
             f"python {platform.python_version()}, torch {torch.__version__} (CUDA {torch.version.cuda})"]
    if b:
        lines.append(f"built against torch {b.get('torch')} (CUDA {b.get('torch_cuda')}); CUDA extension built: "
                     f"{b.get('cuda_built')}; arch list: {b.get('cuda_arch_list')}; -march=native: {b.get('native')}")
        built, ok = _ext.cpu_capabilities()
        how = (f"{_cpu_capability.ENV}={_cpu_capability.requested()}" if (_cpu_capability.requested() or "").strip()
               else "auto: the fastest this CPU supports")
        lines.append(f"CPU capability in use: {_ext.cpu_capability() or 'none'} ({how}); built: "
                     f"{', '.join(built) or 'none'}; supported by this CPU: {', '.join(ok) or 'none'}")
        if b.get("torch") != torch.__version__:
            lines.append(f"WARNING: build/runtime torch mismatch: {_ext.REBUILD_HINT}")
    else:
        lines.append("no build metadata: fastnoise was not built (`pip install --no-build-isolation -e .`)")
    triton = importlib.util.find_spec("triton")
    tv = "not installed"
    if triton is not None:
        import triton as _t
        tv = _t.__version__
    lines.append(f"triton {tv}; TRITON_INTERPRET={'1' if _backend.triton_interpret() else '0'}")
    lines.append(f"CUDA devices: {torch.cuda.device_count() if torch.cuda.is_available() else 0}"
                 + (f" ({torch.cuda.get_device_name(0)})" if torch.cuda.is_available() else ""))
    lines.append(f"selected backend: {_backend.current_backend() or 'default (cpu for CPU tensors, cuda for CUDA)'}")
    for dev in ["cpu"] + (["cuda"] if torch.cuda.is_available() else []):
        lines.append(f"backends usable on {dev}:")
        for name in _backend.BACKENDS:
            why = _backend._why_unusable(name, dev)
            lines.append(f"  {name:<10} {'yes' if why is None else 'no: ' + why}")
    lines.append(methods_text())
    return "\n".join(lines)


def methods_text() -> str:
    """One line per registered defense method: name and description."""
    from . import methods
    avail = methods.available()
    width = max((len(n) for n in avail), default=4)
    lines = [f"defense methods ({len(avail)}; `fastnoise.convert(model, name, ...)`, `fastnoise train --method name`):"]
    lines += [f"  {n:<{width}}  {d}" for n, d in avail.items()]
    return "\n".join(lines)
