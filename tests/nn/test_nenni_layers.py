"""NENNILinear / NENNIConv2d: exactness where nothing is injected, Eq. 2, distillation, INT4, state_dict,
torch.compile and bad input. Shapes are small: the Triton interpreter and 2 shared cores."""
import math

import pytest
import torch
import torch.nn.functional as F

import fastnoise
import fastnoise.ops
from fastnoise.nn import NENNIConv2d, NENNILinear

torch.manual_seed(0)


def conv(cin=8, cout=16, **kw):
    torch.manual_seed(1)
    return torch.nn.Conv2d(cin, cout, 3, padding=1, **kw)


def lin(i=24, o=16):
    torch.manual_seed(2)
    return torch.nn.Linear(i, o)


X_CONV = torch.randn(2, 8, 6, 5)
X_LIN = torch.randn(5, 24)


@pytest.fixture(params=[False, True], ids=["dense-path", "sampled-path"])
def sampled(request, monkeypatch):
    """Run each noisy test through both exact paths (dense product + blend, and the sampled ops)."""
    monkeypatch.setattr(fastnoise.ops, "sampled_is_faster", lambda frac, kind, device: request.param)
    return request.param


def layers(**cfg):
    c, l = conv(), lin()
    return [(c, NENNIConv2d.from_conv(c, **cfg), X_CONV), (l, NENNILinear.from_linear(l, **cfg), X_LIN)]


# ---- exact where nothing is injected -------------------------------------------------------------

def test_shares_parameters_not_copies():
    c = conv()
    layer = NENNIConv2d.from_conv(c, ratio=0.5)
    assert layer.weight is c.weight and layer.bias is c.bias
    names = [n for n, _ in layer.named_parameters()]
    assert names == ["weight", "bias", "approx_weight", "approx_bias"]


@pytest.mark.parametrize("mode", ["dense", "distill"])
def test_dense_and_distill_modes_return_the_exact_output(mode):
    for orig, layer, x in layers(ratio=0.9, mode=mode):
        torch.testing.assert_close(layer(x), orig(x), rtol=0, atol=0)


def test_ratio_zero_and_full_nm_are_exact(sampled):
    for cfg in (dict(ratio=0.0), dict(nm=(4, 4)), dict(ratio=0.0, granularity="channel")):
        for orig, layer, x in layers(**cfg) if cfg.get("granularity") != "channel" else [
                (conv(), NENNIConv2d.from_conv(conv(), **cfg), X_CONV)]:
            torch.testing.assert_close(layer(x), orig(x), rtol=0, atol=0)


def test_noise_mode_off_is_exact():
    for orig, layer, x in layers(ratio=0.9):
        layer.set_noise_mode("off")
        torch.testing.assert_close(layer(x), orig(x), rtol=0, atol=0)
        layer.set_noise_mode("train")
        layer.eval()
        torch.testing.assert_close(layer(x), orig(x), rtol=0, atol=0)
        layer.train()
        assert not torch.equal(layer(x), orig(x))


# ---- Eq. 2 ----------------------------------------------------------------------------------------

def _rows(t, conv_layer):
    return t.permute(0, 2, 3, 1).reshape(-1, t.shape[1]) if conv_layer else t.reshape(-1, t.shape[-1])


@pytest.mark.parametrize("inject", ["non_essential", "essential"])
@pytest.mark.parametrize("sel", [dict(ratio=0.75), dict(nm=(1, 4))], ids=["ratio", "nm"])
def test_noisy_output_is_eq2(sampled, inject, sel):
    for orig, layer, x in layers(inject=inject, **sel):
        is_conv = isinstance(layer, NENNIConv2d)
        with torch.no_grad():
            out, z, za = layer(x), orig(x), layer._approx(x)
        out, z, za = _rows(out, is_conv), _rows(z, is_conv), _rows(za, is_conv)
        n = z.shape[1]
        keep_n = layer.kept_count(n)
        assert keep_n == (n // 4 if "nm" in sel else (math.ceil(0.25 * n) if inject == "non_essential"
                                                        else n - math.ceil(0.75 * n)))
        # the kept set is the top (non_essential) or bottom (essential) of |z~|
        order = za.abs().argsort(dim=1, descending=(inject == "non_essential"), stable=True)
        if "ratio" in sel:
            kept_idx = order[:, :keep_n]
            ref = torch.zeros_like(z, dtype=torch.bool).scatter_(1, kept_idx, True)
        else:
            g = za.abs().reshape(za.shape[0], -1, 4)
            o = g.argsort(dim=2, descending=(inject == "non_essential"), stable=True)[:, :, :1]
            ref = torch.zeros_like(g, dtype=torch.bool).scatter_(2, o, True).reshape_as(z)
        expect = torch.where(ref, z, za)
        # approximated neurons are z~ exactly; kept ones the exact product (the sampled kernels may
        # accumulate in another order than nn.Conv2d / F.linear: float tolerance)
        assert torch.equal(out[~ref], za[~ref])
        torch.testing.assert_close(out, expect, rtol=1e-5, atol=1e-5)


