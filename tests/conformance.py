"""The conformance harness: every backend of every op is checked against the eager reference.

An op's test file describes the op once with a `Spec` and calls `install(globals(), [spec, ...])`;
the harness then generates, for every usable (backend, device):

* forward and backward against the reference over the spec's shapes (odd sizes, empty) on
  contiguous and non-contiguous inputs, in float32 / float16 / bfloat16. Error rule (from
  flash-attention): a backend's max error against the reference run in float64 may be at most
  2x the error of the reference run in the same precision, plus a small per-dtype floor;
* exact equality of integer / mask outputs;
* `gradcheck` in float64 (where the op is smooth);
* `torch.library.opcheck` of the underlying custom op;
* `torch.compile(fullgraph=True)` matches eager;
* the bad-input errors (type and message) of the spec;
* statistical checks (`MeanCheck`): for a randomized estimator, the mean over many independent draws
  matches its expectation within a few standard errors (and the check is tight enough to fail).

Which (backend, device) pairs run comes from the dispatch table (fastnoise/ops/_dispatch.py) and
`fastnoise._backend.DEVICES`: a Spec names its op `family` (and the `kernels` it calls, default all of
the family), and the harness runs every backend the table says implements them and asserts the
"not implemented" BackendUnavailableError for the others. Adding a backend or a kernel means a row or
a column in the table, not new tests.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable, Optional, Sequence

import pytest
import torch

import fastnoise
from fastnoise._backend import BACKENDS, DEVICES
from fastnoise.ops import _dispatch

# (backend, device) pairs the harness checks against the reference on CPU (the ground truth, not a pair);
# GPU pairs skip with a reason on CPU machines.
BACKEND_DEVICES = [(b, d) for b in BACKENDS for d in DEVICES[b] if (b, d) != ("reference", "cpu")]
DTYPES = (torch.float32, torch.float16, torch.bfloat16)
# floor of the absolute error allowed on top of the 2x rule, per dtype
FLOOR = {torch.float64: 1e-10, torch.float32: 2e-6, torch.float16: 2e-3, torch.bfloat16: 1.6e-2}


def _param(b: str, d: str):
    marks = [pytest.mark.skip(reason="needs a CUDA device")] if d == "cuda" and not torch.cuda.is_available() else []
    return pytest.param(b, d, id=f"{b}-{d}", marks=marks)


def backend_params():
    """Every (backend, device) pair of BACKEND_DEVICES (GPU pairs skip with a reason on CPU machines)."""
    return [_param(b, d) for b, d in BACKEND_DEVICES]


def backends_on(device: str, family: str, kernels: Optional[Sequence[str]] = None) -> list[str]:
    """The backends implementing `family` (its `kernels`) per the dispatch table that run on `device`
    tensors, reference first (BACKENDS order)."""
    return [b for b in _dispatch.implemented_backends(family, kernels) if device in DEVICES[b]]


def backend_device_params(family: str, kernels: Optional[Sequence[str]] = None, *, reference: bool = True,
                          exclude: Sequence[str] = ()):
    """(backend, device) params of every backend implementing `family` on every device it runs on (the
    table's view; GPU ones skip with a reason). reference=False leaves the reference out."""
    return [_param(b, d) for b in _dispatch.implemented_backends(family, kernels) for d in DEVICES[b]
            if (reference or b != "reference") and b not in exclude]


@dataclasses.dataclass
class MeanCheck:
    """The mean of a randomized op over `draws` independent draws equals a known expectation.

    draw(backend, device, i) -> tuple of tensors (draw i, e.g. seeded with i); expected(device) -> tuple of
    tensors of the same shapes. The harness asserts ``|mean - expected| <= z * se + atol`` elementwise
    (se: the standard error of the mean over the draws) and ``max se <= power * max |expected|`` per output,
    so a check too noisy to detect a wrong estimator fails instead of passing.
    """
    name: str
    draw: Callable[[str, str, int], tuple]
    expected: Callable[[str], tuple]
    draws: int = 16
    z: float = 5.0
    atol: float = 1e-6
    power: float = 0.1


@dataclasses.dataclass
class Spec:
    """How to call and check one op.

    fn(backend=..., **inputs) -> Tensor or tuple of Tensors.
    make(shape, dtype, device, gen) -> dict of inputs (tensors and plain values).
    """
    name: str
    fn: Callable[..., Any]
    make: Callable[..., dict]
    shapes: Sequence[Any]
    grad_inputs: Sequence[str] = ()
    grad_outputs: Sequence[int] = (0,)          # outputs backpropagated through
    exact_outputs: Sequence[int] = ()          # outputs that must match bit for bit (masks, indices)
    dtypes: Sequence[torch.dtype] = DTYPES
    gradcheck: bool = True
    # op_call(inputs, backend) -> (custom op, args tuple) for torch.library.opcheck
    op_call: Optional[Callable[[dict, str], tuple]] = None
    # (id, make_bad(inputs) -> inputs, exception type, regex the message must match)
    bad_inputs: Sequence[tuple] = ()
    floor: Optional[dict] = None                 # per-dtype floors overriding FLOOR
    noncontig_inputs: Sequence[str] = ()        # tensor inputs made non-contiguous in the non-contiguous pass
    # the op family of the dispatch table and the kernels the op calls (None: every kernel of the family).
    # The backends it implements come from the table; for the others the harness asserts the clear
    # "not implemented" BackendUnavailableError instead of a result: nothing falls back silently.
    family: str = ""
    kernels: Optional[Sequence[str]] = None
    mean_checks: Sequence[MeanCheck] = ()        # statistical checks of a randomized estimator

    def __post_init__(self):
        if not self.family:
            raise ValueError(f"Spec {self.name!r}: family (the op family of the dispatch table) is required")

    @property
    def backends(self) -> tuple[str, ...]:
        return _dispatch.implemented_backends(self.family, self.kernels)


def _unimplemented(spec: "Spec", backend: str, device: str) -> bool:
    """True (after checking the error) when `spec` does not implement `backend`."""
    if backend in spec.backends:
        return False
    gen = torch.Generator().manual_seed(0)
    shape = next(s for s in spec.shapes if _numel(s) > 0)
    with pytest.raises(fastnoise.BackendUnavailableError, match="not implemented"):
        spec.fn(backend=backend, **spec.make(shape, torch.float32, device, gen))
    return True


def _as_tuple(out):
    return tuple(out) if isinstance(out, (tuple, list)) else (out,)


def bad_inputs(**changes):
    """A Spec `bad_inputs` maker: a copy of the inputs with `changes` applied in order (a callable value
    gets the inputs as changed so far and returns the new value)."""
    def make(inputs: dict) -> dict:
        out = dict(inputs)
        for key, v in changes.items():
            out[key] = v(out) if callable(v) else v
        return out
    return make


def noncontiguous(t: torch.Tensor) -> torch.Tensor:
    """Same values, non-contiguous storage (every other element of a wider buffer)."""
    if t.dim() == 0:
        return t
    wide = torch.empty(*t.shape[:-1], t.shape[-1] * 2, dtype=t.dtype, device=t.device)
    view = wide[..., ::2]
    view.copy_(t)
    assert t.numel() <= 1 or not view.is_contiguous()
    return view


def _cast(inputs: dict, dtype: torch.dtype) -> dict:
    out = {}
    for k, v in inputs.items():
        out[k] = v.to(dtype) if isinstance(v, torch.Tensor) and v.is_floating_point() else v
    return out


def _run(spec: Spec, backend: str, inputs: dict, grad_seed: int = 0):
    """Forward, then backward of sum(out_i * g_i) over grad_outputs; returns (outs, grads)."""
    inputs = dict(inputs)
    for k in spec.grad_inputs:
        inputs[k] = inputs[k].detach().clone().requires_grad_(True) if inputs[k].is_contiguous() else \
            noncontiguous(inputs[k].detach()).requires_grad_(True)
    outs = _as_tuple(spec.fn(backend=backend, **inputs))
    grads = ()
    if spec.grad_inputs:
        gen = torch.Generator().manual_seed(grad_seed)
        loss = 0
        for i in spec.grad_outputs:
            g = torch.randn(outs[i].shape, generator=gen, dtype=torch.float32).to(outs[i].device, outs[i].dtype)
            loss = loss + (outs[i] * g).sum()
        grads = torch.autograd.grad(loss, [inputs[k] for k in spec.grad_inputs], allow_unused=True)
        grads = tuple(torch.zeros_like(inputs[k]) if g is None else g for k, g in zip(spec.grad_inputs, grads))
    return tuple(o.detach() for o in outs), grads


def assert_matches(name: str, got: torch.Tensor, ref64: torch.Tensor, ref_lp: torch.Tensor, floor: float) -> None:
    """Two-sided error rule: |got - ref64| <= 2 |ref_lp - ref64| + floor, elementwise-max; NaN never passes."""
    assert got.shape == ref64.shape, f"{name}: shape {tuple(got.shape)} != reference {tuple(ref64.shape)}"
    if got.numel() == 0:
        return
    g = got.double().cpu()
    r = ref64.double().cpu()
    lp = ref_lp.double().cpu()
    assert torch.isfinite(g).all() == torch.isfinite(r).all(), f"{name}: non-finite values differ from the reference"
    err = (g - r).abs().max().item()
    ref_err = (lp - r).abs().max().item()
    bound = 2 * ref_err + floor
    assert err <= bound, f"{name}: max error {err:.3g} > bound {bound:.3g} (2 x reference error {ref_err:.3g} + {floor:g})"


def _check_forward_backward(spec: Spec, backend: str, device: str, shape, dtype, contiguous: bool) -> None:
    gen = torch.Generator().manual_seed(1234)
    base = spec.make(shape, torch.float64, "cpu", gen)  # exact base values, cast per precision
    base = {k: (v.to(device) if isinstance(v, torch.Tensor) else v) for k, v in base.items()}
    lp = _cast(base, dtype)
    if not contiguous:
        lp = {k: (noncontiguous(v) if k in spec.noncontig_inputs and isinstance(v, torch.Tensor) else v)
              for k, v in lp.items()}
    # the reference in float64 on the *rounded* low-precision values, and in low precision
    hi = {k: (v.double() if isinstance(v, torch.Tensor) and v.is_floating_point() else v)
          for k, v in _cast(base, dtype).items()}
    out64, g64 = _run(spec, "reference", hi)
    out_lp, g_lp = _run(spec, "reference", lp)
    out, grads = _run(spec, backend, lp)
    floor = (spec.floor or {}).get(dtype, FLOOR[dtype])
    for i, (o, r, rl) in enumerate(zip(out, out64, out_lp)):
        assert o.dtype == rl.dtype, f"output {i}: dtype {o.dtype} != reference {rl.dtype}"
        assert o.device == rl.device, f"output {i}: device {o.device} != reference {rl.device}"
        if i in spec.exact_outputs:
            assert torch.equal(o.cpu(), rl.cpu()), f"output {i} differs from the reference ({(o != rl).sum()} elements)"
        else:
            assert_matches(f"output {i}", o, r, rl, floor)
    for k, g, r, rl in zip(spec.grad_inputs, grads, g64, g_lp):
        assert g.dtype == rl.dtype, f"grad of {k}: dtype {g.dtype} != {rl.dtype}"
        assert_matches(f"grad of {k}", g, r, rl, floor)


def install(ns: dict, specs: Sequence[Spec]) -> None:
    """Define the conformance tests of `specs` in the test module namespace `ns`."""
    spec_params = [pytest.param(s, id=s.name) for s in specs]
    case_params = [pytest.param(s, sh, id=f"{s.name}-{'x'.join(map(str, sh)) if isinstance(sh, tuple) else sh}")
                   for s in specs for sh in s.shapes]

    @pytest.mark.parametrize("backend,device", backend_params())
    @pytest.mark.parametrize("spec,shape", case_params)
    @pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: str(d).split(".")[-1])
    @pytest.mark.parametrize("contiguous", [True, False], ids=["contig", "noncontig"])
    def test_conformance_matches_reference(spec, shape, dtype, contiguous, backend, device):
        if _unimplemented(spec, backend, device):
            return
        if dtype not in spec.dtypes:
            pytest.skip(f"{spec.name} is not defined for {dtype}")  # pragma: no cover - specs list dtypes
        _check_forward_backward(spec, backend, device, shape, dtype, contiguous)

    @pytest.mark.parametrize("backend,device", [pytest.param("reference", "cpu", id="reference-cpu")] + backend_params())
    @pytest.mark.parametrize("spec", spec_params)
    def test_conformance_gradcheck(spec, backend, device):
        if _unimplemented(spec, backend, device):
            return
        if not spec.gradcheck or not spec.grad_inputs:
            return
        gen = torch.Generator().manual_seed(7)
        small = [s for s in spec.shapes if isinstance(s, tuple) and 0 < _numel(s) <= 64] or [spec.shapes[0]]
        inputs = spec.make(small[0], torch.float64, device, gen)
        names = list(spec.grad_inputs)

        def f(*ts):
            kw = dict(inputs)
            kw.update(zip(names, ts))
            outs = _as_tuple(spec.fn(backend=backend, **kw))
            return tuple(outs[i] for i in spec.grad_outputs)

        args = tuple(inputs[k].detach().clone().requires_grad_(True) for k in names)
        assert torch.autograd.gradcheck(f, args, eps=1e-6, atol=1e-5, rtol=1e-4)

    @pytest.mark.parametrize("backend,device", backend_params())
    @pytest.mark.parametrize("spec", spec_params)
    def test_conformance_opcheck(spec, backend, device):
        if _unimplemented(spec, backend, device):
            return
        assert spec.op_call is not None, f"{spec.name}: Spec.op_call is required"
        gen = torch.Generator().manual_seed(3)
        shape = next(s for s in spec.shapes if _numel(s) > 0)
        inputs = spec.make(shape, torch.float32, device, gen)
        for k in spec.grad_inputs:
            inputs[k] = inputs[k].requires_grad_(True)
        op, args = spec.op_call(inputs, backend)
        torch.library.opcheck(op, args)

    @pytest.mark.parametrize("backend,device", backend_params())
    @pytest.mark.parametrize("spec", spec_params)
    def test_conformance_compile_fullgraph(spec, backend, device):
        if _unimplemented(spec, backend, device):
            return
        torch._dynamo.reset()
        gen = torch.Generator().manual_seed(5)
        shape = next(s for s in spec.shapes if _numel(s) > 0)
        inputs = spec.make(shape, torch.float32, device, gen)
        eager, eager_grads = _run(spec, backend, inputs)
        tensor_keys = [k for k, v in inputs.items() if isinstance(v, torch.Tensor)]
        static = {k: v for k, v in inputs.items() if k not in tensor_keys}

        def f(*ts):
            kw = dict(static)
            kw.update(zip(tensor_keys, ts))
            return spec.fn(backend=backend, **kw)

        compiled = torch.compile(f, fullgraph=True, backend="aot_eager" if device == "cpu" and backend == "triton" else "inductor")
        spec_c = dataclasses.replace(spec, fn=lambda backend, **kw: compiled(*[kw[k] for k in tensor_keys]))
        out, grads = _run(spec_c, backend, inputs)
        for o, e in zip(out + grads, eager + eager_grads):
            torch.testing.assert_close(o, e, rtol=1e-5, atol=1e-5)

    @pytest.mark.parametrize("spec,case", [pytest.param(s, b, id=f"{s.name}-{b[0]}") for s in specs for b in s.bad_inputs])
    def test_conformance_bad_input(spec, case):
        _, make_bad, exc, match = case
        gen = torch.Generator().manual_seed(11)
        shape = next(s for s in spec.shapes if _numel(s) > 0)
        inputs = make_bad(spec.make(shape, torch.float32, "cpu", gen))
        with pytest.raises(exc, match=match):
            spec.fn(backend="reference", **inputs)
        with pytest.raises(exc, match=match):
            spec.fn(backend="cpu", **inputs)

    stat_params = [pytest.param(s, c, id=f"{s.name}-{c.name}") for s in specs for c in s.mean_checks]

    @pytest.mark.parametrize("backend,device", [pytest.param("reference", "cpu", id="reference-cpu")] + backend_params())
    @pytest.mark.parametrize("spec,check", stat_params)
    def test_conformance_statistical(spec, check, backend, device):
        if _unimplemented(spec, backend, device):
            return
        assert_mean(check, backend, device)

    fns = [test_conformance_matches_reference, test_conformance_gradcheck, test_conformance_opcheck,
           test_conformance_compile_fullgraph, test_conformance_bad_input]
    if stat_params:
        fns.append(test_conformance_statistical)
    for f in fns:
        ns[f.__name__] = f


