"""Noisy convolution / linear layers on the fused noise-conv op (`fastnoise.ops.noise_conv2d`, `noise_linear`):
the noise is drawn inside the op from the layer's own `fastnoise.rng.PhiloxStream` and regenerated in the
backward pass, never stored.

* `CTRWConv2d`   CTRW (seed 001): random weight ``x * (mu + sigma * delta)`` on the input, mu / sigma per
                 element of C x H x W (init 1), one delta shared by the batch
* `RSEConv2d`    RSE: ``x + sigma * delta`` on the input, per sample and element (fixed sigma)
* `PNIConv2d`, `PNILinear`  PNI: ``W + alpha * std(W) * eta`` (site "weight") or the activation variants
                 ``x + alpha * std(x) * delta`` ("input") / ``y + alpha * std(y) * eps`` ("output"); alpha
                 per layer / channel / element, init 0.25, std detached
* `CNIConv2d`, `CNILinear`  RSR's channel-wise noise injection (seed 004): ``W + alpha_c * eta``,
                 ``eta ~ N(0, var(W))``, alpha per output channel, no noise on pruned weights (`prune_`)
* `RPFConv2d`    RPF: a fixed subset of the filters (default 75%) replaced by fresh N(0, (1/k)^2) filters

Every layer is a `NoiseModule` (explicit noise mode "on" / "train" / "off": "off" is the mean model) and
implements `config()`. `from_conv` / `from_linear` build a layer that shares the original module's weight
and bias Parameters (no copy). Layers whose draw is shared by the batch (CTRW, PNI / CNI weight noise,
RPF) take ``resample="forward"`` (default: a fresh draw at every forward, shared by the batch: PNI, and
CTRW with ``eot=True``) or ``resample="manual"`` (the draw stays until `resample()` is called: CTRW's
``set_rands()`` and RPF's ``random_rp_matrix()``, the "attack with draw 1, update with draw 2" protocol
of their training loops). Per-sample draws (RSE, PNI activation noise) are fresh at every forward.
"""
from __future__ import annotations

import math
from typing import Optional, Sequence, Union

import torch
import torch.nn.functional as F

from .. import _checks
from ..ops.noise_conv import InputNoise, OutputNoise, WeightNoise, noise_conv2d, noise_linear, stream_numel
from ..ops.noise_mul import noise_mul
from ..rng import PhiloxStream
from ._mode import NoiseModule

__all__ = ["CTRWConv2d", "RSEConv2d", "PNIConv2d", "PNILinear", "CNIConv2d", "CNILinear", "RPFConv2d",
           "RESAMPLE_MODES", "PNI_SITES", "PNI_GRANULARITIES", "CTRW_SITES"]

RESAMPLE_MODES = ("forward", "manual")
#: where `CTRWConv2d` puts the random weight (seed 001 Table 4): the conv's input, output, both, the filters
CTRW_SITES = ("in", "out", "both", "filter")
PNI_SITES = ("weight", "input", "output")
PNI_GRANULARITIES = ("layer", "channel", "element")
_Pair = Union[int, Sequence[int]]


def _round4(n: int) -> int:
    return (int(n) + 3) // 4 * 4


def _conv_unsupported(conv: torch.nn.Module) -> Optional[str]:
    if not isinstance(conv, torch.nn.Conv2d):
        return f"conv must be a torch.nn.Conv2d, got {type(conv).__name__}"
    if conv.padding_mode != "zeros":
        return f"conv has padding_mode={conv.padding_mode!r} (only 'zeros' is supported)"
    if isinstance(conv.padding, str):
        return f"conv has padding={conv.padding!r} (give explicit integer padding)"
    return None


