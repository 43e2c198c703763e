"""Fuzz of the layers (fastnoise.nn): constructor arguments, forward inputs (dtypes, empty and
non-contiguous tensors, NaN data, noise modes) against the same layer on the reference backend, and the
configuration check of their state_dicts (a state_dict loads into a layer iff the configurations agree;
otherwise a ValueError naming a differing key)."""
from __future__ import annotations

import copy

import torch
from hypothesis import given
from hypothesis import strategies as st

import fastnoise
from fastnoise.nn import SAL, GaussianNoise, LearnableNoise, NENNIConv2d, NENNILinear, RandomWeight
from fuzzkit import (BAD_NUMBERS, FLOATS, LAYOUTS, assert_same, expect_error, fuzz_settings, run_valid, seeds,
                     shape, tensor)

N = 25


def _pick(data, mutations):
    i = data.draw(st.integers(-len(mutations), len(mutations) - 1))
    return None if i < 0 else mutations[i]


def _noise_layer(data):
    """(class name, constructor kwargs, mutations, x shape the layer accepts)."""
    kind = data.draw(st.sampled_from(["GaussianNoise", "LearnableNoise", "RandomWeight", "SAL"]))
    c, h, w = data.draw(st.integers(1, 3)), data.draw(st.integers(1, 3)), data.draw(st.integers(1, 3))
    seed = data.draw(st.one_of(st.none(), seeds()))
    if kind == "GaussianNoise":
        kw = {"sigma": data.draw(st.floats(0.0, 1.0)), "seed": seed}
        muts = [("sigma", v) for v in BAD_NUMBERS + (-0.1,)]
    elif kind == "LearnableNoise":
        kw = {"shape": data.draw(st.sampled_from([(1,), (), (c, 1, 1), 1])), "init": data.draw(st.floats(0.0, 1.0)),
              "seed": seed}
        muts = [("init", v) for v in BAD_NUMBERS + (-0.5,)] + [("shape", v) for v in ((-1,), (1.5,), "a", None)]
    elif kind == "RandomWeight":
        kw = {"shape": data.draw(st.sampled_from([(c, h, w), (c, 1, 1), (1,)])),
              "mu_init": data.draw(st.floats(-1.0, 2.0)), "sigma_init": data.draw(st.floats(0.0, 1.0)), "seed": seed}
        muts = [("mu_init", v) for v in BAD_NUMBERS] + [("sigma_init", v) for v in BAD_NUMBERS + (-0.3,)]
        muts += [("shape", v) for v in ((0, -2), None)]
    else:
        kw = {"channels": c, "init_std": data.draw(st.floats(0.01, 1.0)), "seed": seed,
              "feature_shape": data.draw(st.sampled_from([None, (c, h, w)]))}
        muts = [("init_std", v) for v in BAD_NUMBERS + (0.0, -1.0)] + [("channels", v) for v in (0, -1, 2.0, None)]
        muts += [("feature_shape", (c + 1, h, w))]
    muts += [("seed", v) for v in (-1, 2 ** 63, 0.5)]
    return kind, kw, muts, (data.draw(st.integers(0, 3)), c, h, w)


