"""fastnoise.attacks: torchattacks wrappers, noise kept on under attack, EOT, counts, evaluate(), reports."""
import json

import pytest
import torch
import torch.nn as nn

import torchattacks  # noqa: E402  (fastnoise[eval]; make setup installs it)

from fastnoise.attacks import ATTACKS, EOTModel, evaluate, format_table, make_attack, write_reports  # noqa: E402
from fastnoise.nn import NoiseModule, noise_mode  # noqa: E402

@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny models: intra-op threads only add contention on a shared CPU (measured 8 s -> 0.2 s for one test)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


EXPECTED = ["pgd20", "fgsm", "mifgsm", "cw_l2", "autoattack", "autoattack_rand", "deepfool", "spsa", "square",
            "bim", "difgsm", "tifgsm"]


class TorchNoise(NoiseModule):
    """x + sigma * N(0, 1) from the torch RNG; records what it saw (training flag, noise on, output)."""

    def __init__(self, sigma=0.1):
        super().__init__()
        self.sigma = sigma
        self.log = []

    def forward(self, x):
        out = x + self.sigma * torch.randn_like(x) if self.noise_active else x
        self.log.append((self.training, self.noise_active, out.detach().clone()))
        return out


class GradScramble(NoiseModule):
    """x + c * xi * sin(w x) / w with xi = ±1 per element: E[output] = x (a smooth expectation) and the value
    barely changes (|.| <= c/w), but a single draw's input gradient is diag(1 + c xi cos(w x)): its sign is
    random. Averaging n draws shrinks the random part by sqrt(n)."""

    def __init__(self, c=6.0, w=1000.0):
        super().__init__()
        self.c, self.w = c, w

    def forward(self, x):
        if not self.noise_active:
            return x
        xi = torch.randint(0, 2, x.shape, dtype=x.dtype, device=x.device) * 2 - 1
        return x + self.c * xi * torch.sin(self.w * x) / self.w


def small_cnn(channels=1, classes=10, seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(channels, 4, 3, padding=1), nn.ReLU(), nn.Flatten(),
                         nn.Linear(4 * 8 * 8, classes))


def data(n=16, channels=1, model=None, seed=1):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, channels, 8, 8, generator=g)
    y = model(x).argmax(1).detach() if model is not None else torch.randint(0, 10, (n,), generator=g)
    return x, y


# ---------------------------------------------------------------- registry and argument checks
def test_registry_has_every_attack():
    assert list(ATTACKS) == EXPECTED
    assert ATTACKS["pgd20"].default_steps == 20 and ATTACKS["mifgsm"].default_steps == 5
    assert ATTACKS["cw_l2"].default_steps == 1000


def test_make_attack_configures_torchattacks():
    m = small_cnn()
    pgd = make_attack("pgd20", m, 8 / 255).torchattack
    assert isinstance(pgd, torchattacks.PGD) and pgd.steps == 20 and pgd.alpha == pytest.approx(2 / 255)
    cw = make_attack("cw_l2", m, 0.0).torchattack
    assert isinstance(cw, torchattacks.CW) and cw.steps == 1000 and cw.lr == 0.01
    aa = make_attack("autoattack", m, 0.1, seed=3).torchattack
    assert aa.version == "standard" and aa.seed == 3
    rand = make_attack("autoattack_rand", m, 0.1, eot=7)
    assert rand.torchattack.version == "rand"
    assert [a.eot_iter for a in rand.torchattack._autoattack.attacks] == [7, 7]
    assert [a.steps for a in rand.torchattack._autoattack.attacks] == [100, 100]  # as the reference AutoAttack
    assert [getattr(a, "steps", None) for a in aa._autoattack.attacks] == [100, 100, 100, None]
    assert rand.model.n == 1  # EOT inside APGD, not twice
    assert make_attack("pgd20", m, 0.1, eot=5).model.n == 5
    assert make_attack("mifgsm", m, 0.1).torchattack.steps == 5


def test_make_attack_bad_arguments():
    m = small_cnn()
    with pytest.raises(ValueError, match=r"attack must be one of \[.*'pgd20'.*'tifgsm'\]"):
        make_attack("pgd", m, 0.1)
    with pytest.raises(ValueError, match="eps must be a finite number >= 0"):
        make_attack("pgd20", m, -0.1)
    with pytest.raises(ValueError, match="eps"):
        make_attack("pgd20", m, float("nan"))
    with pytest.raises(TypeError, match="eps"):
        make_attack("pgd20", m, "0.1")
    with pytest.raises(ValueError, match="eot must be an int >= 1"):
        make_attack("pgd20", m, 0.1, eot=0)
    with pytest.raises(ValueError, match="steps must be None for attack 'fgsm'"):
        make_attack("fgsm", m, 0.1, steps=3)
    with pytest.raises(ValueError, match="steps must be an int >= 1"):
        make_attack("pgd20", m, 0.1, steps=0)
    with pytest.raises(TypeError, match="model must be a torch.nn.Module"):
        make_attack("pgd20", lambda x: x, 0.1)


