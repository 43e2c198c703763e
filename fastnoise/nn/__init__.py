"""Drop-in layers. Randomized layers derive from `NoiseModule` and have an explicit noise mode."""
from ._mode import NOISE_MODES, NoiseModule, is_randomized, noise_mode, noise_modules, set_noise_mode
from .noise import SAL, GaussianNoise, LearnableNoise, RandomWeight
from .nenni import NENNIConv2d, NENNILayer, NENNILinear, nenni_layers, set_nenni_mode
from .inference import MeanSoftmax

__all__ = ["NOISE_MODES", "NoiseModule", "is_randomized", "noise_mode", "noise_modules", "set_noise_mode",
           "GaussianNoise", "LearnableNoise", "RandomWeight", "SAL",
           "NENNIConv2d", "NENNILayer", "NENNILinear", "nenni_layers", "set_nenni_mode", "MeanSoftmax"]
