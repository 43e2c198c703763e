"""torch.compile(fullgraph=True) of a module using both foundation ops (mask_blend and noise) matches eager."""
import pytest
import torch

import fastnoise
from fastnoise.nn import GaussianNoise


class Block(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(32, 48)
        self.approx = torch.nn.Linear(32, 48)
        self.noise = GaussianNoise(0.1, seed=3)

    def forward(self, x):
        z = self.lin(x)
        za = self.approx(x)
        out, mask = fastnoise.ops.mask_blend(z, za, ratio=0.75)
        return self.noise(out), mask


@pytest.mark.parametrize("backend", ["cpu", "reference"])
def test_compiled_module_matches_eager(backend):
    torch.manual_seed(0)
    eager = Block()
    compiled_model = Block()
    compiled_model.load_state_dict(eager.state_dict())
    x = torch.randn(16, 32, requires_grad=True)
    with fastnoise.use_backend(backend):
        torch._dynamo.reset()
        compiled = torch.compile(compiled_model, fullgraph=True)
        for _ in range(3):  # the noise offset advances identically in both: no recompilation per call
            out_e, m_e = eager(x)
            out_c, m_c = compiled(x)
            torch.testing.assert_close(out_c, out_e, rtol=1e-5, atol=1e-6)
            assert torch.equal(m_c, m_e)
            g_e, = torch.autograd.grad(out_e.sum(), x)
            g_c, = torch.autograd.grad(out_c.sum(), x)
            torch.testing.assert_close(g_c, g_e, rtol=1e-5, atol=1e-6)
    assert torch.equal(eager.noise.stream.state, compiled_model.noise.stream.state)
