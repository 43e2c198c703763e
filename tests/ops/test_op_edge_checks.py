"""Regression tests of issue 16's "silent result" and "internal message" cases in the ops, the RNG, the
layers and the model / config checks: each is a clear ValueError / TypeError naming the argument, or
(empty shapes) a correct result. The cases of one op's own functions live in its file: the RNG streams in
tests/ops/test_philox.py, INT4 quantization in tests/ops/test_int4.py."""
import pytest
import torch

import fastnoise
import fastnoise.models
import fastnoise.train
from fastnoise import rng
from fastnoise.nn import LearnableNoise, NENNIConv2d, NENNILinear
from fastnoise.ops import noise_add, noise_mul, noise_sal, sampled_linear

MAX = 2 ** 63 - 1


# ---- RNG states of the noise ops ---------------------------------------------------------------

@pytest.mark.parametrize("state,match", [([-1, 0], r"got \[-1, 0\]"), ([3, -5], r"got \[3, -5\]"),
                                         ([3, MAX - 2], "state offset \\+ count must stay below 2\\*\\*63")])
@pytest.mark.parametrize("op", ["add", "mul", "sal"])
def test_state_tensor_is_range_checked_like_seed_and_offset(op, state, match):
    x = torch.zeros(8)[None]
    call = {"add": lambda st: noise_add(x, 0.1, state=st), "mul": lambda st: noise_mul(x, 1.0, 0.1, state=st),
            "sal": lambda st: noise_sal(x, 0.0, 0.0, state=st)}[op]
    with pytest.raises(ValueError, match="state must hold|state offset"):
        call(torch.tensor(state))
    with pytest.raises(ValueError, match=match):
        call(torch.tensor(state))
    call(torch.tensor([3, 0]))  # a valid state still works


def test_state_is_not_read_on_the_host_while_tracing():
    """Under torch.compile the values are not checked (a CUDA state would need a host sync): the graph takes
    the state as an input and the kernel reads it."""
    x = torch.randn(2, 4)
    f = torch.compile(lambda x, st: noise_add(x, 0.5, state=st), fullgraph=True, backend="aot_eager")
    st = torch.tensor([7, 12])
    torch.testing.assert_close(f(x, st), noise_add(x, 0.5, state=st))


def test_global_stream_exhaustion_is_named():
    rng.manual_seed(5)
    rng._global.offset = MAX - 2
    try:
        with pytest.raises(ValueError, match="global noise stream .* is exhausted"):
            noise_add(torch.zeros(8), 0.1)
    finally:
        rng.manual_seed(0)


# ---- sampled ops, empty shapes --------------------------------------------------------------------

@pytest.mark.parametrize("k,n", [(0, 3), (4, 0), (0, 0)])
def test_sampled_linear_zero_width(k, n):
    x, w, b = torch.randn(2, 5, k), torch.randn(n, k), torch.randn(n)
    mask = torch.rand(2, 5, n) < 0.5
    for backend in ("cpu", "reference"):
        out = sampled_linear(x, w, b, mask, backend=backend)
        torch.testing.assert_close(out, torch.where(mask, b.expand(2, 5, n), torch.zeros(())))


# ---- layers ---------------------------------------------------------------------------------------

def test_learnable_noise_shape_argument():
    with pytest.raises(TypeError, match="shape must be an int or a sequence of ints .* got float 1.5"):
        LearnableNoise(1.5)  # (init was meant): 'float' object is not iterable before


@pytest.mark.parametrize("mode", ["dense", "distill", "noisy"])
def test_nenni_wrong_input_in_every_mode(mode):
    lin = NENNILinear(8, 4, ratio=0.5, mode=mode)
    with pytest.raises(ValueError, match=r"x must be \[\.\.\., 8\], got shape \(2, 7\)"):
        lin(torch.randn(2, 7))
    with pytest.raises(TypeError, match="x must have the dtype of the layer's weight"):
        lin(torch.randn(2, 8, dtype=torch.float64))
    conv = NENNIConv2d(3, 4, 3, ratio=0.5, mode=mode)
    with pytest.raises(ValueError, match=r"x must be \[B, 3, H, W\], got shape \(1, 2, 5, 5\)"):
        conv(torch.randn(1, 2, 5, 5))
    with pytest.raises(ValueError, match=r"x spatial size \(2, 2\) is too small"):
        conv(torch.randn(1, 3, 2, 2))


@pytest.mark.parametrize("build,match", [
    (lambda: NENNILinear(0, 4, ratio=0.5), "in_features must be an int in"),
    (lambda: NENNILinear(4, -1, ratio=0.5), "out_features must be an int in"),
    (lambda: NENNILinear(4, 2, bias=1, ratio=0.5), "bias must be a bool"),
    (lambda: NENNIConv2d(3, 4, 0, ratio=0.5), "kernel_size must be an int in"),
    (lambda: NENNIConv2d(3, 4, 1.5, ratio=0.5), "kernel_size must be an int"),
    (lambda: NENNIConv2d(3, 4, 3, padding=-1, ratio=0.5), "padding must be an int in"),
    (lambda: NENNIConv2d(3, 4, 3, stride=0, ratio=0.5), "stride must be an int in"),
    (lambda: NENNIConv2d.from_conv(torch.nn.Conv2d(3, 4, 3, dilation=(1, 0)), ratio=0.5), "invalid sizes"),
])
def test_nenni_constructor_sizes(build, match):
    with pytest.raises((ValueError, TypeError), match=match):
        build()


# ---- models and config ----------------------------------------------------------------------------

@pytest.mark.parametrize("name,kw,match", [
    ("small_cnn", {"width": -3}, "width must be an int >= 1, got -3"),
    ("mlp", {"width": 0}, "width must be an int >= 1"),
    ("mlp", {"depth": -1}, "depth must be an int >= 0"),
    ("small_cnn", {"bn": "no"}, "bn must be true or false"),
    ("wrn34_10", {"widen": 0}, "widen must be an int >= 1"),
    ("wrn34_10", {"depth": 11}, "depth must be 6n\\+4"),
    ("wrn34_10", {"dropout": 1.5}, r"dropout must be a number in \[0, 1\)"),
])
def test_model_options_are_checked(name, kw, match):
    """Negative widths used to reach torch ("Trying to create tensor with negative dimension")."""
    with pytest.raises(ValueError, match=match):
        fastnoise.models.build(name, 10, 3, 32, **kw)
    with pytest.raises(ValueError, match="model_options: " + match):
        fastnoise.train.TrainConfig.from_dict({"model": name, "model_options": kw})


def test_config_seed_and_method_options(capsys):
    from fastnoise.cli import main
    from fastnoise.train import TrainConfig
    with pytest.raises(ValueError, match=r"seed must be an int in \[0, 9223372036854775807\]"):
        TrainConfig.from_dict({"seed": 2 ** 64})
    assert main(["train", "--seed", str(2 ** 70), "--print-config"]) == 2  # was: an overflow deep inside torch
    assert "seed must be an int in [0, 9223372036854775807]" in capsys.readouterr().err
    with pytest.raises(ValueError, match=r"method_options: method 'nenni': unknown option 'ratoi'"):
        TrainConfig.from_dict({"method": "nenni", "method_options": {"ratoi": 0.9}})
    with pytest.raises(ValueError, match="method_options: method 'none': unknown option 'sigma'"):
        TrainConfig.from_dict({"method_options": {"sigma": 0.1}})
