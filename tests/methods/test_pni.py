"""PNI (fastnoise/methods/pni.py): conversion, state dict, resume, alpha without weight decay, the
0.5 clean + 0.5 adv loss, bad options, the paper config."""
import pytest
import torch
import torch.nn.functional as F

import fastnoise
from fastnoise.methods import get
from fastnoise.methods._common import EnsembleLoss
from fastnoise.nn import PNIConv2d, PNILinear

from method_checks import one_thread  # noqa: F401  (autouse: one intra-op thread)
from method_checks import (check_conversion, check_paper_config_starts, check_resume_bit_identical,
                           check_state_dict_round_trip, small_cnn)



def test_pni_converts_every_conv_and_linear():
    # small_cnn: 3 convs + 2 linears; resnet18: 20 convs (17 + 3 shortcuts) + fc
    check_conversion("pni", {"seed": 0}, (PNIConv2d, PNILinear), 5, 21)
    m = fastnoise.convert(small_cnn(), "pni", linear=False, granularity="layer", alpha_init=0.1)
    layers = [l for l in m.modules() if isinstance(l, PNIConv2d)]
    assert len(layers) == 3 and all(l.alpha.shape == (1,) and float(l.alpha) == pytest.approx(0.1) for l in layers)
    assert not any(isinstance(l, PNILinear) for l in m.modules())
    ev = get("pni").evaluation
    assert ev.stochastic and ev.draw == "per_batch" and ev.inference is None


def test_pni_state_dict_round_trip():
    check_state_dict_round_trip("pni", {"seed": 3})


def test_pni_resume_is_bit_identical(tmp_path):
    w = check_resume_bit_identical(tmp_path, "pni", {"seed": 1})
    assert any(k.endswith("alpha") for k in w)


def test_pni_alpha_is_excluded_from_weight_decay_and_loss_mixes_clean_and_adv():
    torch.manual_seed(0)
    a = fastnoise.convert(small_cnn(), "pni", seed=0)
    b = fastnoise.convert(small_cnn(), "pni", seed=0)
    b.load_state_dict(a.state_dict())
    x, xa, y = torch.rand(4, 1, 8, 8), torch.rand(4, 1, 8, 8), torch.tensor([0, 1, 2, 3])
    alphas_b = [m.alpha for m in b.modules() if isinstance(m, (PNIConv2d, PNILinear))]
    others_b = [p for p in b.parameters() if all(p is not q for q in alphas_b)]
    oa = torch.optim.SGD(a.parameters(), lr=0.1, momentum=0.9, weight_decay=0.5)
    ob = torch.optim.SGD([{"params": others_b}, {"params": alphas_b, "weight_decay": 0.0}], lr=0.1, momentum=0.9,
                         weight_decay=0.5)
    loss, logits = EnsembleLoss(0.5, (PNIConv2d, PNILinear)).update(a, a, oa, x, xa, y)
    ref = 0.5 * F.cross_entropy(b(xa), y) + 0.5 * F.cross_entropy(b(x), y)  # the same draws: same streams
    ob.zero_grad()
    ref.backward()
    ob.step()
    assert float(loss) == pytest.approx(float(ref), rel=1e-6)
    for (n, pa), pb in zip(a.named_parameters(), b.parameters()):
        torch.testing.assert_close(pa, pb, rtol=1e-6, atol=1e-7, msg=n)
    assert any(not torch.equal(p, q) for p, q in zip(a.parameters(), small_cnn().parameters()))


def test_pni_bad_options_name_the_option():
    for bad, msg in (({"alpha_init": -0.1}, "alpha_init must be a finite number >= 0.0"),
                     ({"granularity": "pixel"}, r"granularity must be one of \['layer', 'channel', 'element'\]"),
                     ({"site": "bias"}, r"site must be one of \['weight', 'input', 'output'\]"),
                     ({"site": "input", "granularity": "element"}, "granularity 'element' needs site 'weight'"),
                     ({"clean_weight": 1.5}, "clean_weight must be a finite number >= 0.0 and <= 1.0")):
        with pytest.raises(ValueError, match=msg):
            fastnoise.convert(small_cnn(), "pni", **bad)


def test_pni_paper_config_starts(tmp_path):
    check_paper_config_starts(tmp_path, "cifar10_pni", "pni")
