"""`fastnoise eval` (fastnoise/attacks/cli.py) and `fastnoise demo` argument handling."""
import json

import pytest
import torch

import fastnoise
import fastnoise.methods
from fastnoise import train
from fastnoise.cli import build_parser, main


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    cfg = train.TrainConfig(dataset="synthetic", model="small_cnn", model_options={"width": 4, "hidden": 16},
                            method="rse", method_options={"sigma": 0.1, "seed": 3}, recipe="standard", epochs=1,
                            batch_size=64, early_stop=False, test_eval=False, out_dir=str(out), device="cpu",
                            quiet=True)
    return train.fit(cfg)["checkpoint"]


def test_eval_cli_end_to_end(checkpoint, tmp_path, capsys):
    out = tmp_path / "eval"
    rc = main(["eval", "--checkpoint", checkpoint, "--attacks", "pgd20,fgsm", "--eps", "8/255,0.1", "--eot", "2",
               "--draws", "2", "--max-samples", "24", "--attack-samples", "pgd20=16", "--steps", "pgd20=5", "--eot-curve", "1,2",
               "--out", str(out), "--no-inference-rule"])
    assert rc == 0
    text = capsys.readouterr().out
    assert "| attack | eps | protocol |" in text and "seed protocol" in text and "Sanity check" in text
    res = json.loads((out / "results.json").read_text())
    s = res["settings"]
    assert s["randomized"] and s["dataset"] == "synthetic (test split)" and s["eps"] == pytest.approx([8 / 255, 0.1])
    assert s["eot"] == 2 and s["draws"] == 2 and s["n_samples"] == 24
    assert {r["attack"] for r in res["rows"]} == {"pgd20", "fgsm"}
    assert all(r["n"] == 16 for r in res["rows"] if r["attack"] == "pgd20")
    assert all(r["steps"] == 5 for r in res["rows"] if r["attack"] == "pgd20")  # --steps reaches the attack
    assert (out / "results.md").exists() and (out / "accuracy_vs_eps.png").exists()
    assert (out / "accuracy_vs_eot.png").exists()
    assert "method" not in s and res["meta"]["model"] == "Sequential"  # --no-inference-rule: the model itself


def test_eval_cli_attacks_the_model_as_its_method_deploys_it(checkpoint, tmp_path):
    out = tmp_path / "eval"
    assert main(["eval", "--checkpoint", checkpoint, "--attacks", "fgsm", "--eot", "1", "--draws", "1",
                 "--protocol", "seed", "--max-samples", "8", "--no-sanity", "--out", str(out)]) == 0
    res = json.loads((out / "results.json").read_text())
    assert res["settings"]["method"]["name"] == "rse" and res["settings"]["method"]["inference"].startswith("MeanSoftmax")
    assert res["meta"]["model"] == "MeanSoftmax"  # RSE's ensemble of 20 draws is what was attacked


@pytest.mark.parametrize("argv,message", [
    (["--attacks", "pgd20,pgd7"], "unknown attack(s) ['pgd7']; valid choices: pgd20, fgsm, mifgsm"),
    (["--eps", "-0.1"], "eps must be a finite number >= 0"),
    (["--eps", "8/0"], "eps must be a number or a fraction like 8/255"),
    (["--eot", "0"], "expected an int >= 1"),
    (["--protocol", "eot,bogus"], "unknown protocol(s) ['bogus']; valid choices: eot, seed"),
    (["--attack-samples", "foo=3"], "unknown attack 'foo'; valid choices: pgd20"),
    (["--steps", "square=0"], "expected an int >= 1"),
])
def test_eval_cli_bad_arguments_list_valid_choices(argv, message, capsys):
    with pytest.raises(SystemExit) as e:
        build_parser().parse_args(["eval", "--checkpoint", "x"] + argv)
    assert e.value.code == 2
    assert message in capsys.readouterr().err


def test_demo_is_registered():
    args = build_parser().parse_args(["demo", "--epochs", "1", "--no-bench"])
    assert args.epochs == 1 and args.bench is False and args.eot == 20 and args.draws == 5
    args = build_parser().parse_args(["demo", "--method", "rse", "--method-options", '{"sigma": 0.2}'])
    assert args.method == "rse" and args.method_options == {"sigma": 0.2}


def test_demo_bad_method_options_are_clear_errors(tmp_path, capsys):
    assert main(["demo", "--out", str(tmp_path), "--method", "rse", "--method-options", '{"sigmaa": 0.2}']) == 2
    assert "method 'rse': unknown option 'sigmaa'; valid options: sigma, sigma_first, skip_first, seed" in capsys.readouterr().err
    assert main(["demo", "--out", str(tmp_path), "--method", "nope"]) == 2
    assert f"method must be one of {fastnoise.methods.names()}, got 'nope'" in capsys.readouterr().err


def test_demo_smoke(tmp_path, capsys):
    """The whole demo pipeline at toy size (the full run is `make demo`, measured in the report)."""
    out = tmp_path / "demo"
    rc = main(["demo", "--out", str(out), "--epochs", "1", "--eot", "2", "--draws", "2", "--max-samples", "48",
               "--expensive-samples", "8", "--no-bench", "--post-options", '{"distill_epochs": 1, "finetune_epochs": 1}'])
    assert rc == 0
    text = capsys.readouterr().out
    assert "| autoattack_rand |" in text and "(subsampled)" in text and "Sanity check" in text
    res = json.loads((out / "results.json").read_text())
    method = res["settings"]["defense"]["method"]
    from fastnoise import methods
    assert method == methods.default()
    # the harness follows the method's evaluation spec (NENNI: deterministic; RSE: fresh noise per call)
    assert res["settings"]["randomized"] == methods.get(method).evaluation.stochastic
    assert res["settings"]["method"]["name"] == method
    assert {r["attack"] for r in res["rows"]} == {"pgd20", "fgsm", "autoattack_rand"}
    for f in ("results.md", "accuracy_vs_eps.png", "timing.json") + (("accuracy_vs_eot.png",) if method == "rse" else ()):
        assert (out / f).exists()