@fuzz_settings(2 * N)
@given(st.data())
def test_fuzz_noise_layers(data):
    kind, kw, muts, xshape = _noise_layer(data)
    cls = getattr(fastnoise.nn, kind)
    target = f"nn.{kind}"
    mut = _pick(data, muts)
    if mut is not None:
        expect_error(target, mut[0], lambda: cls(**{**kw, mut[0]: mut[1]}))
        return
    layer = run_valid(target, lambda: cls(**kw))
    layer.set_noise_mode(data.draw(st.sampled_from(["on", "train", "off"])))
    layer.train(data.draw(st.booleans()))
    dtype = data.draw(st.sampled_from(FLOATS))
    x = tensor(data.draw(seeds()), xshape, dtype, layout=data.draw(st.sampled_from(LAYOUTS)),
               special=data.draw(st.booleans()))
    twin = copy.deepcopy(layer)
    got = run_valid(target + ".forward", lambda: layer(x))
    with fastnoise.use_backend("reference"):
        ref = twin(x)
    assert_same(target + ".forward", got, ref, dtype)
    assert torch.equal(layer.stream.state, twin.stream.state)  # the streams advanced alike
    # a bad input: wrong dtype, or a shape the layer's parameters do not broadcast to
    bad = data.draw(st.sampled_from(["int", "list"] + (["shape"] if kind in ("RandomWeight", "SAL") else [])))
    if layer.noise_active or kind == "RandomWeight":
        xb = {"int": x.to(torch.int64), "list": x.tolist(), "shape": torch.zeros(2, xshape[1] + 1, 5, 5, dtype=dtype)}[bad]
        names = {"GaussianNoise": ("sigma",), "LearnableNoise": ("sigma",), "RandomWeight": ("mu", "sigma"),
                 "SAL": ("w", "b")}[kind]
        expect_error(target + ".forward", "x", lambda: layer(xb), also=names)


def _nenni_kwargs(data, conv: bool):
    kw = {"k": data.draw(st.one_of(st.none(), st.integers(1, 6))), "score": data.draw(st.sampled_from(["abs", "signed"])),
          "inject": data.draw(st.sampled_from(["non_essential", "essential"])),
          "mode": data.draw(st.sampled_from(["dense", "distill", "noisy"])), "seed": data.draw(seeds()),
          "bias": data.draw(st.booleans())}
    if conv:
        kw["granularity"] = data.draw(st.sampled_from(["position", "channel"]))
    out = data.draw(st.sampled_from([2, 4]))
    if data.draw(st.booleans()):
        kw["ratio"] = data.draw(st.sampled_from([0.0, 0.5, 0.75, 0.9]))
    else:
        kw["nm"] = data.draw(st.sampled_from([(1, 2), (2, 2), (1, out)]))
    return kw, out


_NENNI_BAD = ([("ratio", v) for v in (1.0, -0.2, float("nan"), "0.5")] + [("nm", v) for v in ((3, 2), (1, 3), "1:2")]
              + [("k", v) for v in (0, -1, 1.5)] + [("score", "max"), ("inject", "all"), ("mode", "fast"),
                                                   ("seed", -1), ("seed", 2 ** 63), ("bias", 1)])


@fuzz_settings(N)
@given(st.data())
def test_fuzz_nenni_linear(data):
    kw, out = _nenni_kwargs(data, conv=False)
    d = data.draw(st.integers(1, 6))
    muts = _NENNI_BAD + [("in_features", 0), ("out_features", -1), ("granularity", "channel"),
                         ("in_features", 2.0)]
    mut = _pick(data, muts)
    if mut is not None:
        args = {**kw, mut[0]: mut[1]}
        if mut[0] == "nm":
            args.pop("ratio", None)
        expect_error("nn.NENNILinear", mut[0], lambda: NENNILinear(args.pop("in_features", d),
                                                                    args.pop("out_features", out), **args))
        return
    _nenni_forward(data, "nn.NENNILinear", lambda: NENNILinear(d, out, **kw),
                   data.draw(shape(0, 2)) + (d,), (2, d + 1))


@fuzz_settings(N)
@given(st.data())
def test_fuzz_nenni_conv2d(data):
    kw, out = _nenni_kwargs(data, conv=True)
    c, ks = data.draw(st.integers(1, 2)), data.draw(st.integers(1, 3))
    conv = {"stride": data.draw(st.integers(1, 2)), "padding": data.draw(st.integers(0, 1))}
    muts = _NENNI_BAD + [("in_channels", 0), ("out_channels", 0), ("kernel_size", 0), ("stride", 0),
                         ("padding", -1), ("dilation", 0), ("granularity", "row"), ("kernel_size", (1, 2, 3))]
    mut = _pick(data, muts)
    if mut is not None:
        args = {"in_channels": c, "out_channels": out, "kernel_size": ks, **conv, **kw, mut[0]: mut[1]}
        if mut[0] == "nm":
            args.pop("ratio", None)
        expect_error("nn.NENNIConv2d", mut[0], lambda: NENNIConv2d(**args))
        return
    hw = ks + data.draw(st.integers(0, 3))
    _nenni_forward(data, "nn.NENNIConv2d", lambda: NENNIConv2d(c, out, ks, **conv, **kw),
                   (data.draw(st.integers(0, 2)), c, hw, hw), (1, c + 1, hw, hw))