def test_channel_granularity_one_decision_per_sample_and_channel(sampled):
    c = conv()
    layer = NENNIConv2d.from_conv(c, ratio=0.75, granularity="channel")
    with torch.no_grad():
        out, z, za = layer(X_CONV), c(X_CONV), layer._approx(X_CONV)
    exact = torch.isclose(out, z, rtol=1e-5, atol=1e-5).all(dim=(2, 3))  # [B, C]: whole channels exact ...
    approx = (out == za).all(dim=(2, 3))  # ... or whole channels approximated
    assert bool((exact ^ approx).all())
    assert exact.sum(1).tolist() == [4, 4]  # ceil(0.25 * 16)
    pooled = za.abs().mean(dim=(2, 3))
    top = pooled.topk(4, dim=1).indices.sort(dim=1).values
    assert torch.equal(exact.nonzero()[:, 1].view(2, 4), top)
    # the in-place inference blend (no grad) and the autograd path give the same output
    out_grad = layer(X_CONV.clone().requires_grad_(True))
    assert out_grad.requires_grad
    assert torch.equal(out_grad.detach(), out)


def _straight_line(layer, x, sampled):
    """The NENNI forward of the commit before the straight-through layers, written out with the public ops:
    the mask from mask_blend(z~, z~) (a wasted blend), then torch.where; the fused mask_blend(z, z~) on the
    dense non-essential path; the essential ablation as the complement of the inverted selection."""
    from fastnoise.ops import channel_conv2d, mask_blend, sampled_conv2d, sampled_linear
    from fastnoise.ops.mask_blend import keep_count
    is_conv = isinstance(layer, NENNIConv2d)
    dim = 1 if is_conv else -1
    exact = F.conv2d(x, layer.weight, layer.bias, padding=1) if is_conv else F.linear(x, layer.weight, layer.bias)
    za = layer._approx(x)
    feats = layer.out_channels if is_conv else layer.out_features
    sel = dict(nm=layer.nm) if layer.nm is not None else dict(ratio=layer.ratio)
    if layer.inject == "essential":
        inv = dict(nm=(layer.nm[1] - layer.nm[0], layer.nm[1])) if layer.nm is not None else \
            dict(ratio=round(1.0 - layer.ratio, 12))
    kept = (feats // layer.nm[1] * layer.nm[0] if layer.nm is not None else
            keep_count(layer.ratio, feats) if layer.inject == "non_essential" else feats - keep_count(inv["ratio"], feats))
    if kept == feats:
        return exact
    if is_conv and layer.granularity == "channel":
        ps = za.abs().mean(dim=(2, 3)) if layer.score == "abs" else za.mean(dim=(2, 3))
        keep = mask_blend(ps, ps, score=layer.score, **(inv if layer.inject == "essential" else sel))[1]
        keep = ~keep if layer.inject == "essential" else keep
        z = channel_conv2d(x, layer.weight, layer.bias, keep, padding=1) if sampled else exact
        return torch.where(keep[:, :, None, None], z, za)
    if layer.inject == "non_essential" and not sampled:
        return mask_blend(exact, za, score=layer.score, dim=dim, **sel)[0]
    if layer.inject == "essential":
        keep = ~mask_blend(za, za, score=layer.score, dim=dim, **inv)[1]
    else:
        keep = mask_blend(za, za, score=layer.score, dim=dim, **sel)[1]
    if sampled:
        z = sampled_conv2d(x, layer.weight, layer.bias, keep, padding=1) if is_conv else \
            sampled_linear(x, layer.weight, layer.bias, keep)
    else:
        z = exact
    return torch.where(keep, z, za)


