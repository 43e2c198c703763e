"""The LR estimator of NIT (fastnoise.ops.lr_grad) on the MNIST spiking MLP 784-500-10, T = 8, batch 128,
C = 8 replicas (rows = T * B * C = 8192 per layer), float32, direct-current input.

Cases (each row: median time side by side in one run):

* ``estimate L1`` / ``estimate L2``: the estimator alone for each layer. ``reference``: the seed's
  algorithm with the forward's eps stored (handed in) and the input stored per noise row, one GEMM
  ``(L eps)^T X / sigma`` (+ the bias and sigma sums); ``cpu``: fastnoise.ops.lr_grad from the input as
  stored by the layer (layer 1: once per sample, repeat = C * T; layer 2: spikes as bits) and the noise
  state (eps regenerated in the kernel).
* ``forward+estimate``: one LR gradient estimate of the whole network from a batch: noisy forward over
  T steps and C replicas, per-replica cross-entropy, leave-one-out baseline, both layers' estimates.
  ``reference``: the seed's algorithm in eager PyTorch (input repeated per replica, ``torch.randn`` eps
  and every layer's X stored per row, then the estimator GEMMs); ``compile(reference)``: the same under
  torch.compile; ``reference_shared``: eager PyTorch that also computes the shared first layer once per
  sample and reduces the noise over the rows sharing an input before the GEMM (the algebra the kernel
  uses, without the kernel); ``cpu``: `fastnoise.methods.nit.lr_estimate` on `fastnoise.models.SpikingMLP`.
* ``train step``: one NIT step (the forward+estimate, Adam update, projection) next to one STBP step
  (surrogate-gradient BPTT, Adam) on the same network; ``reference`` is the STBP step here, so
  ``x_vs_reference`` = STBP time / NIT time.

    python benchmarks/run.py --ops lr_grad --no-backward [--quick]
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

import fastnoise
from benchmarks._common import Case, reference_variants
from fastnoise.methods import nit as nc
from fastnoise.models import SpikingMLP

DECAY, THRESHOLD, SIGMA = 0.5, 1.0, 1.0


def _shape(quick: bool) -> tuple[int, int, int, int, int, int]:
    """(B, C, T, in, hidden, classes)."""
    return (16, 4, 4, 64, 32, 10) if quick else (128, 8, 8, 784, 500, 10)


def _model(device: str, quick: bool) -> SpikingMLP:
    B, C, T, K, H, N = _shape(quick)
    torch.manual_seed(0)
    m = SpikingMLP(N, 1, (1, K), hidden=H, steps=T, decay=DECAY, threshold=THRESHOLD, sigma_init=SIGMA, seed=0)
    with torch.no_grad():  # a trained-like first layer: about 15% of the hidden neurons fire per step
        m.fcs[0].weight.mul_(3.0)
    return m.to(device)


def _batch(device: str, quick: bool):
    B, C, T, K, H, N = _shape(quick)
    g = torch.Generator().manual_seed(1)
    x = torch.rand(B, 1, 1, K, generator=g) * (torch.rand(B, 1, 1, K, generator=g) < 0.2)  # MNIST-like sparsity
    return x.to(device), torch.randint(0, N, (B,), generator=g).to(device)


def _weights(L: torch.Tensor) -> torch.Tensor:
    B, C = L.shape
    return ((L - L.mean(1, keepdim=True)) * (C / (C - 1)) / (B * C)).reshape(-1)


def seed_reference(x, y, W1, b1, s1, W2, b2, s2, T: int, C: int):
    """The seed's NIT estimate in eager PyTorch: eps and X of every layer stored per noise row."""
    B = x.shape[0]
    xr = x.flatten(1).repeat_interleave(C, 0)                     # x^(0)(n, c) = x^(0)(n), one row per replica
    u = torch.zeros(B * C, W1.shape[0], device=x.device)
    s = torch.zeros_like(u)
    acc = torch.zeros(B * C, W2.shape[0], device=x.device)
    X1, E1, X2, E2 = [], [], [], []
    for _ in range(T):
        e1 = torch.randn(B * C, W1.shape[0], device=x.device)
        u = DECAY * u * (1 - s) + (xr @ W1.t() + b1 + s1 * e1)
        s = (u > THRESHOLD).float()
        e2 = torch.randn(B * C, W2.shape[0], device=x.device)
        acc = acc + (s @ W2.t() + b2 + s2 * e2)
        X1.append(xr), E1.append(e1), X2.append(s), E2.append(e2)
    L = F.cross_entropy(acc / T, y.repeat_interleave(C), reduction="none").view(B, C)
    w = _weights(L).repeat(T).unsqueeze(1)
    out = []
    for Xs, Es, sg in ((X1, E1, s1), (X2, E2, s2)):
        X, E = torch.cat(Xs), torch.cat(Es)
        we = w * E
        out += [we.t() @ X / sg.unsqueeze(1), we.sum(0) / sg, (w * (E * E - 1)).sum(0) / sg]
    return out


