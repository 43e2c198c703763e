"""The NENNI method (fastnoise/methods/nenni.py): conversion, the recipes in fastnoise.nenni, and its cost model
in fastnoise.bitops (the documented convention, checked by hand on single layers and on ResNet-18)."""
import copy

import pytest
import torch

import fastnoise
import fastnoise.nenni as nenni
from fastnoise.nn import NENNIConv2d, NENNILinear, nenni_layers
from nenni_models import NestedCNN, resnet18


def test_resnet18_conversion_skips_stem_and_classifier():
    torch.manual_seed(0)
    model = resnet18()
    ref = copy.deepcopy(model).eval()
    out = fastnoise.convert(model, "nenni", ratio=0.9, mode="dense")
    assert out is model
    names = [n for n, _ in nenni_layers(model)]
    convs = [n for n, m in ref.named_modules() if isinstance(m, torch.nn.Conv2d)]
    assert len(names) == len(convs) - 1  # every conv but the stem (shortcut 1x1 convs included)
    assert convs[0] not in names and all(isinstance(m, NENNIConv2d) for _, m in nenni_layers(model))
    assert isinstance(dict(model.named_modules())[[n for n, m in ref.named_modules()
                                                   if isinstance(m, torch.nn.Linear)][-1]], torch.nn.Linear)
    seeds = [m.seed for _, m in nenni_layers(model)]
    assert seeds == list(range(len(seeds)))
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(model.eval()(x), ref(x), rtol=0, atol=0)


def test_nested_modules_and_linears():
    model = NestedCNN()
    fastnoise.convert(model, "nenni", ratio=0.5)
    kinds = {n: type(m).__name__ for n, m in nenni_layers(model)}
    # stem skipped (first), depthwise conv ineligible, last Linear skipped (classifier)
    assert kinds == {"body.0.convs.0": "NENNIConv2d", "body.0.convs.1": "NENNIConv2d", "head.1": "NENNILinear"}
    assert model(torch.randn(3, 1, 8, 8)).shape == (3, 10)


def test_convert_linear_false_and_no_skips():
    model = fastnoise.convert(NestedCNN(), "nenni", ratio=0.5, convert_linear=False, skip_first=False)
    assert sorted(n for n, _ in nenni_layers(model)) == ["body.0.convs.0", "body.0.convs.1", "stem"]


def test_explicit_layers_and_ineligible_layers():
    model = fastnoise.convert(NestedCNN(), "nenni", nm=(1, 2), layers=["stem", "head.3"])
    assert [n for n, _ in nenni_layers(model)] == ["stem", "head.3"]
    assert isinstance(model.head[3], NENNILinear) and model.head[3].nm == (1, 2)
    model = NestedCNN()
    with pytest.raises(ValueError, match=r"layer 'head.3': nm: M must divide .* \(10\)"):
        fastnoise.convert(model, "nenni", nm=(2, 4), layers=["stem", "head.3"])
    assert not nenni_layers(model)  # nothing swapped when one layer fails
    with pytest.raises(ValueError, match=r"'body.0.dw' cannot be converted.*groups=16"):
        fastnoise.convert(NestedCNN(), "nenni", ratio=0.5, layers=["body.0.dw"])
    with pytest.raises(ValueError, match=r"'body.1' cannot be converted.*MaxPool2d"):
        fastnoise.convert(NestedCNN(), "nenni", ratio=0.5, layers=["body.1"])
    with pytest.raises(ValueError, match="no module named 'nope'"):
        fastnoise.convert(NestedCNN(), "nenni", ratio=0.5, layers=["nope"])


def test_converting_twice_is_an_error():
    model = fastnoise.convert(NestedCNN(), "nenni", ratio=0.5)
    with pytest.raises(ValueError, match="already converted to NENNI"):
        fastnoise.convert(model, "nenni", ratio=0.9)


def test_bad_conversion_options():
    with pytest.raises(ValueError, match="ratio must be"):
        fastnoise.convert(NestedCNN(), "nenni", ratio=1.5)
    with pytest.raises(ValueError, match="k must be"):
        fastnoise.convert(NestedCNN(), "nenni", ratio=0.5, k=0)
    with pytest.raises(ValueError, match=r"method 'nenni' found nothing to convert in Sequential: it looks for "
                                         r"torch.nn.Conv2d \(groups=1, zero padding\) and torch.nn.Linear"):
        fastnoise.convert(torch.nn.Sequential(torch.nn.Linear(3, 3)), "nenni", ratio=0.5)
    with pytest.raises(ValueError, match=r"unknown option 'ratoi'; valid options: ratio, nm, k, granularity"):
        fastnoise.convert(NestedCNN(), "nenni", ratoi=0.5)
    with pytest.raises(ValueError, match=r"granularity must be one of \['position', 'channel'\], got 'pixel'"):
        fastnoise.convert(NestedCNN(), "nenni", ratio=0.5, granularity="pixel")
    with pytest.raises(TypeError, match="skip_first must be true or false"):
        fastnoise.convert(NestedCNN(), "nenni", ratio=0.5, skip_first=1)
    with pytest.raises(ValueError, match="one of ratio .* or nm=.* is required"):
        fastnoise.convert(NestedCNN(), "nenni")