def _nenni_forward(data, target, build, xshape, bad_shape):
    layer = run_valid(target, build)
    if data.draw(st.booleans()):
        layer.quantize_()
    dtype = data.draw(st.sampled_from([torch.float32, torch.float64]))
    layer.to(dtype)
    x = tensor(data.draw(seeds()), xshape, dtype, layout=data.draw(st.sampled_from(LAYOUTS)),
               special=data.draw(st.booleans()))
    with torch.no_grad():
        got = run_valid(target + ".forward", lambda: layer(x))
        with fastnoise.use_backend("reference"):
            ref = layer(x)
    assert_same(target + ".forward", got, ref, dtype)
    bad = data.draw(st.sampled_from(["shape", "dtype", "int", "list"]))
    xb = {"shape": torch.zeros(bad_shape, dtype=dtype), "dtype": x.to(torch.float16 if dtype == torch.float32 else
                                                                         torch.float32),
          "int": x.to(torch.int64), "list": x.tolist()}[bad]
    expect_error(target + ".forward", "x", lambda: layer(xb))


# ---- configurations in state_dicts ----------------------------------------------------------------------

def _config_layer(data):
    """Two layers of one family with random (often equal) settings."""
    kind = data.draw(st.sampled_from(["GaussianNoise", "LearnableNoise", "RandomWeight", "SAL", "NENNILinear"]))
    pick = lambda: {  # noqa: E731
        "GaussianNoise": lambda: GaussianNoise(data.draw(st.sampled_from([0.0, 0.1, 0.25]))),
        "LearnableNoise": lambda: LearnableNoise(data.draw(st.sampled_from([(1,), (2, 1, 1)]))),
        "RandomWeight": lambda: RandomWeight(data.draw(st.sampled_from([(2, 1, 1), (2, 3, 3)]))),
        "SAL": lambda: SAL(2, feature_shape=data.draw(st.sampled_from([None, (2, 3, 3)]))),
        "NENNILinear": lambda: NENNILinear(4, 2, ratio=data.draw(st.sampled_from([0.5, 0.75])),
                                           k=data.draw(st.sampled_from([2, 3])), seed=data.draw(st.integers(0, 1))),
    }[kind]()
    return kind, pick(), pick()


@fuzz_settings(2 * N)
@given(st.data())
def test_fuzz_state_dict_configs(data):
    kind, a, b = _config_layer(data)
    target = f"state_dict.{kind}"
    ca, cb = a.config(), b.config()
    sd = a.state_dict()
    strict = data.draw(st.booleans())
    if ca == cb:
        shapes_ok = all(sd[k].shape == v.shape for k, v in b.state_dict().items() if isinstance(v, torch.Tensor))
        if shapes_ok:
            run_valid(target, lambda: b.load_state_dict(sd, strict=strict))
            assert b.config() == ca
            return
    differing = sorted(k for k in set(ca) | set(cb) if ca.get(k) != cb.get(k))
    if not differing:  # same config but other tensor shapes cannot happen: the config holds the shapes
        raise AssertionError(f"{kind}: equal configs {ca} but state_dict shapes differ")
    e = expect_error(target, differing[0], lambda: b.load_state_dict(sd, strict=strict), also=tuple(differing))
    assert "configuration" in str(e)
    assert b.config() == cb  # nothing changed
    # a state_dict without the configuration (an old checkpoint) is refused, naming the key
    sd2 = {k: v for k, v in sd.items() if not k.endswith("_extra_state")}
    expect_error(target + ".missing", "_extra_state", lambda: a.load_state_dict(sd2, strict=strict))
