"""Test set-up: Triton kernels run in the interpreter on machines without CUDA.

TRITON_INTERPRET must be set before triton kernels are defined, so it is set here, before any test
imports fastnoise. GPU tests skip with a reason on CPU machines; nothing else is skipped.
"""
import os
import sys
from pathlib import Path

import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

sys.path.insert(0, str(Path(__file__).resolve().parent))  # `import conformance`