FAST = {"autoattack": 3, "autoattack_rand": 3, "cw_l2": 10, "deepfool": 3, "square": 30, "spsa": 1, "pgd20": 5, "bim": 3, "difgsm": 3, "tifgsm": 2}


@pytest.mark.parametrize("name", EXPECTED)
def test_every_attack_runs_and_respects_the_budget(name):
    ch = 3 if name == "tifgsm" else 1
    m = small_cnn(ch)
    x, y = data(6, ch, m)
    eps = 0.1
    atk = make_attack(name, m, eps, steps=FAST.get(name), eot=2)
    adv = atk(x, y)
    assert adv.shape == x.shape and adv.dtype == x.dtype
    assert float(adv.min()) >= 0 and float(adv.max()) <= 1
    if ATTACKS[name].bounded:
        assert float((adv - x).abs().max()) <= eps + 1e-6
    assert atk.forward_calls > 0 and atk.forward_samples >= atk.forward_calls
    empty = atk(x[:0], y[:0])
    assert empty.shape == (0, ch, 8, 8)


def test_tifgsm_rejects_grayscale_clearly():
    m = small_cnn(1)
    x, y = data(2, 1, m)
    with pytest.raises(ValueError, match="3-channel images only, got x with 1 channels"):
        make_attack("tifgsm", m, 0.1)(x, y)


def test_non_contiguous_inputs():
    m = small_cnn()
    x, y = data(6, 1, m)
    xt = x.transpose(2, 3)
    assert not xt.is_contiguous()
    torch.manual_seed(0)
    a = make_attack("pgd20", m, 0.1, steps=3)(xt, y)
    torch.manual_seed(0)
    b = make_attack("pgd20", m, 0.1, steps=3)(xt.contiguous(), y)
    assert torch.equal(a, b)


# ---------------------------------------------------------------- bitwise equality with torchattacks
def test_pgd_is_bitwise_torchattacks_on_a_deterministic_model():
    m = small_cnn()
    x, y = data(24, 1, seed=5)
    eps = 0.05
    torch.manual_seed(0)
    ref = torchattacks.PGD(m, eps=eps, alpha=eps / 4, steps=20, random_start=True)(x, y)
    torch.manual_seed(0)
    ours = make_attack("pgd20", m, eps, eot=1)(x, y)
    assert torch.equal(ours, ref)
    assert not torch.equal(ref, x)
    ref_acc = float((m(ref).argmax(1) == y).float().mean())
    res = evaluate(m, (x, y), ["pgd20"], eps, seed=0, sanity_eps=None)
    (row,) = res["rows"]
    assert row["protocol"] == "deterministic" and row["accuracy"]["draws"] == [ref_acc]
    assert row["forward_calls"] == 20 and row["forwards_per_sample"] == 20


# ---------------------------------------------------------------- noise stays on while torchattacks attacks
def test_noise_stays_on_while_torchattacks_attacks():
    noise = TorchNoise(0.2)
    m = nn.Sequential(noise, small_cnn())
    m.train()
    x, y = data(4)
    atk = make_attack("fgsm", m, 0.1, eot=5)
    atk(x, y)
    assert len(noise.log) == 5 == atk.forward_calls
    assert all(training is False for training, _, _ in noise.log)  # torchattacks switched to eval() ...
    assert all(active for _, active, _ in noise.log)              # ... and the noise stayed on
    outs = [o for _, _, o in noise.log]  # the same input x went through the 5 EOT passes
    assert len({o.numpy().tobytes() for o in outs}) == 5
    assert m.training  # torchattacks restores the mode

    # during a whole PGD run every forward pass draws fresh noise, in eval mode
    noise.log.clear()
    atk = make_attack("pgd20", m, 0.1, eot=1)
    atk(x, y)
    assert len(noise.log) == 20 and all(a and not t for t, a, _ in noise.log)

    # a layer in noise mode "train" would be silently deterministic under torchattacks: the reason for modes
    noise.log.clear()
    with noise_mode(m, "train"):
        make_attack("fgsm", m, 0.1, eot=5)(x, y)
    assert len({o.numpy().tobytes() for _, _, o in noise.log}) == 1