@pytest.mark.parametrize("quantized", [False, True], ids=["float", "int4"])
@pytest.mark.parametrize("inject", ["non_essential", "essential"])
@pytest.mark.parametrize("sel", [dict(ratio=0.75), dict(nm=(1, 4)), dict(ratio=0.75, granularity="channel"),
                                 dict(nm=(2, 4), granularity="channel", score="signed")],
                         ids=["ratio", "nm", "channel", "channel-nm-signed"])
def test_noisy_output_is_bit_identical_to_the_straight_line_composition(sampled, inject, sel, quantized):
    """The straight-through layer (one selection, one blend) equals the earlier layer's composition bit for bit."""
    cfg = dict(inject=inject, **sel)
    pairs = [(conv(), X_CONV)] + ([] if "granularity" in sel else [(lin(), X_LIN)])
    for orig, x in pairs:
        layer = NENNIConv2d.from_conv(orig, **cfg) if isinstance(orig, torch.nn.Conv2d) else \
            NENNILinear.from_linear(orig, **cfg)
        if quantized:
            layer.quantize_()
        with torch.no_grad():
            out, expect = layer(x), _straight_line(layer, x, sampled)
        assert torch.equal(out, expect), (type(layer).__name__, cfg)
        xg = x.clone().requires_grad_(True)  # the autograd path (no in-place channel blend) too
        if not quantized:
            assert torch.equal(layer(xg).detach(), expect)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("score", ["abs", "signed"])
def test_channel_cpu_inference_fused_path(sampled, monkeypatch, dtype, score):
    """CPU inference at channel granularity runs the fused path (the pooled score from the approximation's
    epilogue, the kept channels written into z~: design note 59) and gives the autograd path's output."""
    import fastnoise.ops.sampled as sampled_ops
    calls = []
    into = sampled_ops._channel_conv2d_into
    monkeypatch.setattr(sampled_ops, "_channel_conv2d_into", lambda *a, **k: calls.append(1) or into(*a, **k))
    torch.manual_seed(3)
    c = torch.nn.Conv2d(16, 40, 3, padding=1).to(dtype)
    x = torch.randn(3, 16, 8, 8, dtype=dtype)
    for quantized in ([False, True] if dtype == torch.float32 else [False]):
        layer = NENNIConv2d.from_conv(c, ratio=0.9, granularity="channel", score=score)
        if quantized:
            layer.quantize_()
        with torch.no_grad():
            fused = layer(x)
        assert len(calls) == (1 if sampled else 0) * (1 + quantized)
        with torch.enable_grad():
            ref = layer(x)  # grad mode: the unfused path
        assert torch.equal(fused, ref.detach())


def test_noisy_gradients_reach_weight_and_input(sampled):
    for orig, layer, x in layers(ratio=0.5):
        x = x.clone().requires_grad_(True)
        layer(x).square().sum().backward()
        assert layer.weight.grad is not None and layer.weight.grad.abs().sum() > 0
        assert x.grad is not None and x.grad.abs().sum() > 0
        # the approximation is trainable in noisy mode too (before quantization)
        assert layer.approx_weight.grad is not None


# ---- distillation (seed Eq. 1) ---------------------------------------------------------------------

def test_distill_loss_is_eq1_and_trains_only_the_approximation():
    for orig, layer, x in layers(ratio=0.9, mode="distill"):
        out = layer(x)
        z, za = orig(x).detach(), layer._approx(x).detach()
        torch.testing.assert_close(layer.distill_loss.detach(), (z - za).pow(2).sum() / x.shape[0])
        assert not out.requires_grad
        layer.distill_loss.backward()
        assert layer.approx_weight.grad.abs().sum() > 0 and layer.approx_bias.grad.abs().sum() > 0
        assert layer.weight.grad is None and layer.bias.grad is None


