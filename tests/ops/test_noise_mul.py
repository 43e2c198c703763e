"""fastnoise.ops.noise_mul (x * (mu + sigma * delta), CTRW) in the conformance harness."""
import torch

from conformance import Spec, install
from fastnoise.ops import noise_mul
from noise_specs import SHAPES, _bad_common, _bad_sigma, _op_call, _per_channel, _state_kw


def mul_fn(backend, x, mu, sigma, state=None):
    return noise_mul(x, mu, sigma, backend=backend, **_state_kw(state))


def mul_make(shape, dtype, device, gen):
    return {"x": torch.randn(shape, generator=gen, dtype=dtype).to(device),
            "mu": (1 + 0.3 * torch.randn(shape[1:], generator=gen, dtype=dtype)).to(device),
            "sigma": (0.1 + torch.rand(_per_channel(shape), generator=gen, dtype=dtype)).to(device)}


MUL = Spec(
    name="noise_mul", family="noise", fn=mul_fn, make=mul_make, shapes=SHAPES, grad_inputs=("x", "mu", "sigma"),
    op_call=_op_call("noise_mul", ["mu", "sigma"]), noncontig_inputs=("x", "mu"),
    bad_inputs=_bad_common("mu") + _bad_sigma("sigma") + [
        ("mu-batch-shape", lambda i: {**i, "mu": torch.ones(i["x"].shape)}, ValueError, r"mu must broadcast to x.shape\[1:\]"),
        ("sigma-shape", lambda i: {**i, "sigma": torch.ones(7, 1, 1)}, ValueError, r"sigma must broadcast to x.shape\[1:\]"),
    ])


install(globals(), [MUL])