class _NoiseLayer(NoiseModule):
    """Shared machinery: the original weight / bias Parameters, the stream, the draw bookkeeping."""

    _method = "?"
    _shared_draw = True  # the layer's draw is shared by the batch (resample modes apply)

    def _init_stream(self, seed: Optional[int], resample: str) -> None:
        if seed is not None:
            _checks.integer("seed", seed, lo=0, hi=_checks.MAX_SEED)
        self.resample_mode = _checks.choice("resample", resample, RESAMPLE_MODES)
        if resample == "manual" and not self._shared_draw:
            raise ValueError(f"{type(self).__name__}: resample='manual' needs a batch-shared draw; this layer draws "
                             f"per sample (use resample='forward')")
        self.stream = PhiloxStream(seed)
        self.stream.to(self.weight.device)

    def _draw_state(self, x: torch.Tensor, numel: int) -> torch.Tensor:
        """The state of this forward's draw: the next one ("forward", or a per-sample draw), or the current
        one ("manual": fixed until `resample()`)."""
        if self.resample_mode == "forward" or not self._shared_draw:
            st = self.stream.next(numel)
        else:
            st = self.stream.state.clone()
        return st if st.device == x.device else st.to(x.device)

    def resample(self) -> None:
        """Draw the next batch-shared noise (``resample="manual"``: the draw the following forwards use)."""
        self.stream.next(self._draw_numel())

    def _draw_numel(self) -> int:  # stream elements of one batch-shared draw
        return _round4(self.weight.numel())

    def _base_config(self) -> dict:
        raise NotImplementedError


class _ConvLayer(_NoiseLayer):
    _linear = False

    def _setup_layer(self, conv: torch.nn.Conv2d) -> None:
        self._setup_conv(conv)

    def _setup_conv(self, conv: torch.nn.Conv2d) -> None:
        why = _conv_unsupported(conv)
        if why is not None:
            raise (TypeError if why.startswith("conv must be") else ValueError)(why)
        self.in_channels, self.out_channels = conv.in_channels, conv.out_channels
        self.kernel_size, self.stride = tuple(conv.kernel_size), tuple(conv.stride)
        self.padding, self.dilation, self.groups = tuple(conv.padding), tuple(conv.dilation), conv.groups
        self.weight = conv.weight  # the original Parameters, shared (not copied)
        self.bias = conv.bias

    def _conv_args(self) -> dict:
        return dict(stride=self.stride, padding=self.padding, dilation=self.dilation, groups=self.groups)

    def _base_config(self) -> dict:
        return {"method": self._method, "in_channels": self.in_channels, "out_channels": self.out_channels,
                "kernel_size": list(self.kernel_size), "stride": list(self.stride), "padding": list(self.padding),
                "dilation": list(self.dilation), "groups": self.groups, "bias": self.bias is not None,
                "resample": self.resample_mode}

    def _plain(self, x: torch.Tensor, weight: Optional[torch.Tensor] = None) -> torch.Tensor:
        return F.conv2d(x, self.weight if weight is None else weight, self.bias, **self._conv_args())

    @classmethod
    def _new(cls, conv: torch.nn.Conv2d, **kw):
        self = cls.__new__(cls)
        NoiseModule.__init__(self)
        self._setup(conv, **kw)
        return self

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}, "
                f"padding={self.padding}, dilation={self.dilation}, groups={self.groups}, bias={self.bias is not None}, "
                f"mode={self.noise_mode}")


def _make_conv(in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias, device, dtype):
    return torch.nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride, padding=padding, dilation=dilation,
                           groups=groups, bias=bias, device=device, dtype=dtype)


# ---- CTRW ---------------------------------------------------------------------------------------------

