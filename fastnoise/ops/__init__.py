"""Public, differentiable fastnoise ops (`torch.library` custom ops named ``fastnoise::<op>``).

Each op resolves its backend (see `fastnoise.use_backend`) and passes it to the custom op as an
explicit argument, so `torch.compile(fullgraph=True)` traces through it and `opcheck` passes.
"""
from .sampled import channel_conv2d, sampled_conv2d, sampled_is_faster, sampled_linear