def shared_reference(x, y, W1, b1, s1, W2, b2, s2, T: int, C: int):
    """Eager PyTorch with the algebra of the kernel: the first layer once per sample, eps summed over the
    rows that share an input before the GEMM (eps still stored)."""
    B = x.shape[0]
    cur1 = (x.flatten(1) @ W1.t() + b1).repeat_interleave(C, 0)
    u = torch.zeros_like(cur1)
    s = torch.zeros_like(u)
    acc = torch.zeros(B * C, W2.shape[0], device=x.device)
    E1, X2, E2 = [], [], []
    for _ in range(T):
        e1 = torch.randn_like(cur1)
        u = DECAY * u * (1 - s) + (cur1 + s1 * e1)
        s = (u > THRESHOLD).float()
        e2 = torch.randn(B * C, W2.shape[0], device=x.device)
        acc = acc + (s @ W2.t() + b2 + s2 * e2)
        E1.append(e1), X2.append(s), E2.append(e2)
    L = F.cross_entropy(acc / T, y.repeat_interleave(C), reduction="none").view(B, C)
    w = _weights(L).unsqueeze(1)
    E1 = torch.stack(E1)
    we1 = w * E1                                                   # [T, B*C, N]
    g1 = we1.sum(0).view(B, C, -1).sum(1).t() @ x.flatten(1) / s1.unsqueeze(1)
    wt = w.repeat(T, 1)
    X2, E2 = torch.cat(X2), torch.cat(E2)
    we2 = wt * E2
    return [g1, we1.sum((0, 1)) / s1, (w * (E1 * E1 - 1)).sum((0, 1)) / s1,
            we2.t() @ X2 / s2.unsqueeze(1), we2.sum(0) / s2, (wt * (E2 * E2 - 1)).sum(0) / s2]


def _estimate_cases(device: str, quick: bool) -> list[Case]:
    B, C, T, K, H, N = _shape(quick)
    rows = T * B * C
    out = []
    for layer, (k, n, bits) in (("L1", (K, H, False)), ("L2", (H, N, True))):
        def make(k=k, n=n, bits=bits):
            g = torch.Generator().manual_seed(2)
            x = (torch.rand(rows, k, generator=g) < 0.15).float() if bits else torch.rand(B, k, generator=g)
            st = fastnoise.rng.make_state(3, 0, device)
            x = x.to(device)
            return {"x": x, "x_bits": fastnoise.ops.pack_spikes(x) if bits else None,
                    "x_rows": x if bits else x.repeat_interleave(C, 0).repeat(T, 1),  # the seed stores X per row
                    "w": torch.randn(B * C, generator=g).to(device), "sigma": torch.ones(n, device=device),
                    "eps": torch.randn(rows, n, generator=g).to(device), "state": st}

        def reference(i, bits=bits):
            X = i["x_rows"]
            w = i["w"].repeat(T).unsqueeze(1)
            we = w * i["eps"]
            s = i["sigma"]
            return we.t() @ X / s.unsqueeze(1), we.sum(0) / s, (w * (i["eps"] ** 2 - 1)).sum(0) / s

        def ours(i, backend, bits=bits):
            if bits:
                return fastnoise.ops.lr_grad(i["x_bits"], i["w"], i["sigma"], i["state"], backend=backend)
            return fastnoise.ops.lr_grad(i["x"], i["w"], i["sigma"], i["state"], rows=rows, repeat=C,
                                         backend=backend)

        out.append(Case("lr_grad", f"estimate {layer} {k}->{n} rows={rows}{' bits' if bits else ''}", make,
                        reference_variants(reference, {b: (lambda i, b=b, f=ours: f(i, b)) for b in ("cpu", "cuda")},
                                           device),
                        flops=2 * rows * k * n))
    return out


def _network_case(device: str, quick: bool) -> Case:
    B, C, T, K, H, N = _shape(quick)
    model = _model(device, quick)

    def make():
        x, y = _batch(device, quick)
        f0, f1 = model.fcs
        p = [t.detach() for t in (f0.weight, f0.bias, f0.sigma, f1.weight, f1.bias, f1.sigma)]
        return {"x": x, "y": y, "p": p}

    def ref(i):
        return seed_reference(i["x"], i["y"], *i["p"], T=T, C=C)

    def ours(i):
        for prm in model.parameters():
            prm.grad = None
        nc.lr_estimate(model, i["x"], i["y"], replicas=C)
        return [prm.grad for prm in model.parameters()]

    variants = reference_variants(ref, {"cpu": ours} if device == "cpu" else {"cuda": ours}, device)
    variants = {**variants, "reference_shared": lambda i: shared_reference(i["x"], i["y"], *i["p"], T=T, C=C)}
    return Case("lr_grad", f"forward+estimate MLP {K}-{H}-{N} T={T} B={B} C={C}", make, variants)


def _train_case(device: str, quick: bool) -> Case:
    B, C, T, K, H, N = _shape(quick)
    nit_model, stbp_model = _model(device, quick), _model(device, quick)
    opt_n = torch.optim.Adam(nit_model.parameters(), lr=1e-3)
    opt_s = torch.optim.Adam(stbp_model.parameters(), lr=1e-3)

    def make():
        x, y = _batch(device, quick)
        return {"x": x, "y": y}

    def stbp(i):
        with torch.enable_grad():
            return nc.stbp_step(stbp_model, i["x"], i["y"], opt_s)["loss"]

    def nit(i):
        return nc.nit_step(nit_model, i["x"], i["y"], opt_n, replicas=C)["loss"]

    return Case("lr_grad", f"train step MLP {K}-{H}-{N} T={T} B={B} (reference = STBP; nit: C={C})", make,
                {"reference": stbp, "nit": nit})


def cases(device: str, quick: bool = False) -> list[Case]:
    return _estimate_cases(device, quick) + [_network_case(device, quick), _train_case(device, quick)]