# ---- conversion guarantees (issue 16, item 3): each fails on the commit before the Method protocol -------

class Shared(torch.nn.Module):
    """One conv reachable under two names (a and b), and a block shared by two parents."""

    def __init__(self):
        super().__init__()
        self.stem = torch.nn.Conv2d(1, 8, 3, padding=1)
        self.a = torch.nn.Conv2d(8, 8, 3, padding=1)
        self.b = self.a
        block = torch.nn.Sequential(torch.nn.Conv2d(8, 8, 3, padding=1), torch.nn.ReLU())
        self.left, self.right = torch.nn.Sequential(block), torch.nn.Sequential(block)

    def forward(self, x):
        x = self.b(self.a(self.stem(x)))
        return self.right(self.left(x))


def test_a_module_used_under_several_names_is_converted_once_and_stays_shared():
    model = fastnoise.convert(Shared(), "nenni", ratio=0.5, k=8)
    assert isinstance(model.a, NENNIConv2d) and model.a is model.b
    assert isinstance(model.left[0][0], NENNIConv2d) and model.left[0] is model.right[0]
    assert model.left[0][0] is model.right[0][0]
    assert [m.seed for _, m in nenni_layers(model)] == [0, 1]  # two unique layers converted
    assert model(torch.randn(2, 1, 6, 6)).shape == (2, 8, 6, 6)


def test_converting_the_root_returns_the_new_layer_not_a_child_named_empty():
    lin = torch.nn.Linear(6, 4)
    out = fastnoise.convert(lin, "nenni", ratio=0.5, layers=[""])
    assert isinstance(out, NENNILinear) and out.weight is lin.weight
    assert "" not in dict(out.named_children()) and "" not in dict(lin.named_children())
    x = torch.randn(3, 6)
    with torch.no_grad():
        assert out(x).shape == (3, 4)


def test_scripted_modules_are_refused():
    scripted = torch.jit.script(torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.ReLU(), torch.nn.Conv2d(4, 4, 3)))
    with pytest.raises(TypeError, match="cannot convert a scripted module .* convert the eager model"):
        fastnoise.convert(scripted, "nenni", ratio=0.5, skip_first=False)
    inner = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.jit.script(torch.nn.Conv2d(4, 4, 3)))
    with pytest.raises(TypeError, match="its submodule '1' is a RecursiveScriptModule"):
        fastnoise.convert(inner, "nenni", ratio=0.5, skip_first=False)


