"""Networks for likelihood-ratio noise-injection training (NIT, seed 002): spiking (LIF) and ordinary.

Every network here is built of `fastnoise.nn.LRLinear` / `LRConv2d` (exact layer + per-neuron noise,
trainable sigma) and takes ``forward(x, replicas=1)``: each sample is run C = `replicas` times with
independent neuron noise (the LR estimator's replicas, seed §3.1), logits [B*C, classes] in
sample-major order (row b*C + c). The input is computed once per sample for all its replicas.

* `SpikingMLP` (``spiking_mlp``): encoder -> [LRLinear -> LIF] per hidden layer -> LRLinear -> LIF over
  T steps; the seed's MNIST network has one hidden layer (of 50 neurons in §4.2; 500 is the
  conventional 784-500-10 shape, the default here). Input size from the data set.
* `SpikingCNN` (``spiking_cnn``): two [LRConv2d 3x3 -> LIF -> 2x2 max pool (spikes stay binary)] stages,
  then LRLinear -> LIF.
* `LRMLP` (``lr_mlp``): an ordinary ANN of LRLinear layers with a smooth activation (seed Fig. 3).

Readout of the spiking networks (the loss needs logits): ``"membrane"`` (default): the last layer is a
non-spiking integrator, logits = ``logit_scale`` x its mean input current over the T steps (noise
included); ``"rate"``: ``logit_scale`` x the output spike rate; ``"last"``: ``logit_scale`` x the last
step's output spikes, the seed's literal X^(T, L) (§3.3). With spike readouts a silent output layer
(every logit 0, loss log(classes) for every replica) is a trap for the LR estimator: identical replica
losses give a zero estimate (docs/methods.md, measured). Spiking networks read raw [0, 1] pixels (rate coding uses them as
firing probabilities): `fastnoise.models.build` gives them an identity `Normalize`.
"""
from __future__ import annotations

from typing import Optional, Sequence, Union

import torch
import torch.nn.functional as F
from torch import nn

from .. import _checks
from ..nn.lr import LRConv2d, LRLinear
from ..nn.spiking import LIF, SpikeEncoder

__all__ = ["SpikingMLP", "SpikingCNN", "LRMLP", "READOUTS"]

READOUTS = ("membrane", "rate", "last")
ACTIVATIONS = {"tanh": torch.tanh, "sigmoid": torch.sigmoid, "relu": F.relu}


def _widths(name: str, v: Union[int, Sequence[int]]) -> tuple[int, ...]:
    t = (v,) if isinstance(v, int) else tuple(v)
    for w in t:
        _checks.integer(name, w, lo=1)
    return t


class _SpikingNet(nn.Module):
    supports_replicas = True
    pixel_input = True  # reads [0, 1] pixels (build() skips the normalization)

    def _common(self, steps: int, encoding: str, decay: float, threshold: float, surrogate: str,
                alpha: Optional[float], readout: str, logit_scale: float, seed: Optional[int]) -> None:
        self.steps = _checks.integer("steps", steps, lo=1)
        self.encoder = SpikeEncoder(encoding, self.steps, seed=seed)
        self.lif_kw = dict(decay=decay, threshold=threshold, surrogate=surrogate, alpha=alpha)
        LIF(**self.lif_kw)  # validates decay, threshold, surrogate before any layer is built
        self.readout = _checks.choice("readout", readout, READOUTS)
        self.logit_scale = _checks.number("logit_scale", logit_scale, lo=0.0, lo_open=True)

    def _seed(self, seed: Optional[int], k: int) -> Optional[int]:
        return None if seed is None else seed + 1 + k

    def _logits(self, current: torch.Tensor, lif: LIF) -> torch.Tensor:
        """Logits from the last layer's current [T, B*C, classes] (its LIF fires only for spike readouts)."""
        if self.readout == "membrane":
            return current.mean(0) * self.logit_scale
        spikes = lif(current)
        return (spikes.mean(0) if self.readout == "rate" else spikes[-1]) * self.logit_scale


