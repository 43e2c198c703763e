"""lr_grad: the likelihood-ratio (LR) gradient estimator of noise-injection training (NIT, seed 002).

A layer adds per-neuron Gaussian noise to its pre-activation, ``v = theta x + sigma * eps`` (seed Eq. 1;
the forward uses `fastnoise.ops.noise_add`, whose layout this op shares). The LR method estimates the
gradient of the expected loss from forward passes alone (Eq. 1; Eq. 8 sums over the T time steps of a
spiking network, which are more rows here):

    G_theta[n, k] = sum_r L_r * eps[r, n] * x[r, k] / sigma[n]        (the bias: x[r, 0] = 1)
    G_sigma[n]    = sum_r L_r * (eps[r, n]^2 - 1) / sigma[n]

and NIT-S (Eq. 3) replaces ``Z_theta = x eps / sigma`` by its sign: ``sum_r L_r sign(eps[r, n]) sgn(x[r, k])``
(G_sigma unchanged). `eps` is never stored: every backend regenerates it from the forward's Philox
state inside the GEMM, bit-identical to what the forward added (same backend).

Row layout (every backend): noise row r in [0, rows) has ``eps[r, n] = normal(offset + r * N + n)``, the
element index of a row-major [rows, N] pre-activation in `noise_add`; it uses the loss weight
``losses[r % M]`` and the input row ``(r // repeat) % Rx`` of x [Rx, K]. A network with B samples, C
replicas and T time steps orders its rows ``r = (t * B + b) * C + c`` (time-major, replica-minor), so:
``M = B*C`` losses; an input shared by the replicas (the first layer, x^(0)(n, c) = x^(0)(n)) is stored
once with ``repeat = C`` (and once for all T steps with direct-current encoding: Rx = B); a hidden
layer's spike input has one row per noise row (repeat 1, Rx = rows). Rows that share an input row are
reduced first (``sum_c L eps``), then multiplied with that row: the GEMM has Rx rows, not `rows`.

Binary spike inputs are stored packed (`pack_spikes`: 1 bit per spike, 32x less than float32) and read
as bits by the kernels.
"""
from __future__ import annotations

from typing import NamedTuple, Optional, Union

import torch

from .. import _backend, _checks
from ._dispatch import kernel

__all__ = ["lr_grad", "lr_grad_conv2d", "lif_noise", "LRGrads", "SpikeBits", "pack_spikes", "unpack_spikes", "loss_weights", "BASELINES"]

BASELINES = ("none", "mean", "clean")


class SpikeBits(NamedTuple):
    """A binary [R, features] matrix packed in int32 words [R, ceil(features / 32)]: bit j of word w is
    element 32 w + j. `nbytes` is what it costs to keep (float32 would be 32x more)."""
    words: torch.Tensor
    features: int

    @property
    def shape(self) -> tuple[int, int]:
        return int(self.words.shape[0]), int(self.features)

    @property
    def nbytes(self) -> int:
        return self.words.numel() * self.words.element_size()


class LRGrads(NamedTuple):
    """The estimates: weight [N, K], bias [N], sigma [N] (float32; float64 for float64 inputs)."""
    weight: torch.Tensor
    bias: torch.Tensor
    sigma: torch.Tensor


# ---- packing -------------------------------------------------------------------------------------

@torch.library.custom_op("fastnoise::lr_pack_bits", mutates_args=())
def _pack_bits(x: torch.Tensor, backend: str) -> torch.Tensor:
    return kernel("lr_grad", "lr_pack_bits", backend)(x)