def test_model_state_dict_round_trip_and_mismatch():
    torch.manual_seed(0)
    a = fastnoise.convert(NestedCNN(), "nenni", ratio=0.5, k=8)
    nenni.quantize_(a)
    b = fastnoise.convert(NestedCNN(), "nenni", ratio=0.5, k=8)
    b.load_state_dict(a.state_dict())
    x = torch.randn(2, 1, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(b(x), a(x), rtol=0, atol=0)
    c = fastnoise.convert(NestedCNN(), "nenni", ratio=0.9, k=8)
    with pytest.raises(ValueError, match="ratio: state_dict has 0.5, layer has 0.9"):
        c.load_state_dict(a.state_dict())
    with pytest.raises(ValueError, match="no NENNI configuration"):
        fastnoise.convert(NestedCNN(), "nenni", ratio=0.5, k=8).load_state_dict(NestedCNN().state_dict())


def _loader(n=4, bs=8):
    g = torch.Generator().manual_seed(0)
    return [(torch.randn(bs, 1, 8, 8, generator=g), torch.randint(0, 10, (bs,), generator=g)) for _ in range(n)]


def test_distill_recipe_runs_and_reduces_the_error():
    torch.manual_seed(0)
    model = fastnoise.convert(NestedCNN(), "nenni", ratio=0.9, k=8)
    w0 = {n: p.detach().clone() for n, p in model.named_parameters()}
    loader = _loader()
    before = nenni.approx_error(model, loader)
    hist = nenni.distill(model, loader, epochs=3, finetune_epochs=0, quantize=False, progress=False)
    after = nenni.approx_error(model, loader)
    assert set(before) == {"body.0.convs.0", "body.0.convs.1", "head.1"}
    assert all(after[n] < before[n] for n in before), (before, after)
    assert hist["distill_loss"][-1] < hist["distill_loss"][0]
    for n, p in model.named_parameters():  # distillation never touches the original weights
        if "approx" not in n:
            assert torch.equal(p, w0[n]), n
    hist = nenni.distill(model, loader, epochs=0, finetune_epochs=1, quantize=True, progress=False)
    assert all(m.quantized and m.mode == "noisy" for _, m in nenni_layers(model))
    assert len(hist["finetune_loss"]) == 1
    assert not torch.equal(model.head[1].weight, w0["head.1.weight"])  # fine-tuned in noisy mode
    rec = nenni.topk_recall(model, loader, ratio=0.9)
    assert set(rec) == {"body.0.convs.0", "body.0.convs.1", "head.1", "mean"}
    assert all(0.0 <= v <= 1.0 for v in rec.values())


def test_recipe_bad_input():
    with pytest.raises(ValueError, match="no NENNI layers"):
        nenni.distill(NestedCNN(), _loader(), epochs=1, progress=False)
    model = fastnoise.convert(NestedCNN(), "nenni", ratio=0.9, k=8)
    with pytest.raises(ValueError, match="epochs must be"):
        nenni.distill(model, _loader(), epochs=-1, progress=False)
    with pytest.raises(ValueError, match="lr must be"):
        nenni.distill(model, _loader(), lr=0.0, progress=False)
    with pytest.raises(ValueError, match="ratio must be"):
        nenni.topk_recall(model, _loader(), ratio=1.0)


def test_finetune_orders_and_adversarial_finetuning():
    torch.manual_seed(0)
    model = fastnoise.convert(NestedCNN(), "nenni", ratio=0.9, k=8)
    w_approx = model.head[1].approx_weight.detach().clone()
    calls = []

    def attack(m, x, y):  # records its use, returns a shifted input
        calls.append(x.shape[0])
        return (x + 0.1).detach()

    nenni.distill(model, _loader(), epochs=0, finetune_epochs=1, attack=attack, progress=False)
    assert calls == [8, 8, 8, 8]  # once per fine-tuning batch
    assert not torch.equal(model.head[1].approx_weight, w_approx)  # W~ trained end to end, then INT4
    assert all(m.quantized for _, m in nenni_layers(model))
    with pytest.raises(ValueError, match="already quantized"):
        nenni.distill(model, _loader(), epochs=0, finetune_epochs=1, progress=False)
    wq = model.head[1].approx_wq.clone()
    w_head = model.head[1].weight.detach().clone()
    nenni.distill(model, _loader(), epochs=0, finetune_epochs=1, finetune_approx=False, progress=False)
    assert torch.equal(model.head[1].approx_wq, wq)  # the seed's order: W~ frozen after INT4
    assert not torch.equal(model.head[1].weight, w_head)
    with pytest.raises(TypeError, match="attack must be a callable"):
        nenni.distill(model, _loader(), epochs=0, finetune_approx=False, attack=3, progress=False)


def test_pgd_attack_stays_in_the_ball_and_raises_the_loss():
    torch.manual_seed(0)
    model = fastnoise.convert(NestedCNN(), "nenni", ratio=0.5, k=8).train()
    x, y = torch.rand(8, 1, 8, 8), torch.randint(0, 10, (8,))
    xa = nenni.pgd_attack(0.1, 0.05, 5)(model, x, y)
    assert model.training  # restored
    assert (xa - x).abs().max() <= 0.1 + 1e-6 and xa.min() >= 0 and xa.max() <= 1
    with torch.no_grad():
        model.eval()
        assert torch.nn.functional.cross_entropy(model(xa), y) > torch.nn.functional.cross_entropy(model(x), y)
    with pytest.raises(ValueError, match="steps must be"):
        nenni.pgd_attack(0.1, 0.05, 0)
    with pytest.raises(ValueError, match="alpha must be"):
        nenni.pgd_attack(0.1, float("nan"), 3)


def test_essential_gradients_detach_the_approximation_only():
    from fastnoise.ops import mask_blend
    torch.manual_seed(0)
    layer = NENNILinear.from_linear(torch.nn.Linear(16, 12), ratio=0.5, k=8)
    x = torch.randn(5, 16, requires_grad=True)
    model = torch.nn.Sequential(layer)
    out = model(x)
    (g_full,) = torch.autograd.grad(out.sum(), x)
    with nenni.essential_gradients(model):
        out2 = model(x)
        (g_ess,) = torch.autograd.grad(out2.sum(), x)
    assert layer.approx_gradient  # restored
    torch.testing.assert_close(out2, out, rtol=0, atol=0)  # same forward values
    with torch.no_grad():
        za = layer._approx(x)
        keep = mask_blend(za, za, ratio=0.5)[1]
    torch.testing.assert_close(g_ess, keep.float() @ layer.weight.detach())  # exact neurons only
    assert not torch.allclose(g_full, g_ess)
    with pytest.raises(ValueError, match="no NENNI layers"):
        with nenni.essential_gradients(torch.nn.Linear(2, 2)):
            pass


def test_nenni_models_are_deterministic_for_the_harness():
    from fastnoise.nn import GaussianNoise
    from fastnoise.nn._mode import is_randomized
    torch.manual_seed(0)
    model = fastnoise.convert(NestedCNN(), "nenni", ratio=0.5, k=8).eval()
    x = torch.randn(3, 1, 8, 8)
    with torch.no_grad():
        assert torch.equal(model(x), model(x))  # z~ - z depends on x only
    assert not is_randomized(model)
    assert is_randomized(torch.nn.Sequential(GaussianNoise(0.1), model))


# ---- cost model: fastnoise.bitops ------------------------------------------------------------------

def test_bitops_exact_layers():
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.Flatten(), torch.nn.Linear(8 * 25, 4))
    r = fastnoise.bitops(model, (2, 3, 5, 5))
    conv_macs = 8 * 25 * 3 * 9
    lin_macs = 8 * 25 * 4
    assert [row["macs"] for row in r["layers"]] == [conv_macs, lin_macs]
    assert r["total"] == r["dense_total"] == (conv_macs + lin_macs) * 32 * 32
    assert fastnoise.bitops(model, (1, 3, 5, 5), weight_bits=8, act_bits=8)["total"] == (conv_macs + lin_macs) * 64