class CTRWConv2d(_ConvLayer):
    """CTRW (seed 001): a conv with the random weight ``W^r = mu + delta * sigma`` (Eq. 4) at one `site`:

    ======== ============================================ ==========================================
    site     y                                            mu, sigma (Parameters) / delta shape
    ======== ============================================ ==========================================
    "in"     ``conv2d(x * (mu + sigma * delta), W, b)``   (C, H, W): per element of the conv's input
    "out"    ``conv2d(x, W, b) * (mu + sigma * delta)``   (N, H', W'): per element of its output
    "both"   ``conv2d(x * W^r_in, W, b) * W^r_out``       both: mu / sigma (in) and mu_out / sigma_out
    "filter" ``conv2d(x, W * (mu + sigma * delta), b)``   W.shape: per weight element
    ======== ============================================ ==========================================

    "in" (default) is the seed's method and its best site (Table 4, "Position of CTRW": in-channels 83.69 /
    69.27 clean / PGD-20, out-channels 78.06 / 59.14, both 72.69 / 49.52, filters 68.11 / 55.34). The
    code implements only "in" (Xz-As/Constrained_Random_Adv model/first_rand_resnet_lower_bound.py:
    ``Mu_ = SD_ = torch.ones(w_shape)`` per element of the feature map, trained with the weights); the
    other sites follow its convention on their tensor: per element of the conv's output N x H' x W'
    (the code's shape for a later `pos`), per element of the filter bank. mu, sigma init 1.

    input_shape = (C, H, W) of the conv's input (sizes the in site; H', W' of the out site follow from it).
    delta: one draw shared by the whole batch (the code's ``rand_weight`` has batch size 1), fresh per
    forward (``resample="forward"``, the code's ``eot=True``) or fixed until `resample()` (``"manual"``, its
    ``set_rands()``); "both" draws the in and the out delta together (consecutive stream elements). The
    noise depends on sigma through |sigma| (the distribution is symmetric), so a trained sigma may change
    sign. Noise "off": the mean model (mu in place of W^r). `constrain_(A, B)` projects `sigma` onto
    ``sum(sigma) in [A, B]`` (Eq. 5, as `RandomWeight.constrain_`). Ops: "in" the fused
    `fastnoise.ops.noise_conv2d` (input site); "out" / "filter" `fastnoise.ops.noise_mul` drawing W^r
    (``ones(1, *shape) * (mu + sigma delta)``, one draw) times the conv's output / the filters.
    """

    _method = "ctrw"

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride: _Pair = 1, padding: _Pair = 0,
                 dilation: _Pair = 1, groups: int = 1, bias: bool = True, *, input_shape: Sequence[int],
                 mu_init: float = 1.0, sigma_init: float = 1.0, resample: str = "forward",
                 seed: Optional[int] = None, site: str = "in", device=None, dtype=None) -> None:
        super().__init__()
        conv = _make_conv(in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias, device, dtype)
        self._setup(conv, input_shape=input_shape, mu_init=mu_init, sigma_init=sigma_init, resample=resample, seed=seed,
                    site=site)

    @classmethod
    def from_conv(cls, conv: torch.nn.Conv2d, *, input_shape: Sequence[int], mu_init: float = 1.0,
                  sigma_init: float = 1.0, resample: str = "forward", seed: Optional[int] = None,
                  site: str = "in") -> "CTRWConv2d":
        """A CTRWConv2d sharing `conv`'s weight and bias; input_shape = (C, H, W) of the conv's input."""
        return cls._new(conv, input_shape=input_shape, mu_init=mu_init, sigma_init=sigma_init, resample=resample,
                        seed=seed, site=site)

    def _setup(self, conv, *, input_shape, mu_init, sigma_init, resample, seed, site="in") -> None:
        self.site = _checks.choice("site", site, CTRW_SITES)
        self._setup_conv(conv)
        shape = tuple(input_shape) if isinstance(input_shape, (tuple, list, torch.Size)) else None
        if shape is None or len(shape) != 3 or shape[0] != conv.in_channels:
            raise ValueError(f"input_shape must be (C={conv.in_channels}, H, W) of the conv's input, got {input_shape!r}")
        for s in shape:
            _checks.integer("input_shape", s, lo=1)
        mu_init = _checks.number("mu_init", mu_init)
        sigma_init = _checks.number("sigma_init", sigma_init, lo=0.0)
        w = conv.weight
        self.input_shape = shape
        k = tuple(w.shape[2:])
        out = (w.shape[0],) + tuple((shape[1 + i] + 2 * self.padding[i] - self.dilation[i] * (k[i] - 1) - 1)
                                    // self.stride[i] + 1 for i in range(2))
        if min(out) < 1:
            raise ValueError(f"input_shape {list(shape)} is too small for the conv (output {list(out)})")
        self.output_shape = tuple(int(v) for v in out)
        main = {"in": shape, "both": shape, "out": self.output_shape, "filter": tuple(w.shape)}[self.site]
        full = lambda sh, v: torch.nn.Parameter(torch.full(sh, v, device=w.device, dtype=w.dtype))  # noqa: E731
        self.mu, self.sigma = full(main, mu_init), full(main, sigma_init)
        if self.site == "both":
            self.mu_out, self.sigma_out = full(self.output_shape, mu_init), full(self.output_shape, sigma_init)
        self._init_stream(seed, resample)

    def _draw_numel(self) -> int:
        n = _round4(self.sigma.numel())
        return n + _round4(self.sigma_out.numel()) if self.site == "both" else n

    def config(self) -> dict:
        return {**self._base_config(), "input_shape": list(self.input_shape), "site": self.site}

    @staticmethod
    def _random_weight(mu: torch.Tensor, sigma: torch.Tensor, state: torch.Tensor) -> torch.Tensor:
        """``W^r = mu + |sigma| * delta`` of shape [1, *mu.shape], one draw (stream from `state`), by noise_mul."""
        ones = torch.ones((1,) + tuple(mu.shape), dtype=mu.dtype, device=mu.device)
        return noise_mul(ones, mu, sigma.abs().to(mu.dtype), state=state)

    def _check_out(self, y: torch.Tensor) -> torch.Tensor:
        if tuple(y.shape[1:]) != self.output_shape:
            raise ValueError(f"CTRWConv2d site {self.site!r}: the conv's output is {list(y.shape[1:])}, the random "
                             f"weight was sized for {list(self.output_shape)} (input_shape {list(self.input_shape)}); "
                             f"got an input of shape {list(y.shape)}")
        return y

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mu = self.mu.to(x.dtype)
        site = self.site
        if not self.noise_active:
            if site == "filter":
                return self._plain(x, self.weight * mu)
            y = self._plain(x * mu if site in ("in", "both") else x)
            if site == "in":
                return y
            return self._check_out(y) * (mu if site == "out" else self.mu_out.to(x.dtype))
        state = self._draw_state(x, self._draw_numel())
        if site == "filter":
            wd = self.weight.dtype
            w = noise_mul(self.weight.unsqueeze(0), self.mu.to(wd), self.sigma.abs().to(wd), state=state)[0]  # W * W^r
            return self._plain(x, w)
        if site == "out":
            return self._check_out(self._plain(x)) * self._random_weight(mu, self.sigma.to(x.dtype), state)
        y = noise_conv2d(x, self.weight, self.bias, **self._conv_args(),
                         input_noise=InputNoise.ctrw(mu, self.sigma.abs().to(x.dtype)), state=state)
        if site == "in":
            return y
        st_out = state.clone()
        st_out[1] += _round4(self.sigma.numel())  # the out delta: the stream elements after the in delta
        return self._check_out(y) * self._random_weight(self.mu_out.to(x.dtype), self.sigma_out.to(x.dtype), st_out)

    @torch.no_grad()
    def constrain_(self, lower: float, upper: float) -> "CTRWConv2d":
        """Project `sigma` onto ``{sigma >= 0, sum(sigma) in [lower, upper]}`` (seed 001 Eq. 5); the
        projection of `fastnoise.nn.RandomWeight.constrain_`. Site "both" has two random weights and no
        single sum: not defined there (ValueError)."""
        if self.site == "both":
            raise ValueError("CTRWConv2d site 'both' has two random weights: constrain_ (one sum(sigma) in "
                             "[A, B]) is defined for sites 'in', 'out', 'filter'")
        from .noise import RandomWeight
        RandomWeight.constrain_(self, lower, upper)
        return self


# ---- RSE ----------------------------------------------------------------------------------------------

class RSEConv2d(_ConvLayer):
    """RSE's noise layer fused with the conv it precedes: ``y = conv2d(x + sigma * delta, W, b)``, delta fresh
    per sample and element at every forward (xuanqing94/RobustNet branch dev, models/layer.py ``Noise``:
    ``x + buffer.normal_(0, std)`` before every conv, on in train and eval; levels init 0.2 on the first
    conv, 0.1 inner, BayesianDefense/train_rse.sh). sigma is a fixed float. Noise "off": the plain conv.
    """

    _method = "rse"
    _shared_draw = False

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride: _Pair = 1, padding: _Pair = 0,
                 dilation: _Pair = 1, groups: int = 1, bias: bool = True, *, sigma: float = 0.1,
                 seed: Optional[int] = None, device=None, dtype=None) -> None:
        super().__init__()
        conv = _make_conv(in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias, device, dtype)
        self._setup(conv, sigma=sigma, seed=seed)

    @classmethod
    def from_conv(cls, conv: torch.nn.Conv2d, *, sigma: float = 0.1, seed: Optional[int] = None) -> "RSEConv2d":
        """An RSEConv2d sharing `conv`'s weight and bias."""
        return cls._new(conv, sigma=sigma, seed=seed)

    def _setup(self, conv, *, sigma, seed) -> None:
        self._setup_conv(conv)
        self.sigma = _checks.number("sigma", sigma, lo=0.0)
        self._init_stream(seed, "forward")

    def config(self) -> dict:
        return {**self._base_config(), "sigma": self.sigma}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.noise_active or self.sigma == 0.0:
            return self._plain(x)
        site = InputNoise.rse(self.sigma)
        n = stream_numel(x.shape, self.weight.shape, **self._conv_args_no_groups(), input_noise=site)
        return noise_conv2d(x, self.weight, self.bias, **self._conv_args(), input_noise=site,
                            state=self._draw_state(x, n))

    def _conv_args_no_groups(self) -> dict:
        return dict(stride=self.stride, padding=self.padding, dilation=self.dilation)


