"""Shared pieces of the noise-op conformance specs (tests/test_noise_add.py, _mul.py, _sal.py)."""
import torch

import fastnoise
from fastnoise.ops import _noise

SEED, OFFSET = 1234, 6  # fixed: reference and every backend draw the same delta
SHAPES = [(2, 3, 5, 7), (3, 2, 1, 9), (1, 4, 3, 3), (0, 3, 2, 2)]


def _per_channel(shape):
    return (shape[1],) + (1,) * (len(shape) - 2)


def _state_kw(state):
    return dict(state=state) if state is not None else dict(seed=SEED, offset=OFFSET)


def _op_call(name, params):
    def call(inputs, backend):
        x = inputs["x"]
        md = _noise.math_dtype(x.dtype)
        args = [x]
        inners = []
        for p in params:
            v = inputs[p]
            if isinstance(v, torch.Tensor):
                flat, inner = _noise.layout(v.detach(), tuple(x.shape), md)
                flat.requires_grad_(v.requires_grad)
            else:
                flat, inner = torch.full((1,), float(v), dtype=md), 1
            args.append(flat)
            inners.append(inner)
        args.append(fastnoise.rng.make_state(SEED, OFFSET, x.device))
        return getattr(torch.ops.fastnoise, name).default, tuple(args + inners + [backend])
    return call


def _bad_common(param):
    return [
        ("x-int", lambda i: {**i, "x": i["x"].to(torch.int32)}, TypeError, "x must be a floating tensor"),
        ("x-list", lambda i: {**i, "x": [1.0, 2.0]}, TypeError, "x must be a torch.Tensor"),
        (f"{param}-dtype", lambda i: {**i, param: i[param].double()}, TypeError, f"{param} must have the dtype of x"),
        (f"{param}-device", lambda i: {**i, param: i[param].to("meta")}, ValueError,
         f"{param} must be on the device of x"),
        ("state-dtype", lambda i: {**i, "state": torch.tensor([1.0, 2.0])}, ValueError, "state must be an int64"),
        ("state-shape", lambda i: {**i, "state": torch.tensor([1, 2, 3])}, ValueError, r"state must be .* shape \(2,\)"),
    ]


def _bad_sigma(param):
    return [
        (f"{param}-negative-float", lambda i: {**i, param: -0.5}, ValueError, rf"{param} must be a finite number in \[0"),
        (f"{param}-nan-float", lambda i: {**i, param: float("nan")}, ValueError, f"{param} must be a finite number"),
        (f"{param}-negative-tensor", lambda i: {**i, param: -i[param]}, ValueError, f"{param} must be finite and >= 0"),
        (f"{param}-nan-tensor", lambda i: {**i, param: i[param] * float("nan")}, ValueError,
         f"{param} must be finite and >= 0"),
        (f"{param}-bool", lambda i: {**i, param: True}, TypeError, f"{param} must be a real number"),
    ]
