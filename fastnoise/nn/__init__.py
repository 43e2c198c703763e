"""Drop-in layers. Randomized layers derive from `NoiseModule` and have an explicit noise mode."""
from ._mode import NOISE_MODES, NoiseModule, is_randomized, noise_mode, noise_modules, set_noise_mode
from .noise import SAL, GaussianNoise, LearnableNoise, RandomWeight

__all__ = ["NOISE_MODES", "NoiseModule", "is_randomized", "noise_mode", "noise_modules", "set_noise_mode",
           "GaussianNoise", "LearnableNoise", "RandomWeight", "SAL"]