def test_data_free_initialisation_is_the_least_squares_fit():
    torch.manual_seed(4)
    c = torch.nn.Conv2d(16, 32, 3, padding=1)
    layer = NENNIConv2d.from_conv(c, ratio=0.5, k=72)
    x = torch.randn(4, 16, 6, 6)
    with torch.no_grad():
        z, za = c(x), layer._approx(x)
    rel = float((z - za).pow(2).sum() / z.pow(2).sum())
    assert rel < 0.8  # 1 - k/d = 0.5 in expectation for isotropic inputs
    P = layer.proj.dense(torch.float64)
    W = c.weight.detach().reshape(32, -1).double()
    Wt = layer.approx_weight.detach().double()
    torch.testing.assert_close(Wt @ P @ P.t(), W @ P.t(), rtol=1e-4, atol=1e-5)  # the normal equations


def test_distillation_steps_reduce_the_error():
    c = conv()
    layer = NENNIConv2d.from_conv(c, ratio=0.9, k=16, mode="distill")
    opt = torch.optim.SGD([layer.approx_weight, layer.approx_bias], lr=0.2, momentum=0.9)
    g = torch.Generator().manual_seed(5)
    mix = torch.randn(8, 2, generator=g)
    x = torch.einsum("cr,brhw->bchw", mix, torch.randn(4, 2, 6, 5, generator=g)) + 0.5  # structured inputs
    losses = []
    for _ in range(40):
        opt.zero_grad()
        layer(x)
        (layer.distill_loss / layer.distill_scale).backward()
        opt.step()
        losses.append(float(layer.distill_loss.detach()))
    assert losses[-1] < 0.5 * losses[0], losses


# ---- INT4 ----------------------------------------------------------------------------------------

def test_quantize_int4_forward_and_finetune_gradients(sampled):
    for orig, layer, x in layers(ratio=0.5):
        layer.quantize_()
        assert layer.quantized and layer.approx_wq.dtype == torch.int8
        assert int(layer.approx_wq.min()) >= -8 and int(layer.approx_wq.max()) <= 7
        assert not layer.approx_weight.requires_grad
        with torch.no_grad():
            y_int4 = layer(x)
        xg = x.clone().requires_grad_(True)
        y_train = layer(xg)  # dequantized (frozen) approximation: gradients reach x through P
        torch.testing.assert_close(y_train.detach(), y_int4, rtol=1e-5, atol=1e-5)
        y_train.sum().backward()
        assert xg.grad.abs().sum() > 0 and layer.weight.grad is not None
        assert layer.approx_weight.grad is None


# ---- state_dict ----------------------------------------------------------------------------------

def test_state_dict_round_trip_including_int4():
    src = NENNIConv2d.from_conv(conv(), ratio=0.75, k=12, seed=5)
    with torch.no_grad():
        src.approx_weight.add_(0.1)
    src.quantize_()
    sd = src.state_dict()
    dst = NENNIConv2d.from_conv(torch.nn.Conv2d(8, 16, 3, padding=1), ratio=0.75, k=12, seed=5)
    dst.load_state_dict(sd)
    assert dst.quantized
    with torch.no_grad():
        torch.testing.assert_close(dst(X_CONV), src(X_CONV), rtol=0, atol=0)


@pytest.mark.parametrize("change,word", [(dict(k=13), "k"), (dict(ratio=0.5), "ratio"), (dict(seed=6), "seed"),
                                         (dict(granularity="channel"), "granularity")])
def test_loading_another_configuration_is_an_error(change, word):
    cfg = dict(ratio=0.75, k=12, seed=5)
    sd = NENNIConv2d.from_conv(conv(), **cfg).state_dict()
    other = NENNIConv2d.from_conv(conv(), **{**cfg, **change})
    with pytest.raises(ValueError, match=f"another NENNI configuration.*{word}"):
        other.load_state_dict(sd)


def test_loading_a_plain_state_dict_is_an_error():
    layer = NENNIConv2d.from_conv(conv(), ratio=0.5)
    with pytest.raises(ValueError, match="no NENNI configuration"):
        layer.load_state_dict(conv().state_dict(), strict=False)


# ---- torch.compile ---------------------------------------------------------------------------------

