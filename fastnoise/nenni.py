"""`fastnoise.nenni`: the public name of the NENNI recipe (seed 000), defined in fastnoise/methods/nenni.py.

    model = fastnoise.convert(model, "nenni", ratio=0.9)          # layers start from the JL init W~ = W P^T
    fastnoise.nenni.distill(model, loader, epochs=50)            # Eq. 1 -> 1 epoch noisy fine-tune -> INT4
    fastnoise.nenni.approx_error(model, loader)                  # per layer ||z - z~||^2 / ||z||^2
    fastnoise.nenni.topk_recall(model, loader, ratio=0.9)        # recall of the true top-k by |z|
    print(fastnoise.nenni.bitops_table(resnet18, (1, 3, 32, 32)))

See docs/nenni.md for the method, the options and the measured numbers.
"""
from .methods.nenni import (SEED_BITOPS, SEED_REDUCTION, NENNIConv2d, NENNILayer, NENNILinear, approx_error,  # noqa: F401
                            bitops, bitops_table, convert_nenni, default_k, distill, essential_gradients, nenni_layers,
                            pgd_attack, quantize_, set_nenni_mode, topk_recall)

__all__ = ["distill", "pgd_attack", "essential_gradients", "approx_error", "topk_recall", "bitops", "bitops_table",
           "SEED_BITOPS", "NENNIConv2d", "NENNILinear", "NENNILayer", "convert_nenni", "default_k", "nenni_layers",
           "set_nenni_mode", "quantize_"]