def test_bitops_nenni_layer_convention():
    conv = torch.nn.Conv2d(16, 32, 3, padding=1)
    layer = NENNIConv2d.from_conv(conv, ratio=0.9, k=24)
    r = fastnoise.bitops(layer, (1, 16, 6, 6))
    row = r["layers"][0]
    positions, n, d, k = 36, 32, 144, 24
    kept = 4 / 32  # ceil(0.1 * 32)
    assert row["kept_fraction"] == kept
    assert row["exact"] == pytest.approx(kept * positions * n * d * 32 * 32)
    assert row["projection"] == pytest.approx(positions * k * d / 3 * 32)
    assert row["approx"] == pytest.approx(positions * n * k * 4 * 32)
    assert r["reduction"] == pytest.approx(row["total"] / (positions * n * d * 1024) - 1)
    lin = NENNILinear.from_linear(torch.nn.Linear(64, 40), nm=(1, 8), k=16)
    row = fastnoise.bitops(lin, (3, 64))["layers"][0]
    assert row["kept_fraction"] == 1 / 8
    assert row["total"] == pytest.approx(40 * 64 * 1024 / 8 + 16 * 64 / 3 * 32 + 40 * 16 * 4 * 32)


def test_bitops_resnet18_totals_and_table():
    model = resnet18()
    dense = fastnoise.bitops(model, (1, 3, 32, 32))
    macs = sum(row["macs"] for row in dense["layers"])
    assert 5.5e8 < macs < 5.6e8  # the usual 0.56 GMACs of CIFAR ResNet-18
    conv = fastnoise.convert(copy.deepcopy(model), "nenni", ratio=0.9, convert_linear=False)
    r = fastnoise.bitops(conv, (1, 3, 32, 32))
    assert r["dense_total"] == pytest.approx(dense["total"])
    assert -0.90 < r["reduction"] < -0.80
    table = nenni.bitops_table(model, (1, 3, 32, 32))
    assert "-82.6%" in table and "-91.6%" in table and "r = 0.99" in table


def test_bitops_bad_input():
    with pytest.raises(ValueError, match="input_shape must be"):
        fastnoise.bitops(torch.nn.Linear(2, 2), (0, 2))
    with pytest.raises(TypeError, match="model must be"):
        fastnoise.bitops("resnet", (1, 2))
    with pytest.raises(ValueError, match="weight_bits must be"):
        fastnoise.bitops(torch.nn.Linear(2, 2), (1, 2), weight_bits=0)