# ---- PNI ----------------------------------------------------------------------------------------------

def _pni_alpha_shape(site: str, granularity: str, weight_shape: tuple, in_features: int, out_features: int,
                     linear: bool) -> tuple:
    if granularity == "layer":
        return (1,)
    if granularity == "element":
        if site != "weight":
            raise ValueError(f"granularity 'element' is supported for site 'weight' only (PNI's element-wise "
                             f"alpha has the weight's shape), got site {site!r}")
        return tuple(weight_shape)
    if site == "weight":  # PNI: ones(C_out).view(-1, 1, 1, 1) (conv) / view(-1, 1) (linear)
        return (out_features,) + (1,) * (len(weight_shape) - 1)
    n = in_features if site == "input" else out_features
    return (n,) if linear else (n, 1, 1)


class _PNIMixin:
    _method = "pni"

    def _setup(self, layer, *, site, granularity, alpha_init, resample, seed) -> None:
        """Shared by PNIConv2d / PNILinear: the layer (conv or linear, `_setup_layer`), alpha, the stream."""
        self._setup_layer(layer)
        self._init_pni(site, granularity, alpha_init)
        self._init_stream(seed, resample)

    def config(self) -> dict:
        return {**self._base_config(), "site": self.site, "granularity": self.granularity}

    def _init_pni(self, site: str, granularity: str, alpha_init: float) -> None:
        linear = self._linear
        self.site = _checks.choice("site", site, PNI_SITES)
        self.granularity = _checks.choice("granularity", granularity, PNI_GRANULARITIES)
        alpha_init = _checks.number("alpha_init", alpha_init, lo=0.0)
        n_in = self.in_features if linear else self.in_channels
        n_out = self.out_features if linear else self.out_channels
        shape = _pni_alpha_shape(self.site, self.granularity, tuple(self.weight.shape), n_in, n_out, linear)
        w = self.weight
        self.alpha = torch.nn.Parameter(torch.full(shape, alpha_init, device=w.device, dtype=w.dtype))
        self._shared_draw = self.site == "weight"

    def _pni_sites(self, x: torch.Tensor) -> dict:
        a = self.alpha.abs().to(x.dtype)  # the noise is symmetric: only |alpha| matters
        if self.site == "weight":
            return dict(weight_noise=WeightNoise.pni(a))
        if self.site == "input":
            return dict(input_noise=InputNoise.pni(a))
        return dict(output_noise=OutputNoise.pni(a))