def test_eot_model_averages_logits_of_independent_draws():
    m = nn.Sequential(TorchNoise(0.5), small_cnn())
    x, _ = data(3)
    torch.manual_seed(7)
    got = EOTModel(m, 4)(x)
    torch.manual_seed(7)
    draws = [m(x) for _ in range(4)]
    assert torch.allclose(got, sum(draws) / 4)
    assert not torch.equal(draws[0], draws[1])
    with pytest.raises(ValueError, match="n \\(EOT draws\\) must be an int >= 1"):
        EOTModel(m, 0)


def test_forward_passes_are_counted_per_noise_draw():
    m = nn.Sequential(TorchNoise(0.1), small_cnn())
    x, y = data(5)
    atk = make_attack("pgd20", m, 0.1, eot=3)
    atk(x, y)
    assert atk.forward_calls == 20 * 3 and atk.forward_samples == 20 * 3 * 5


# ---------------------------------------------------------------- EOT defeats random gradient masking
def _scramble_problem(n=100):
    torch.manual_seed(0)
    lin = nn.Linear(64, 10)
    x = torch.rand(n, 64)
    y = lin(x).argmax(1).detach()
    return nn.Sequential(GradScramble(), lin), x, y


def test_eot_beats_single_draw_on_randomly_masked_gradients():
    model, x, y = _scramble_problem()
    res = evaluate(model, (x, y), ["pgd20"], 0.2, eot=20, draws=3, sanity_eps=None)
    acc = {r["protocol"]: r["accuracy"]["mean"] for r in res["rows"]}
    print("clean", res["clean"]["accuracy"]["mean"], "EOT-20 vs single-draw PGD:", acc)
    assert res["clean"]["accuracy"]["mean"] == 1.0
    assert acc["eot"] <= 0.10          # measured 0.02
    assert acc["seed"] >= 0.50         # measured 0.72: single-draw gradients are useless
    assert acc["seed"] - acc["eot"] >= 0.4
    fwd = {r["protocol"]: r["forwards_per_sample"] for r in res["rows"]}
    assert fwd == {"eot": 400, "seed": 20}


# ---------------------------------------------------------------- evaluate() and reports
def test_evaluate_reports_protocols_draws_worst_case_and_sanity(tmp_path):
    torch.manual_seed(0)
    net = small_cnn()
    model = nn.Sequential(TorchNoise(0.05), net)
    x, y = data(24, model=net)
    res = evaluate(model, torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=10),
                   ["pgd20", "fgsm", "deepfool"], [0.05, 0.1], eot=2, draws=3, steps={"pgd20": 5, "deepfool": 3},
                   max_samples={"deepfool": 8}, eot_curve=[1, 2], sanity_eps=1.0)
    json.dumps(res, allow_nan=True)
    s = res["settings"]
    assert s["randomized"] and s["protocols"] == ["eot", "seed"] and s["draws"] == 3 and s["n_samples"] == 24
    assert len(res["rows"]) == 2 * 2 * 2 + 2  # bounded attacks x eps x protocols + deepfool x protocols
    for r in res["rows"]:
        assert len(r["accuracy"]["draws"]) == 3 and r["forward_calls"] > 0
        assert ("seed protocol" in r["protocol_label"]) == (r["protocol"] == "seed")
    df = [r for r in res["rows"] if r["attack"] == "deepfool"]
    assert all(r["n"] == 8 and r["subsampled"] and r["eps"] is None for r in df)
    for w in res["worst_case"]:
        assert w["attacks"] == ["pgd20", "fgsm"]
        rows = [r for r in res["rows"] if r["eps"] == w["eps"] and r["protocol"] == w["protocol"]]
        for d in range(3):
            assert w["accuracy"]["draws"][d] <= min(r["accuracy"]["draws"][d] for r in rows) + 1e-9
        assert w["all_draws"] <= w["accuracy"]["mean"] + 1e-9
    assert [p["eot"] for p in res["eot_curve"]["points"]] == [1, 2]
    assert res["sanity"]["passed"] and res["sanity"]["accuracy"]["mean"] <= 0.05

    paths = write_reports(res, tmp_path / "out")
    assert json.loads(open(paths["json"]).read())["rows"][0]["attack"] == "pgd20"
    md = open(paths["markdown"]).read()
    assert "| attack | eps | protocol |" in md and "seed protocol" in md and "(subsampled)" in md
    for k in ("accuracy_vs_eps", "accuracy_vs_eot"):
        assert open(paths[k], "rb").read(8) == b"\x89PNG\r\n\x1a\n"
    assert "Sanity check" in format_table(res)


