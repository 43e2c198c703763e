"""Several noise draws of one model on one input as batched forward passes (batched EOT / ensembles).

EOT (`fastnoise.attacks.EOTModel`) and ensembles (`fastnoise.nn.MeanSoftmax`) run the same input through
the model n times, each pass with fresh noise. `draw_outputs(model, x, n)` returns the n outputs; when the
model allows it (`batchable`) it runs them as forwards of the batch replicated r <= n times
(``cat([x] * r)``, at most `max_batch` samples per forward), else as n sequential forwards.

Why the batched outputs equal the sequential ones, bit for bit: every fastnoise noise layer that declares
``draws_per_element = True`` (`GaussianNoise`, `LearnableNoise`, `RandomWeight`, `SAL`) gives element i
of a call the Philox stream element ``offset + i`` and advances its offset by ``x.numel()`` per call
(`fastnoise.rng.PhiloxStream`). Replica k of a batched call therefore draws stream elements
``offset + k * numel(x) + i`` -- exactly what the k-th of n sequential calls draws -- and the offset ends
where n sequential calls leave it. Every other layer of a model in eval mode computes each sample on its
own (convolutions, eval-mode BatchNorm, linear layers), and the wrappers reduce the n outputs in the
sequential order (``out_0 + out_1 + ...``). Bit-identity additionally needs the dense kernels (MKL /
oneDNN) to compute a sample's output independently of the batch size, which holds for the models tested
(tests/nn/test_draws.py); anything else is a rounding-level difference of an identically distributed draw.

`batchable(model)` is False (sequential passes, the old behaviour) when any module is in training mode
(train-mode BatchNorm mixes the samples of a batch) or an active stochastic `NoiseModule` does not declare
``draws_per_element`` (its draws might be shared across the batch or come from torch's global RNG, whose
sequence a replicated batch would consume differently).

Nesting: an EOT over an ensemble (EOT-20 of RSE's 20-pass `MeanSoftmax`) stays bit-identical. While a
batched forward runs, `replica_groups()` tells the inner model that its input is G groups of B samples
(G replicas of the outer wrapper); the inner wrapper then orders its passes (group g, pass j) as the
sequential calls would: pass j of outer draw g reads stream elements ``(g * n + j) * numel + i``.
"""
from __future__ import annotations

import contextlib
from typing import Iterator, Optional

import torch

from .. import _checks
from ._mode import noise_modules

__all__ = ["DEFAULT_MAX_BATCH", "batchable", "draw_outputs", "grouped", "merge_groups", "replica_groups"]

#: default cap on the samples of one batched forward (the chunk size): a bound on the transient memory of
#: inference; under autograd the n sequential passes keep their graphs alive until backward anyway.
DEFAULT_MAX_BATCH = 4096

_groups: list[int] = []


def replica_groups() -> int:
    """How many replica groups the input of the current forward holds (1 outside a batched draw)."""
    return _groups[-1] if _groups else 1


@contextlib.contextmanager
def grouped(g: int) -> Iterator[None]:
    """Within: the model's input is `g` replica groups of equal size (see `replica_groups`)."""
    _groups.append(g)
    try:
        yield
    finally:
        _groups.pop()


def batchable(model: torch.nn.Module) -> bool:
    """Whether n draws of `model` may run as one forward of the replicated batch (module docstring)."""
    for m in model.modules():
        if m.training:
            return False
    return all(getattr(m, "draws_per_element", False) for m in noise_modules(model)
               if m.stochastic and m.noise_active)


def draw_outputs(model: torch.nn.Module, x: torch.Tensor, n: int, *, batch: Optional[bool] = None,
                 max_batch: int = DEFAULT_MAX_BATCH) -> torch.Tensor:
    """The outputs of `n` noisy passes of `model` on `x`: a tensor [G, n, B, ...] (G = `replica_groups()`,
    B = len(x) / G; out[g, j] is pass j on group g), the same values as n sequential passes.

    batch: None = `batchable(model)`, False = sequential passes, True = batched (the caller vouches for it);
    max_batch: most samples per forward (>= B: fewer replicas than that fall back to one pass at a time).
    """
    n = _checks.integer("n", n, lo=1)
    max_batch = _checks.integer("max_batch", max_batch, lo=1)
    G = replica_groups()
    if x.dim() == 0 or x.shape[0] % G:
        raise ValueError(f"x must hold {G} replica groups along dim 0, got shape {tuple(x.shape)}")
    B = x.shape[0] // G
    if batch is None:
        batch = batchable(model)
    if not batch or G * n == 1:
        if G != 1:  # an outer wrapper batched this model, so it is batchable: keep the (group, pass) order
            raise RuntimeError("draw_outputs: a grouped input needs batch=True")
        outs = [model(x) for _ in range(n)]
        return torch.stack(outs).unsqueeze(0)
    xs = x.reshape(G, B, *x.shape[1:])
    per = max(1, max_batch // max(B, 1))  # replicas per forward
    slots = G * n  # pass j of group g is slot g * n + j: the sequential order
    chunks = []
    for s0 in range(0, slots, per):
        s1 = min(slots, s0 + per)
        g0, g1 = s0 // n, (s1 - 1) // n
        if g0 == g1:  # one group: plain replication (expand: no copy until the model needs one)
            xin = xs[g0].unsqueeze(0).expand(s1 - s0, *xs.shape[1:])
        else:
            idx = torch.arange(s0, s1, device=x.device) // n
            xin = xs.index_select(0, idx)
        with grouped(s1 - s0):
            y = model(xin.reshape((s1 - s0) * B, *x.shape[1:]))
        chunks.append(y.reshape(s1 - s0, B, *y.shape[1:]))
    out = chunks[0] if len(chunks) == 1 else torch.cat(chunks)
    return out.reshape(G, n, B, *out.shape[2:])


def merge_groups(y: torch.Tensor) -> torch.Tensor:
    """[G, B, ...] -> [G * B, ...]: a wrapper's per-group result back in the layout of its input."""
    return y.reshape(y.shape[0] * y.shape[1], *y.shape[2:])