class PNIConv2d(_PNIMixin, _ConvLayer):
    """PNI (He et al., CVPR 2019) on a conv. site "weight" (PNI-W): ``W' = W + alpha * eta``,
    ``eta ~ N(0, std(W)^2)`` with ``std = weight.std().item()`` (whole tensor, detached), one draw per
    forward shared by the batch, in train and eval; alpha per layer ``[1]``, output channel
    ``[N, 1, 1, 1]`` (default) or element, init 0.25 (elliothe/CVPR_2019_PNI code/models/noise_layer.py
    ``noise_Conv2d``). Activation variants (only .pyc remain of the code): "input" adds
    ``alpha * std(x) * N(0, 1)`` to the conv's input, "output" adds ``alpha * std(y) * N(0, 1)`` to its output,
    per sample (alpha per layer or channel). The noise depends on |alpha|. Noise "off": the plain conv.
    PNI excludes alpha from weight decay (code/main.py): the recipe's job.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride: _Pair = 1, padding: _Pair = 0,
                 dilation: _Pair = 1, groups: int = 1, bias: bool = True, *, site: str = "weight",
                 granularity: str = "channel", alpha_init: float = 0.25, resample: str = "forward",
                 seed: Optional[int] = None, device=None, dtype=None) -> None:
        super().__init__()
        conv = _make_conv(in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias, device, dtype)
        self._setup(conv, site=site, granularity=granularity, alpha_init=alpha_init, resample=resample, seed=seed)

    @classmethod
    def from_conv(cls, conv: torch.nn.Conv2d, *, site: str = "weight", granularity: str = "channel",
                  alpha_init: float = 0.25, resample: str = "forward", seed: Optional[int] = None) -> "PNIConv2d":
        """A PNIConv2d sharing `conv`'s weight and bias."""
        return cls._new(conv, site=site, granularity=granularity, alpha_init=alpha_init, resample=resample, seed=seed)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.noise_active:
            return self._plain(x)
        sites = self._pni_sites(x)
        n = stream_numel(x.shape, self.weight.shape, stride=self.stride, padding=self.padding, dilation=self.dilation,
                         **sites)
        return noise_conv2d(x, self.weight, self.bias, **self._conv_args(), **sites, state=self._draw_state(x, n))