def assert_mean(check: MeanCheck, backend: str, device: str) -> None:
    """The statistical assertion of a `MeanCheck` (see its docstring)."""
    draws = [tuple(t.detach().double().cpu() for t in _as_tuple(check.draw(backend, device, i)))
             for i in range(check.draws)]
    expected = [t.double().cpu() for t in _as_tuple(check.expected(device))]
    for j, e in enumerate(expected):
        d = torch.stack([dr[j] for dr in draws])
        mean = d.mean(0)
        se = d.std(0) / check.draws ** 0.5
        assert mean.shape == e.shape, f"{check.name} output {j}: shape {tuple(mean.shape)} != {tuple(e.shape)}"
        scale = e.abs().max().item()
        assert se.max().item() <= check.power * scale, (
            f"{check.name} output {j}: standard error {se.max().item():.3g} > {check.power} x |expected| "
            f"{scale:.3g}: too few draws to test the mean")
        z = ((mean - e).abs() - check.atol).clamp(min=0) / se.clamp(min=1e-30)
        assert z.max().item() <= check.z, (
            f"{check.name} output {j}: mean differs from the expectation by {z.max().item():.2f} standard errors "
            f"(max |mean - expected| {(mean - e).abs().max().item():.3g})")


def _numel(shape) -> int:
    n = 1
    for s in (shape if isinstance(shape, tuple) else ()):
        n *= s
    return n