@_pack_bits.register_fake
def _(x, backend):
    return x.new_empty((x.shape[0], (x.shape[1] + 31) // 32), dtype=torch.int32)


def pack_spikes(x: torch.Tensor, *, check: bool = True, backend: Optional[str] = None) -> SpikeBits:
    """Pack a binary float tensor [..., K] (spikes: every value 0 or 1) into `SpikeBits` of [prod(...), K].

    check=True verifies that every value is 0 or 1 (ValueError otherwise; skipped under torch.compile).
    The `cpu` backend packs in C++; the other backends use the eager torch code of the reference (the
    packing is a small memory-bound pass next to the forward).
    """
    x = _checks.floating("x", x)
    if x.dim() < 1:
        raise ValueError("x must have at least 1 dim (features last), got a 0-d tensor")
    K = int(x.shape[-1])
    x2 = x.reshape(-1, K)
    b = _backend.resolve(x.device, backend)  # triton / cuda: torch ops (dispatch table TORCH)
    if b == "cpu":
        check = False  # the C++ kernel checks while it packs (ValueError)
    if check and not _checks._tracing() and x2.numel() and bool(((x2 != 0) & (x2 != 1)).any()):
        raise ValueError("x must be binary (every value 0 or 1) to be packed as spikes")
    return SpikeBits(_pack_bits(x2.contiguous(), b), K)


def unpack_spikes(bits: SpikeBits, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """The [R, features] 0 / 1 tensor of `bits` (the inverse of `pack_spikes`)."""
    from ..reference.lr_grad import unpack_bits
    return unpack_bits(bits.words, bits.features, dtype)


# ---- the estimator -------------------------------------------------------------------------------

@torch.library.custom_op("fastnoise::lr_grad", mutates_args=())
def _lr_grad(x: torch.Tensor, losses: torch.Tensor, sigma: torch.Tensor, state: torch.Tensor, rows: int,
             repeat: int, k: int, sign: bool, backend: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    return tuple(kernel("lr_grad", "lr_grad", backend)(x, losses, sigma, state, rows, repeat, k, sign))


@_lr_grad.register_fake
def _(x, losses, sigma, state, rows, repeat, k, sign, backend):
    N = sigma.shape[0]
    return (sigma.new_empty((N, k)), sigma.new_empty((N,)), sigma.new_empty((N,)))


def _state(state: object, device: torch.device) -> torch.Tensor:
    _checks.tensor("state", state)
    if state.dtype != torch.int64 or tuple(state.shape) != (2,):
        raise ValueError(f"state must be an int64 tensor of shape (2,) = [seed, offset] (the forward's noise "
                         f"state), got {state.dtype} of shape {tuple(state.shape)}")
    if state.device != device:
        raise ValueError(f"state must be on the device of x, {device}, got {state.device}")
    return state


def _positive(name: str, t: torch.Tensor) -> None:
    """Values finite and > 0 (skipped while tracing: data-dependent)."""
    if _checks._tracing() or t.numel() == 0:
        return
    lo, hi = (float(v) for v in torch.aminmax(t.detach()))
    if not (lo > 0 and hi < float("inf")):
        raise ValueError(f"{name} must be finite and > 0 everywhere, got min {lo}, max {hi}")


def lr_grad(x: Union[torch.Tensor, SpikeBits], losses: torch.Tensor, sigma: torch.Tensor, state: torch.Tensor, *,
            rows: Optional[int] = None, repeat: int = 1, sign: bool = False,
            backend: Optional[str] = None) -> LRGrads:
    """The LR gradient estimates of one noisy layer from its stored input, the loss weights and the noise state.

    Args:
      x: the layer's input [Rx, K] as stored by the forward: a floating tensor, or `SpikeBits` (packed
        binary spikes, read as bits by the kernel).
      losses: loss weights [M] (floating), ``M`` divides `rows`; noise row r uses ``losses[r % M]``. Pass
        the per-(sample, replica) losses times the estimator's scale, after the baseline of your choice
        (`loss_weights`).
      sigma: the noise scale per output neuron [N], finite and > 0 (the forward used ``v + sigma * eps``).
      state: int64 [seed, offset], the noise state of the forward: ``eps[r, n] = normal(offset + r N + n)``.
      rows: noise rows (default ``Rx * repeat``); a multiple of ``Rx * repeat``.
      repeat: each input row serves `repeat` consecutive noise rows (replicas sharing one input).
      sign: NIT-S (Eq. 3) instead of NIT (Eq. 1).

    Returns `LRGrads` (weight [N, K], bias [N], sigma [N]) in float32 (float64 for float64 x): sums over the
    rows, not means. NIT: ``weight = sum_r L_r eps_r x_r^T / sigma``, ``bias = sum_r L_r eps_r / sigma``;
    NIT-S: ``weight = sum_r L_r sign(eps_r) sgn(x_r)^T``, ``bias = sum_r L_r sign(eps_r)``, where sign is the
    seed's (+1 at 0) and sgn(0) = 0 (an input of 0 has Z = 0: no direction; docs/methods.md); both:
    ``sigma = sum_r L_r (eps_r^2 - 1) / sigma``.

    >>> x = torch.randn(6, 4); sigma = torch.full((3,), 0.5); st = fastnoise.rng.make_state(7, 0)
    >>> v = fastnoise.ops.noise_add(x @ w.T, sigma, state=st)           # the forward (w: [3, 4])
    >>> g = fastnoise.ops.lr_grad(x, loss_per_row, sigma, st)           # g.weight [3, 4]
    """
    if isinstance(x, SpikeBits):
        words = _checks.tensor("x.words", x.words)
        if words.dtype != torch.int32 or words.dim() != 2:
            raise TypeError(f"x.words must be an int32 [R, ceil(K/32)] tensor, got {words.dtype} with {words.dim()} dims")
        k = _checks.integer("x.features", x.features, lo=0)
        if words.shape[1] != (k + 31) // 32:
            raise ValueError(f"x.words must have ceil(features / 32) = {(k + 31) // 32} columns, got {words.shape[1]}")
        xt, md = words, torch.float32
    else:
        xt = _checks.floating("x", x)
        if xt.dim() != 2:
            raise ValueError(f"x must be a 2-D [rows, features] tensor, got shape {tuple(xt.shape)}")
        k, md = int(xt.shape[1]), (torch.float64 if xt.dtype == torch.float64 else torch.float32)
    dev = xt.device
    losses = _checks.floating("losses", losses)
    sigma = _checks.floating("sigma", sigma)
    if losses.dim() != 1:
        raise ValueError(f"losses must be a 1-D tensor [M] of loss weights, got shape {tuple(losses.shape)}")
    if sigma.dim() != 1:
        raise ValueError(f"sigma must be a 1-D tensor [N] (one noise scale per neuron), got shape {tuple(sigma.shape)}")
    _checks.same_device("losses", losses, "x", xt)
    _checks.same_device("sigma", sigma, "x", xt)
    st = _state(state, dev)
    repeat = _checks.integer("repeat", repeat, lo=1)
    Rx = int(xt.shape[0])
    rows = Rx * repeat if rows is None else _checks.integer("rows", rows, lo=0)
    if Rx == 0 and rows:
        raise ValueError(f"x has no rows but rows={rows}: every noise row needs an input row")
    if Rx and rows % (Rx * repeat):
        raise ValueError(f"rows must be a multiple of x rows * repeat = {Rx} * {repeat}, got {rows}")
    M = losses.numel()
    if rows and (M == 0 or rows % M):
        raise ValueError(f"losses must have M entries with M dividing rows={rows} (row r uses losses[r % M]), "
                         f"got shape {tuple(losses.shape)}")
    if not isinstance(sign, bool):
        raise TypeError(f"sign must be a bool, got {type(sign).__name__}")
    _positive("sigma", sigma)
    if not _checks._tracing() and M and not bool(torch.isfinite(losses).all()):
        raise ValueError("losses must be finite")
    N = sigma.numel()
    seed, offset = (int(v) for v in st.tolist()) if not _checks._tracing() else (0, 0)
    if offset + rows * N > _checks.MAX_SEED:
        raise ValueError(f"state offset {offset} + rows * N = {rows * N} overflows the 63-bit stream")
    b = _backend.resolve(dev, backend)
    out = _lr_grad(xt.detach().contiguous(), losses.detach().to(md).contiguous(),
                   sigma.detach().to(md).contiguous(), st, rows, repeat, k, sign, b)
    return LRGrads(*out)


def loss_weights(losses: torch.Tensor, baseline: str = "none", *, clean: Optional[torch.Tensor] = None,
                 scale: float = 1.0) -> torch.Tensor:
    """Per-(sample, replica) loss weights [B*C] for `lr_grad` from the losses [B, C] of C replicas per sample.

    baseline (a variance reduction that keeps the estimator unbiased):
      * ``"none"``: ``L`` (the seed's estimator);
      * ``"mean"``: ``L - b`` with b the leave-one-out mean of the *other* replicas of the same sample,
        ``b_c = (sum_c' L_c' - L_c) / (C - 1)`` (= ``C / (C - 1) * (L - mean_c L)``); needs C >= 2;
      * ``"clean"``: ``L - clean`` with `clean` [B] the loss of a noise-free forward of each sample.
    Unbiased because b is independent of the noise of the replica it multiplies (other replicas'
    draws, or none) and every score has mean zero: ``E[b Z] = E[b] E[Z] = 0`` for Z = eps x / sigma,
    (eps^2 - 1) / sigma and sign(eps) (Eq. 1 / 3 / 8). Including the replica's own loss in b (the plain
    mean) would scale the expectation by (1 - 1/C).

    Returns ``scale * (L - b)`` flattened to [B*C] in sample-major order (row m = b*C + c).
    """
    losses = _checks.floating("losses", losses)
    if losses.dim() != 2:
        raise ValueError(f"losses must be [B, C] (samples x replicas), got shape {tuple(losses.shape)}")
    _checks.choice("baseline", baseline, BASELINES)
    scale = _checks.number("scale", scale)
    B, C = losses.shape
    L = losses.detach()
    if baseline == "mean":
        if C < 2:
            raise ValueError(f"baseline='mean' needs replicas >= 2 (a leave-one-out mean), got {C} replicas")
        w = (L - L.mean(dim=1, keepdim=True)) * (C / (C - 1))
    elif baseline == "clean":
        if clean is None:
            raise ValueError("baseline='clean' needs clean=[B] losses of a noise-free forward")
        clean = _checks.floating("clean", clean)
        if tuple(clean.shape) != (B,):
            raise ValueError(f"clean must have shape ({B},) (one loss per sample), got {tuple(clean.shape)}")
        w = L - clean.detach().to(L.dtype).unsqueeze(1)
    else:
        w = L
    return (w * scale).reshape(-1)


# ---- the forward: LIF neurons fed the noisy current, in one kernel ----------------------------------

@torch.library.custom_op("fastnoise::lif_noise", mutates_args=())
def _lif_noise(pre: torch.Tensor, sigma: torch.Tensor, state: torch.Tensor, steps: int, replicas: int, inner: int,
               decay: float, threshold: float, backend: str) -> torch.Tensor:
    return kernel("lr_grad", "lif_noise", backend)(pre, sigma, state, steps, replicas, inner, decay, threshold)


@_lif_noise.register_fake
def _(pre, sigma, state, steps, replicas, inner, decay, threshold, backend):
    return pre.new_empty((steps, pre.shape[1] * replicas, pre.shape[2]))


def lif_noise(pre: torch.Tensor, sigma: torch.Tensor, state: torch.Tensor, *, steps: int, replicas: int = 1,
              inner: int = 1, decay: float = 0.5, threshold: float = 1.0, backend: Optional[str] = None) -> torch.Tensor:
    """Spikes of LIF neurons (seed Eq. 7) fed the noisy current ``pre + sigma * eps``, for T = `steps` steps
    and C = `replicas` noise replicas of every sample, in one kernel (the noisy current is never formed).

    pre [S, B, F]: the noise-free current (S = 1: the same every step, direct-current input; S = T);
    sigma [F // inner] >= 0: feature j uses ``sigma[j // inner]`` (per neuron; per channel of a conv
    output flattened to F = N * H * W with inner = H * W); state: int64 [seed, offset]. Row ``b*C + c``
    of step t gets ``eps = normal(offset + ((t B + b) C + c) F + j)``, exactly `noise_add`'s layout on the
    [T*B*C, F] current, so `lr_grad` regenerates the same eps. LIF: ``u[t] = decay * u[t-1] * (1 - s[t-1])
    + v[t]``, ``s[t] = (u[t] > threshold)``, u[0] = s[0] = 0 (`fastnoise.nn.LIF`). Returns spikes [T, B*C, F]
    (0 / 1, pre's dtype). Not differentiable: the unfused `noise_add` + `LIF` path serves backprop.
    """
    pre = _checks.floating("pre", pre)
    if pre.dim() != 3:
        raise ValueError(f"pre must be a 3-D [S, B, F] current, got shape {tuple(pre.shape)}")
    sigma = _checks.floating("sigma", sigma)
    steps = _checks.integer("steps", steps, lo=1)
    replicas = _checks.integer("replicas", replicas, lo=1)
    inner = _checks.integer("inner", inner, lo=1)
    decay = _checks.number("decay", decay, lo=0.0, hi=1.0)
    threshold = _checks.number("threshold", threshold, lo=0.0, lo_open=True)
    if pre.shape[0] not in (1, steps):
        raise ValueError(f"pre must have 1 or steps={steps} time steps, got {pre.shape[0]}")
    if sigma.dim() != 1 or sigma.numel() * inner != pre.shape[2]:
        raise ValueError(f"sigma must be 1-D with sigma.numel() * inner = pre.shape[2] = {pre.shape[2]}, got "
                         f"{tuple(sigma.shape)} and inner={inner}")
    _checks.same_device("sigma", sigma, "pre", pre)
    from ._noise import _nonnegative
    _nonnegative("sigma", sigma)
    st = _state(state, pre.device)
    md = torch.float64 if pre.dtype == torch.float64 else torch.float32
    b = _backend.resolve(pre.device, backend)
    return _lif_noise(pre.detach().contiguous(), sigma.detach().to(md).contiguous(), st, steps, replicas, inner,
                      decay, threshold, b)


# ---- convolutions: regenerated noise x torch's conv weight gradient ------------------------------

def lr_grad_conv2d(x: Union[torch.Tensor, SpikeBits], losses: torch.Tensor, sigma: torch.Tensor, state: torch.Tensor,
                   *, in_shape: tuple, weight_shape: tuple, stride=1, padding=0, dilation=1,
                   rows: Optional[int] = None, repeat: int = 1, sign: bool = False, chunk_elements: int = 1 << 22,
                   backend: Optional[str] = None) -> LRGrads:
    """The LR estimates of a noisy Conv2d ``v = conv(x, W) + b + sigma[n] * eps`` (sigma per output channel).

    Noise row r is the [N, Ho, Wo] pre-activation of row r (the layout of `noise_add` on a
    [rows, N, Ho, Wo] tensor: ``eps[r, n, p] = normal(offset + (r N + n) Ho Wo + p)``); it uses
    ``losses[r % M]`` and input row ``(r // repeat) % Rx`` of x [Rx, *in_shape] (float, or `SpikeBits`
    of [Rx, prod(in_shape)]). A composite: for chunks of input rows, the noise of their noise rows is
    regenerated (`fastnoise.rng` stream of the same backend: bit-identical to the forward's) and reduced to
    ``E[q] = sum_r L_r f(eps_r)``, then ``G_weight += conv2d_weight(x_q, E_q)`` (torch.nn.grad) — no fused
    kernel. At most `chunk_elements` normals are alive at a time. Returns `LRGrads` (weight of
    `weight_shape`, bias [N], sigma [N]); math as in `lr_grad` (sums over rows and positions).
    """
    from ..rng import KIND_NORMAL
    from torch.nn.grad import conv2d_weight
    bits = isinstance(x, SpikeBits)
    xt = x.words if bits else _checks.floating("x", x)
    dev = xt.device
    in_shape = tuple(int(v) for v in in_shape)
    weight_shape = tuple(int(v) for v in weight_shape)
    if len(in_shape) != 3 or len(weight_shape) != 4 or weight_shape[1] != in_shape[0]:
        raise ValueError(f"in_shape must be (C, H, W) and weight_shape (N, C, kh, kw) with the same C, got "
                         f"{in_shape} and {weight_shape}")
    Rx = int(xt.shape[0])
    if bits and x.features != in_shape[0] * in_shape[1] * in_shape[2]:
        raise ValueError(f"x.features must be prod(in_shape) = {in_shape}, got {x.features}")
    if not bits and tuple(xt.shape[1:]) != in_shape:
        raise ValueError(f"x must have shape [rows, {in_shape}], got {tuple(xt.shape)}")
    losses = _checks.floating("losses", losses)
    sigma = _checks.floating("sigma", sigma)
    N = weight_shape[0]
    if sigma.dim() != 1 or sigma.numel() != N:
        raise ValueError(f"sigma must be a 1-D tensor of {N} entries (one per output channel), got {tuple(sigma.shape)}")
    if losses.dim() != 1:
        raise ValueError(f"losses must be a 1-D tensor [M] of loss weights, got shape {tuple(losses.shape)}")
    st = _state(state, dev)
    repeat = _checks.integer("repeat", repeat, lo=1)
    rows = Rx * repeat if rows is None else _checks.integer("rows", rows, lo=0)
    if Rx and rows % (Rx * repeat):
        raise ValueError(f"rows must be a multiple of x rows * repeat = {Rx} * {repeat}, got {rows}")
    M = losses.numel()
    if rows and (M == 0 or rows % M):
        raise ValueError(f"losses must have M entries with M dividing rows={rows}, got shape {tuple(losses.shape)}")
    _positive("sigma", sigma)
    b = _backend.resolve(dev, backend)
    md = torch.float32
    sp = (stride,) * 2 if isinstance(stride, int) else tuple(stride)
    pd = (padding,) * 2 if isinstance(padding, int) else tuple(padding)
    dl = (dilation,) * 2 if isinstance(dilation, int) else tuple(dilation)
    H, Wd = in_shape[1], in_shape[2]
    Ho = (H + 2 * pd[0] - dl[0] * (weight_shape[2] - 1) - 1) // sp[0] + 1
    Wo = (Wd + 2 * pd[1] - dl[1] * (weight_shape[3] - 1) - 1) // sp[1] + 1
    P = Ho * Wo
    gw = torch.zeros(weight_shape, dtype=md, device=dev)
    gb = torch.zeros(N, dtype=md, device=dev)
    gs = torch.zeros(N, dtype=md, device=dev)
    if rows == 0 or N == 0:
        return LRGrads(gw, gb, gs)
    L = losses.detach().to(md)
    s = sigma.detach().to(md)
    philox = kernel("rng", "philox", b)
    J = rows // (Rx * repeat)
    per_row = repeat * N * P
    rc = max(1, min(Rx, int(chunk_elements) // max(per_row, 1)))
    for q0 in range(0, Rx, rc):
        q1 = min(Rx, q0 + rc)
        E = torch.zeros(q1 - q0, N, Ho, Wo, dtype=md, device=dev)
        for j in range(J):
            ra = (j * Rx + q0) * repeat
            n_rows = (q1 - q0) * repeat
            sub = st.clone()
            sub[1] += ra * N * P
            eps = philox(sub, n_rows * N * P, KIND_NORMAL).view(q1 - q0, repeat, N, Ho, Wo)
            w = L[torch.arange(ra, ra + n_rows, device=dev) % M].view(q1 - q0, repeat, 1, 1, 1)
            f = torch.where(eps >= 0, w, -w) if sign else w * eps
            E += f.sum(1)
            gb += f.sum(dim=(0, 1, 3, 4))
            gs += (w * (eps * eps - 1)).sum(dim=(0, 1, 3, 4))
            del eps, f
        if bits:
            from ..reference.lr_grad import unpack_bits
            xq = unpack_bits(xt[q0:q1], x.features, md).view(q1 - q0, *in_shape)
        else:
            xq = xt[q0:q1].detach().to(md)
            if sign:
                xq = torch.sign(xq)
        gw += conv2d_weight(xq, weight_shape, E, stride=sp, padding=pd, dilation=dl)
    if not sign:
        gw /= s.view(N, 1, 1, 1)
        gb /= s
    gs /= s
    return LRGrads(gw, gb, gs)