class _LinearLayer(_NoiseLayer):
    _linear = True

    def _setup_layer(self, linear: torch.nn.Linear) -> None:
        self._setup_linear(linear)

    def _setup_linear(self, linear: torch.nn.Linear) -> None:
        if not isinstance(linear, torch.nn.Linear):
            raise TypeError(f"linear must be a torch.nn.Linear, got {type(linear).__name__}")
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.weight = linear.weight
        self.bias = linear.bias

    def _base_config(self) -> dict:
        return {"method": self._method, "in_features": self.in_features, "out_features": self.out_features,
                "bias": self.bias is not None, "resample": self.resample_mode}

    @classmethod
    def _new(cls, linear: torch.nn.Linear, **kw):
        self = cls.__new__(cls)
        NoiseModule.__init__(self)
        self._setup(linear, **kw)
        return self

    def _rows(self, x: torch.Tensor) -> int:
        return x.numel() // max(x.shape[-1], 1) if x.dim() else 1

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}, "
                f"mode={self.noise_mode}")


class PNILinear(_PNIMixin, _LinearLayer):
    """PNI on a linear layer (PNI puts it on the final classifier): as `PNIConv2d`; alpha per layer,
    output feature ``[N, 1]`` (default; the code's ``ones(out_features).view(-1, 1) * 0.25``) or element
    (site "weight"), per layer or feature for the activation sites. Source: elliothe/CVPR_2019_PNI
    code/models/noise_layer.py ``noise_Linear``."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True, *, site: str = "weight",
                 granularity: str = "channel", alpha_init: float = 0.25, resample: str = "forward",
                 seed: Optional[int] = None, device=None, dtype=None) -> None:
        super().__init__()
        linear = torch.nn.Linear(in_features, out_features, bias=bias, device=device, dtype=dtype)
        self._setup(linear, site=site, granularity=granularity, alpha_init=alpha_init, resample=resample, seed=seed)

    @classmethod
    def from_linear(cls, linear: torch.nn.Linear, *, site: str = "weight", granularity: str = "channel",
                    alpha_init: float = 0.25, resample: str = "forward", seed: Optional[int] = None) -> "PNILinear":
        """A PNILinear sharing `linear`'s weight and bias."""
        return cls._new(linear, site=site, granularity=granularity, alpha_init=alpha_init, resample=resample, seed=seed)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.noise_active:
            return F.linear(x, self.weight, self.bias)
        sites = self._pni_sites(x)
        n = stream_numel((self._rows(x), self.in_features, 1, 1), (self.out_features, self.in_features, 1, 1), **sites)
        return noise_linear(x, self.weight, self.bias, **sites, state=self._draw_state(x, n))


# ---- CNI (RSR) -----------------------------------------------------------------------------------------

