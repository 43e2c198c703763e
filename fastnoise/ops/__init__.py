"""Public, differentiable fastnoise ops (`torch.library` custom ops named ``fastnoise::<op>``).

Each op resolves its backend (see `fastnoise.use_backend`) and passes it to the custom op as an
explicit argument, so `torch.compile(fullgraph=True)` traces through it and `opcheck` passes.
"""
from . import philox  # noqa: F401  (defines fastnoise::philox for fastnoise.rng)
from .lr_grad import (LRGrads, SpikeBits, lif_noise, loss_weights, lr_grad, lr_grad_conv2d, pack_spikes,
                      unpack_spikes)
from .mask_blend import mask_blend, mask_select
from .noise_add import noise_add
from .noise_conv import InputNoise, OutputNoise, WeightNoise, noise_conv2d, noise_linear
from .noise_mul import noise_mul
from .noise_sal import noise_sal
from .sampled import channel_conv2d, sampled_conv2d, sampled_is_faster, sampled_linear
from .ternary_projection import (TernaryProjection, dequantize_int4, quantize_int4, ternary_conv_approx,
                                 ternary_conv_project, ternary_linear_approx, ternary_project)

__all__ = ["lr_grad", "lr_grad_conv2d", "lif_noise", "LRGrads", "SpikeBits", "loss_weights", "pack_spikes",
           "unpack_spikes", "mask_blend", "mask_select", "noise_add", "noise_mul", "noise_sal", "TernaryProjection",
           "dequantize_int4",
           "quantize_int4", "ternary_conv_approx", "ternary_conv_project", "ternary_linear_approx",
           "ternary_project", "channel_conv2d", "sampled_conv2d", "sampled_is_faster", "sampled_linear",
           "InputNoise", "WeightNoise", "OutputNoise", "noise_conv2d", "noise_linear"]
