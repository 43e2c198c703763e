"""NENNI layer configuration, the selection it implies, and the state-dict checks (no forward code here).

A NENNI layer's configuration (ratio or N:M, k, granularity, score, inject, seed) is validated once at
construction (`check_config`). `selection` turns it into the arguments of the selection op for one
decision row of F neurons; `NENNIState` adds the INT4 rules to the one configuration check of
`fastnoise.nn.NoiseModule` (the base class saves ``config()`` as extra state and refuses another one). fastnoise/nn/nenni.py holds the forward.
"""
from __future__ import annotations

from typing import Optional

import torch

from .. import _checks
from ..ops.mask_blend import keep_count

__all__ = ["MODES", "GRANULARITIES", "SCORES", "INJECTS", "DEFAULT_K", "default_k", "check_config", "selection",
           "NENNIState"]

MODES = ("dense", "distill", "noisy")
GRANULARITIES = ("position", "channel")
SCORES = ("abs", "signed")
INJECTS = ("non_essential", "essential")

#: the default projection size (see `default_k`)
DEFAULT_K = 64

_INT4_BUFFERS = ("approx_wq", "approx_w_scale", "approx_bq", "approx_b_scale")


def default_k(d: int) -> int:
    """The default projection size for fan-in `d`: ``min(d, 64)``.

    Chosen by measurement (docs/nenni.md, "Choosing k"): on the digits CNN the recall of the true
    top-10% after distillation reaches the 0.8 target only from k ~ 32 on, and keeps rising to k = 64
    (0.88-0.95 at the least-squares optimum); the approximation path costs time linearly in k, and
    at k = 64 it is 64/256 = 25% of the dense MACs of the ResNet-18 256->256 layer even before the
    ternary projection's 2/3 zeros and INT4 are counted (about 0.6% of its BitOPs).
    """
    return max(1, min(int(d), DEFAULT_K))


def _check_nm(nm: object) -> tuple[int, int]:
    if (not isinstance(nm, (tuple, list)) or len(nm) != 2
            or not all(isinstance(v, int) and not isinstance(v, bool) for v in nm)):
        raise ValueError(f"nm must be a pair of ints (N, M) with 1 <= N <= M, got {nm!r}")
    n, m = int(nm[0]), int(nm[1])
    if not (1 <= n <= m):
        raise ValueError(f"nm must be a pair of ints (N, M) with 1 <= N <= M, got {nm!r}")
    return n, m


def check_config(ratio, nm, k, d, granularity, score, inject, mode, seed):
    """Validated (ratio, nm, k, seed); errors name the setting and its valid values."""
    if ratio is not None and nm is not None:
        raise ValueError(f"give either ratio or nm, not both (got ratio={ratio!r}, nm={nm!r})")
    if ratio is None and nm is None:
        raise ValueError("one of ratio (in [0, 1)) or nm=(N, M) is required")
    if ratio is not None:
        ratio = _checks.number("ratio", ratio, lo=0.0, hi=1.0, hi_open=True)
    if nm is not None:
        nm = _check_nm(nm)
    if k is None:
        k = default_k(d)
    k = _checks.integer("k", k, lo=1)
    _checks.choice("granularity", granularity, GRANULARITIES)
    _checks.choice("score", score, SCORES)
    _checks.choice("inject", inject, INJECTS)
    _checks.choice("mode", mode, MODES)
    seed = _checks.integer("seed", seed, lo=0, hi=_checks.MAX_SEED)
    return ratio, nm, k, seed


def selection(ratio: Optional[float], nm: Optional[tuple], inject: str, features: int) -> tuple[int, dict, bool]:
    """(kept, select, invert) for one decision row of `features` neurons.

    kept: how many neurons get the exact product. select: the ``ratio=`` / ``nm=`` argument of
    `fastnoise.ops.mask_select` / `mask_blend`. invert: the mask of the exact neurons is the complement of
    the selected one. ``inject="non_essential"`` (the seed): the selection keeps the top ``ceil((1 - r) F)``
    scores (or N of every M) exact. ``"essential"`` (the seed's §4.5 ablation): the same amount of noise
    goes into the highest-scoring neurons instead, so the selection takes the top ``ceil(r F)`` (or M - N
    of every M) and the exact neurons are the others.
    """
    if nm is not None:
        n, m = nm
        kept = features // m * n  # "essential" injects into the top M - N instead: N kept as well
        if inject == "essential":
            return kept, dict(nm=(m - n, m)), True
        return kept, dict(nm=(n, m)), False
    if inject == "essential":
        if ratio <= 0:
            return features, {}, True  # no noise at all: every neuron exact
        inv = round(1.0 - ratio, 12)
        return features - keep_count(inv, features), dict(ratio=inv), True
    return keep_count(ratio, features), dict(ratio=ratio), False


class NENNIState:
    """Mixin of the NENNI layers: their state-dict rules on top of `NoiseModule`'s one config mechanism.

    The configuration check itself is the base class's (`fastnoise.nn.NoiseModule.set_extra_state`:
    ``self.config()`` saved as ``{"config": ...}`` extra state, a different or missing one refused with a
    ValueError naming the keys); this mixin only adds ``"quantized"`` to the extra state and keeps the INT4
    buffers consistent with it on load. Needs ``self.config()`` and the INT4 buffers of
    `fastnoise.nn.NENNILayer`. The format is the one checkpoints of 77e2601 wrote
    (``{"config": {...}, "quantized": bool}``), so they load unchanged.
    """

    config_label = "NENNI"

    def get_extra_state(self) -> dict:
        return {**super().get_extra_state(), "quantized": self.quantized}

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys,
                              unexpected_keys, error_msgs):
        extra = prefix + "_extra_state"
        if extra in state_dict:  # the configuration first: nothing changes when it differs
            self.set_extra_state(state_dict[extra])
        state = state_dict.get(extra)
        if isinstance(state, dict) and state.get("quantized"):
            absent = [prefix + n for n in _INT4_BUFFERS if prefix + n not in state_dict]
            if absent:
                raise ValueError(f"{type(self).__name__} at {prefix[:-1] or '<root>'!r}: the state_dict says the layer "
                                 f"is quantized (INT4) but lacks {absent}")
            # a quantized checkpoint loads into an unquantized layer: make room for its INT4 buffers
            for name in _INT4_BUFFERS:
                if getattr(self, name) is None:
                    setattr(self, name, torch.empty_like(state_dict[prefix + name], device=self.approx_weight.device))
            self.approx_weight.requires_grad_(False)
            self.approx_bias.requires_grad_(False)
        elif isinstance(state, dict) and self.quantized:
            # an unquantized state_dict: the layer becomes what it describes (float W~, b~, trainable), never
            # a mix of its own old INT4 weights and the loaded float ones (also with strict=False)
            for name in _INT4_BUFFERS:
                setattr(self, name, None)
            self.approx_weight.requires_grad_(True)
            self.approx_bias.requires_grad_(True)
        # NoiseModule._load_from_state_dict: a missing configuration is refused there (naming the key)
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys,
                                      unexpected_keys, error_msgs)