class _CNIMixin:
    _method = "cni"

    def _setup(self, layer, *, alpha_init, resample, seed) -> None:
        """Shared by CNIConv2d / CNILinear: the layer (conv or linear, `_setup_layer`), alpha, the stream."""
        self._setup_layer(layer)
        self._init_cni(alpha_init)
        self._init_stream(seed, resample)

    def config(self) -> dict:
        return self._base_config()

    def _init_cni(self, alpha_init: float) -> None:
        alpha_init = _checks.number("alpha_init", alpha_init, lo=0.0)
        w = self.weight
        shape = (w.shape[0],) + (1,) * (w.dim() - 1)  # alpha in R^{q x 1 x 1 x 1} (seed 004 §3.2)
        self.alpha = torch.nn.Parameter(torch.full(shape, alpha_init, device=w.device, dtype=w.dtype))
        self.register_buffer("keep", None)

    def _cni_site(self, x: torch.Tensor) -> WeightNoise:
        return WeightNoise.cni(self.alpha.abs().to(x.dtype), keep=self.keep)

    @torch.no_grad()
    def set_keep_(self, keep: Optional[torch.Tensor]) -> "_CNIMixin":
        """Noise only where `keep` (bool, the weight's shape) is True; None: everywhere."""
        if keep is not None:
            keep = _checks.tensor("keep", keep)
            if keep.dtype != torch.bool or tuple(keep.shape) != tuple(self.weight.shape):
                raise ValueError(f"keep must be a bool tensor of the weight's shape {tuple(self.weight.shape)}, got "
                                 f"{keep.dtype} of shape {tuple(keep.shape)}")
            keep = keep.to(self.weight.device).clone()
        self.keep = keep
        return self

    @torch.no_grad()
    def prune_(self, gamma: float) -> "_CNIMixin":
        """Seed 004 §3.4, Eqs. 7-8: weights with ``|w| < gamma`` set to 0, and no noise on them from now on
        (``keep = W != 0``)."""
        gamma = _checks.number("gamma", gamma, lo=0.0)
        self.weight.masked_fill_(self.weight.abs() < gamma, 0.0)
        return self.set_keep_(self.weight != 0)

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                              error_msgs):
        key = prefix + "keep"
        if key in state_dict and self.keep is None:  # a pruned checkpoint: make room for its mask
            self.keep = torch.empty_like(state_dict[key], device=self.weight.device)
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                                      error_msgs)


class CNIConv2d(_CNIMixin, _ConvLayer):
    """RSR's channel-wise noise injection (seed 004 §3.2): ``W~ = W + alpha * eta``, ``eta ~ N(0, sigma^2)``
    with sigma^2 the variance of W computed at run time (over the whole weight tensor, as PNI, which the
    seed follows; detached), alpha ``[N, 1, 1, 1]`` trainable (init 0.25, PNI's channel-wise default: no
    public RSR code). One draw per forward, shared by the batch. After pruning (`prune_`, §3.4) the noise
    is removed from the zero weights (the `keep` buffer). Noise "off": the plain conv.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride: _Pair = 1, padding: _Pair = 0,
                 dilation: _Pair = 1, groups: int = 1, bias: bool = True, *, alpha_init: float = 0.25,
                 resample: str = "forward", seed: Optional[int] = None, device=None, dtype=None) -> None:
        super().__init__()
        conv = _make_conv(in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias, device, dtype)
        self._setup(conv, alpha_init=alpha_init, resample=resample, seed=seed)

    @classmethod
    def from_conv(cls, conv: torch.nn.Conv2d, *, alpha_init: float = 0.25, resample: str = "forward",
                  seed: Optional[int] = None) -> "CNIConv2d":
        """A CNIConv2d sharing `conv`'s weight and bias."""
        return cls._new(conv, alpha_init=alpha_init, resample=resample, seed=seed)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.noise_active:
            return self._plain(x)
        return noise_conv2d(x, self.weight, self.bias, **self._conv_args(), weight_noise=self._cni_site(x),
                            state=self._draw_state(x, self._draw_numel()))


class CNILinear(_CNIMixin, _LinearLayer):
    """`CNIConv2d` for a linear layer (seed 004 prunes fully connected layers too, Eq. 7): alpha ``[N, 1]``."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True, *, alpha_init: float = 0.25,
                 resample: str = "forward", seed: Optional[int] = None, device=None, dtype=None) -> None:
        super().__init__()
        linear = torch.nn.Linear(in_features, out_features, bias=bias, device=device, dtype=dtype)
        self._setup(linear, alpha_init=alpha_init, resample=resample, seed=seed)

    @classmethod
    def from_linear(cls, linear: torch.nn.Linear, *, alpha_init: float = 0.25, resample: str = "forward",
                    seed: Optional[int] = None) -> "CNILinear":
        """A CNILinear sharing `linear`'s weight and bias."""
        return cls._new(linear, alpha_init=alpha_init, resample=resample, seed=seed)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.noise_active:
            return F.linear(x, self.weight, self.bias)
        return noise_linear(x, self.weight, self.bias, weight_noise=self._cni_site(x),
                            state=self._draw_state(x, self._draw_numel()))


