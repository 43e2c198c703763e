"""Public, differentiable fastnoise ops (`torch.library` custom ops named ``fastnoise::<op>``).

Each op resolves its backend (see `fastnoise.use_backend`) and passes it to the custom op as an
explicit argument, so `torch.compile(fullgraph=True)` traces through it and `opcheck` passes.
"""
from .ternary_projection import (TernaryProjection, dequantize_int4, quantize_int4, ternary_conv_approx,  # noqa: E402
                                 ternary_conv_project, ternary_linear_approx, ternary_project)
from .mask_blend import mask_blend  # noqa: E402,F401
from .sampled import channel_conv2d, sampled_conv2d, sampled_is_faster, sampled_linear