class SpikingMLP(_SpikingNet):
    """Fully connected LIF network: ``in -> hidden... -> classes`` over `steps` time steps (see module docstring).

    decay k and threshold V_th of every LIF (Eq. 7), `surrogate` / `alpha` for STBP and BPDA,
    `sigma_init` of every layer's per-neuron noise (the seed's Algorithm 1: 1.0), `encoding` "direct" or
    "rate". `seed` fixes every noise stream (layer k: seed + 1 + k; encoder: seed).
    """

    def __init__(self, num_classes: int, in_channels: int, input_size: tuple[int, int],
                 hidden: Union[int, Sequence[int]] = 500, steps: int = 8, encoding: str = "direct",
                 decay: float = 0.5, threshold: float = 1.0, sigma_init: float = 1.0, surrogate: str = "atan",
                 alpha: Optional[float] = None, readout: str = "membrane", logit_scale: float = 1.0,
                 seed: Optional[int] = None) -> None:
        super().__init__()
        self._common(steps, encoding, decay, threshold, surrogate, alpha, readout, logit_scale, seed)
        widths = (in_channels * input_size[0] * input_size[1],) + _widths("hidden", hidden) + (int(num_classes),)
        self.fcs = nn.ModuleList(
            LRLinear(a, b, sigma_init=sigma_init, binary_input=(k > 0 or self.encoder.binary), seed=self._seed(seed, k))
            for k, (a, b) in enumerate(zip(widths[:-1], widths[1:])))
        self.lifs = nn.ModuleList(LIF(**self.lif_kw) for _ in self.fcs)

    def forward(self, x: torch.Tensor, replicas: int = 1) -> torch.Tensor:
        h = self.encoder(x.flatten(1))                                  # [S, B, in]
        last = len(self.fcs) - 1
        for k, (fc, lif) in enumerate(zip(self.fcs, self.lifs)):
            kw = dict(replicas=replicas, steps=self.steps) if k == 0 else {}
            if k == last:
                return self._logits(fc(h, **kw), lif)
            h = fc(h, lif=lif, **kw)                                     # spikes [T, B*C, width]
        raise AssertionError("unreachable")  # pragma: no cover


class SpikingCNN(_SpikingNet):
    """Convolutional LIF network: 2 x [LRConv2d 3x3 pad 1 -> LIF -> max pool 2] -> LRLinear -> LIF."""

    def __init__(self, num_classes: int, in_channels: int, input_size: tuple[int, int],
                 channels: Sequence[int] = (16, 32), steps: int = 8, encoding: str = "direct", decay: float = 0.5,
                 threshold: float = 1.0, sigma_init: float = 1.0, surrogate: str = "atan",
                 alpha: Optional[float] = None, readout: str = "membrane", logit_scale: float = 1.0,
                 seed: Optional[int] = None) -> None:
        super().__init__()
        self._common(steps, encoding, decay, threshold, surrogate, alpha, readout, logit_scale, seed)
        c = _widths("channels", channels)
        if len(c) != 2:
            raise ValueError(f"channels must have 2 entries (two conv stages), got {c}")
        h, w = input_size[0] // 4, input_size[1] // 4
        if h < 1 or w < 1:
            raise ValueError(f"input_size must be at least (4, 4) for spiking_cnn, got {tuple(input_size)}")
        self.convs = nn.ModuleList([
            LRConv2d(in_channels, c[0], 3, padding=1, sigma_init=sigma_init, binary_input=self.encoder.binary,
                     seed=self._seed(seed, 0)),
            LRConv2d(c[0], c[1], 3, padding=1, sigma_init=sigma_init, binary_input=True, seed=self._seed(seed, 1))])
        self.fc = LRLinear(c[1] * h * w, int(num_classes), sigma_init=sigma_init, binary_input=True,
                           seed=self._seed(seed, 2))
        self.lifs = nn.ModuleList(LIF(**self.lif_kw) for _ in range(3))

    def forward(self, x: torch.Tensor, replicas: int = 1) -> torch.Tensor:
        h = self.encoder(x)                                              # [S, B, C, H, W]
        for k, conv in enumerate(self.convs):
            kw = dict(replicas=replicas, steps=self.steps) if k == 0 else {}
            s = conv(h, lif=self.lifs[k], **kw)                           # spikes [T, B*C, c, H, W]
            T, R = s.shape[:2]
            h = F.max_pool2d(s.flatten(0, 1), 2).view(T, R, *s.shape[2:3], s.shape[3] // 2, s.shape[4] // 2)
        return self._logits(self.fc(h.flatten(2)), self.lifs[2])


class LRMLP(nn.Module):
    """Ordinary ANN of LR layers (seed Fig. 3): Flatten -> [LRLinear -> activation] x depth -> LRLinear."""

    supports_replicas = True

    def __init__(self, num_classes: int, in_channels: int, input_size: tuple[int, int], width: int = 256,
                 depth: int = 2, activation: str = "tanh", sigma_init: float = 1.0,
                 seed: Optional[int] = None) -> None:
        super().__init__()
        self.act = ACTIVATIONS[_checks.choice("activation", activation, tuple(ACTIVATIONS))]
        _checks.integer("depth", depth, lo=0)
        widths = [in_channels * input_size[0] * input_size[1]] + [_checks.integer("width", width, lo=1)] * depth
        widths.append(int(num_classes))
        self.fcs = nn.ModuleList(LRLinear(a, b, sigma_init=sigma_init, seed=None if seed is None else seed + k)
                                 for k, (a, b) in enumerate(zip(widths[:-1], widths[1:])))

    def forward(self, x: torch.Tensor, replicas: int = 1) -> torch.Tensor:
        h = x.flatten(1)
        for k, fc in enumerate(self.fcs):
            h = fc(h, replicas=replicas) if k == 0 else fc(h)
            if k < len(self.fcs) - 1:
                h = self.act(h)
        return h