# ---- RPF ----------------------------------------------------------------------------------------------

class RPFConv2d(_ConvLayer):
    """Random projection filters (RPF, Dong & Xu, CVPR 2023): the last ``round(fraction * out_channels)``
    filters of the conv are replaced by random filters ``N(0, (1/kernel_size)^2)`` at every draw; the rest
    stay learned. Source: UniSerj/Random-Projection-Filters model/resnet.py: the conv is split into a
    learned ``Conv2d(in, out - rp_out_channel)`` and a random ``nn.Conv2d(in, rp_out_channel)`` concatenated
    after it (``rp_out_channel`` 48 of 64: fraction 0.75), ``random_rp_matrix`` draws
    ``torch.normal(0, 1/kernel_size)`` (kernel_size = the weight's last dimension), ``requires_grad = False``
    (here: the replaced rows of the shared weight get zero gradient). One draw per batch (train.py calls
    ``random_rp_matrix()`` per batch, before the attack and again before the update): ``resample="manual"``
    plus `resample()` reproduces that; the default draws per forward. standardize: the learned filters are
    weight-standardized and divided by kernel_size as the code's ``model/layer.py`` Conv2d
    (``W / (std_per_filter + 1e-5) / kernel_size``); off by default so `from_conv` keeps the conv's function.
    groups = 1 only (the code's convs are dense). Noise "off": the random filters are 0 (their mean).
    """

    _method = "rpf"

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride: _Pair = 1, padding: _Pair = 0,
                 dilation: _Pair = 1, groups: int = 1, bias: bool = True, *, fraction: float = 0.75,
                 standardize: bool = False, resample: str = "forward", seed: Optional[int] = None, device=None,
                 dtype=None) -> None:
        super().__init__()
        conv = _make_conv(in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias, device, dtype)
        self._setup(conv, fraction=fraction, standardize=standardize, resample=resample, seed=seed)

    @classmethod
    def from_conv(cls, conv: torch.nn.Conv2d, *, fraction: float = 0.75, standardize: bool = False,
                  resample: str = "forward", seed: Optional[int] = None) -> "RPFConv2d":
        """An RPFConv2d sharing `conv`'s weight and bias (the replaced filters' rows become unused)."""
        return cls._new(conv, fraction=fraction, standardize=standardize, resample=resample, seed=seed)

    def _setup(self, conv, *, fraction, standardize, resample, seed) -> None:
        self._setup_conv(conv)
        if conv.groups != 1:
            raise ValueError(f"RPFConv2d supports groups=1 only (the RPF code's convs are dense), got groups={conv.groups}")
        self.fraction = _checks.number("fraction", fraction, lo=0.0, hi=1.0)
        if not isinstance(standardize, bool):
            raise TypeError(f"standardize must be a bool, got {type(standardize).__name__}")
        self.standardize = standardize
        n = conv.out_channels
        self.n_random = int(round(self.fraction * n))
        self.register_buffer("replace", torch.arange(n, device=conv.weight.device) >= n - self.n_random)
        self._init_stream(seed, resample)

    def config(self) -> dict:
        return {**self._base_config(), "fraction": self.fraction, "standardize": self.standardize}

    def _learned_weight(self) -> torch.Tensor:
        w = self.weight
        if not self.standardize:
            return w
        std = w.reshape(w.shape[0], -1).std(dim=1).reshape(-1, 1, 1, 1) + 1e-5
        return w / std / self.kernel_size[-1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self._learned_weight()
        if not self.noise_active:
            return self._plain(x, w * (~self.replace).reshape(-1, 1, 1, 1).to(w.dtype))
        site = WeightNoise.rpf(self.replace, self.kernel_size[-1])
        return noise_conv2d(x, w, self.bias, **self._conv_args(), weight_noise=site,
                            state=self._draw_state(x, self._draw_numel()))


#: The layers of this family: an exact conv / linear product of the original weights plus noise at one or
#: more sites (fastnoise.bitops counts their products as dense ones).
NOISY_PRODUCT_LAYERS = (_ConvLayer, _LinearLayer)
