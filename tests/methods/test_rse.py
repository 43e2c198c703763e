"""RSE (fastnoise/methods/rse.py): conversion, its guarantees, the inference rule, evaluation."""
import pytest
import torch

import fastnoise
import fastnoise.nn as fnn


def test_convert_rse():
    from fastnoise.convert import methods
    assert "rse" in methods()
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU(),
                                torch.nn.Sequential(torch.nn.Conv2d(4, 4, 3), torch.nn.Conv2d(4, 2, 1)))
    fastnoise.convert(model, "rse", sigma=0.2, skip_first=True, seed=10)
    noises = [m for m in model.modules() if isinstance(m, fnn.GaussianNoise)]
    assert len(noises) == 2 and all(m.sigma == 0.2 for m in noises)
    assert isinstance(model[0], torch.nn.Conv2d)
    x = torch.rand(2, 3, 8, 8)
    model.eval()
    assert not torch.equal(model(x), model(x))
    with fnn.noise_mode(model, "off"):
        assert torch.equal(model(x), model(x))
    with pytest.raises(ValueError, match="sigma must be a finite number"):
        fastnoise.convert(torch.nn.Sequential(torch.nn.Conv2d(1, 1, 1)), "rse", sigma=-1.0)