def test_torch_compile_fullgraph_matches_eager():
    torch.manual_seed(3)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ReLU(),
                                torch.nn.Conv2d(8, 16, 3, padding=1), torch.nn.ReLU(), torch.nn.Flatten(),
                                torch.nn.Linear(16 * 16, 32), torch.nn.ReLU(), torch.nn.Linear(32, 4))
    fastnoise.convert(model, "nenni", ratio=0.75, k=8)
    x = torch.randn(2, 3, 4, 4)
    with torch.no_grad():
        eager = model(x)
        compiled = torch.compile(model, fullgraph=True, backend="aot_eager")(x)
    torch.testing.assert_close(compiled, eager)


# ---- bad input -----------------------------------------------------------------------------------

@pytest.mark.parametrize("cfg,exc,msg", [
    (dict(ratio=0.5, k=0), ValueError, "k must be"),
    (dict(ratio=0.5, k=-3), ValueError, "k must be"),
    (dict(ratio=0.5, k=2.5), TypeError, "k must be an int"),
    (dict(ratio=1.0), ValueError, r"ratio must be a finite number in \[0.0, 1.0\)"),
    (dict(ratio=-0.1), ValueError, "ratio must be"),
    (dict(ratio=float("nan")), ValueError, "ratio must be"),
    (dict(ratio="0.5"), TypeError, "ratio must be a real number"),
    (dict(nm=(3, 2)), ValueError, "nm must be a pair"),
    (dict(nm=(0, 4)), ValueError, "nm must be a pair"),
    (dict(nm="2:4"), ValueError, "nm must be a pair"),
    (dict(nm=(2, 3)), ValueError, "M must divide"),
    (dict(ratio=0.5, nm=(2, 4)), ValueError, "either ratio or nm"),
    (dict(), ValueError, "one of ratio"),
    (dict(ratio=0.5, granularity="row"), ValueError, "granularity must be one of"),
    (dict(ratio=0.5, score="max"), ValueError, "score must be one of"),
    (dict(ratio=0.5, inject="all"), ValueError, "inject must be one of"),
    (dict(ratio=0.5, mode="train"), ValueError, "mode must be one of"),
    (dict(ratio=0.5, seed=-1), ValueError, "seed must be"),
])
def test_bad_configuration(cfg, exc, msg):
    with pytest.raises(exc, match=msg):
        NENNIConv2d.from_conv(conv(), **cfg)


def test_bad_layers_and_inputs():
    with pytest.raises(TypeError, match="conv must be a torch.nn.Conv2d"):
        NENNIConv2d.from_conv(lin(), ratio=0.5)
    with pytest.raises(TypeError, match="linear must be a torch.nn.Linear"):
        NENNILinear.from_linear(conv(), ratio=0.5)
    with pytest.raises(ValueError, match="groups=2"):
        NENNIConv2d.from_conv(conv(groups=2), ratio=0.5)
    with pytest.raises(ValueError, match="granularity must be 'position' for NENNILinear"):
        NENNILinear.from_linear(lin(), ratio=0.5, granularity="channel")
    layer = NENNIConv2d.from_conv(conv(), ratio=0.5)
    with pytest.raises(ValueError, match=r"x must be \[B, 8, H, W\]"):
        layer(torch.randn(2, 7, 5, 5))
    with pytest.raises(TypeError, match="x must be a floating tensor"):
        layer(torch.zeros(2, 8, 5, 5, dtype=torch.int64))
    with pytest.raises(ValueError, match="mode must be one of"):
        layer.set_mode("noise")


def test_empty_and_non_contiguous_inputs(sampled):
    for orig, layer, x in layers(ratio=0.5):
        empty = x[:0]
        assert layer(empty).shape == orig(empty).shape
        nc = x.transpose(0, -1).contiguous().transpose(0, -1)
        assert not nc.is_contiguous()
        torch.testing.assert_close(layer(nc), layer(x.contiguous()))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (the CUDA kernels are compile-checked only here)")
def test_cuda_matches_cpu_and_distills():
    for orig, layer, x in layers(ratio=0.75):
        with torch.no_grad():
            y_cpu = layer(x)
            layer_c = layer.cuda()
            y_gpu = layer_c(x.cuda()).cpu()
        torch.testing.assert_close(y_gpu, y_cpu, rtol=1e-4, atol=1e-4)
        layer_c.set_mode("distill")
        layer_c(x.cuda())
        layer_c.distill_loss.backward()
        assert layer_c.approx_weight.grad.is_cuda and layer_c.weight.grad is None