def test_sanity_check_can_fail():
    class Constant(nn.Module):  # ignores its input: no eps can change its prediction
        def __init__(self):
            super().__init__()
            self.b = nn.Parameter(torch.tensor([0.0, 5.0, 0.0]))

        def forward(self, x):
            return self.b.expand(len(x), 3) + 0 * x.flatten(1).sum(1, keepdim=True)

    x = torch.rand(8, 1, 8, 8)
    y = torch.ones(8, dtype=torch.long)
    res = evaluate(Constant(), (x, y), ["fgsm"], 0.1, sanity_eps=1.0)
    assert res["sanity"]["accuracy"]["mean"] == 1.0 and not res["sanity"]["passed"]
    assert "FAILED" in format_table(res)


def test_evaluate_bad_arguments():
    m = small_cnn()
    x, y = data(4, model=m)
    with pytest.raises(ValueError, match="attack must be one of"):
        evaluate(m, (x, y), ["pgd20", "nope"], 0.1)
    with pytest.raises(ValueError, match="eps must be a finite number >= 0"):
        evaluate(m, (x, y), "pgd20", [0.1, -1.0])
    with pytest.raises(ValueError, match="protocol must be a subset of"):
        evaluate(m, (x, y), "pgd20", 0.1, protocol=("eot", "magic"))
    with pytest.raises(ValueError, match="draws must be an int >= 1"):
        evaluate(m, (x, y), "pgd20", 0.1, draws=0)
    with pytest.raises(ValueError, match="max_samples keys must be attack names"):
        evaluate(m, (x, y), "pgd20", 0.1, max_samples={"pgd": 3})
    with pytest.raises(ValueError, match=r"must lie in \[0, 1\]"):
        evaluate(m, (x * 3, y), "pgd20", 0.1)
    with pytest.raises(ValueError, match="attacks must not repeat"):
        evaluate(m, (x, y), "pgd20,pgd20", 0.1)


def test_evaluate_works_under_no_grad_and_with_empty_limits():
    m = small_cnn()
    x, y = data(4, model=m)
    with torch.no_grad():
        res = evaluate(m, (x, y), "fgsm", 0.1, max_samples=2, sanity_eps=None)
    assert res["rows"][0]["n"] == 2 and res["clean"]["n"] == 2


def test_fastnoise_gaussian_noise_stays_on_under_torchattacks():
    """The same with the real RSE layers (`fastnoise.convert(model, "rse")`, Philox noise)."""
    import fastnoise
    from fastnoise.nn import noise_modules
    m = fastnoise.convert(small_cnn(), "rse", sigma=0.3, seed=0)
    layers = noise_modules(m)
    assert layers
    seen = []
    layers[0].register_forward_hook(lambda mod, inp, out: seen.append((mod.training, out.detach().clone())))
    x, y = data(3)
    atk = make_attack("fgsm", m, 0.1, eot=6)
    atk(x, y)
    # the 6 draws run as one forward of the batch replicated 6 times (fastnoise.nn.draws): 6 draws counted
    draws = torch.cat([o for _, o in seen]).split(len(x))
    assert len(draws) == 6 == atk.forward_calls and not any(t for t, _ in seen)
    assert len({o.numpy().tobytes() for o in draws}) == 6


def test_evaluate_restores_training_mode():
    m = small_cnn()
    x, y = data(4, model=m)
    m.train()
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    evaluate(m, (x, y), "pgd20", 0.1, sanity_eps=None)
    assert m.training
    assert torch.equal(torch.rand(3), expected)  # the caller's RNG stream is untouched


def test_a_failing_attack_is_recorded_and_the_others_still_run(tmp_path):
    from fastnoise.attacks import format_table, write_reports
    torch.manual_seed(0)
    net = small_cnn(1)
    x, y = data(6, 1, net)
    res = evaluate(net, (x, y), ["tifgsm", "fgsm"], 0.1, sanity_eps=None)  # tifgsm needs 3 channels
    assert [r["attack"] for r in res["rows"]] == ["fgsm"]
    assert len(res["errors"]) == 1 and res["errors"][0]["attack"] == "tifgsm"
    assert "3-channel images only" in res["errors"][0]["error"]
    assert [w["attacks"] for w in res["worst_case"]] == [["fgsm"]]
    table = format_table(res)
    assert "| tifgsm |" in table and "**failed**" in table
    write_reports(res, tmp_path)
    assert (tmp_path / "results.json").exists()
