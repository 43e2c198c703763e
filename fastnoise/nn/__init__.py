"""Drop-in layers. Randomized layers derive from `NoiseModule` and have an explicit noise mode."""
from ._mode import NOISE_MODES, NoiseModule, is_randomized, noise_mode, noise_modules, set_noise_mode
from .noise import SAL, GaussianNoise, LearnableNoise, RandomWeight
from .noise_conv import CNIConv2d, CNILinear, CTRWConv2d, PNIConv2d, PNILinear, RPFConv2d, RSEConv2d
from .lr import LRConv2d, LRLayer, LRLinear, LRRecord, lr_layers, recording
from .spiking import LIF, SURROGATES, SpikeEncoder, spike
from .nenni import NENNIConv2d, NENNILayer, NENNILinear, nenni_layers, set_nenni_mode
from .inference import MeanSoftmax, draws_per_forward

__all__ = ["NOISE_MODES", "NoiseModule", "is_randomized", "noise_mode", "noise_modules", "set_noise_mode",
           "GaussianNoise", "LearnableNoise", "RandomWeight", "SAL",
           "CTRWConv2d", "RSEConv2d", "PNIConv2d", "PNILinear", "CNIConv2d", "CNILinear", "RPFConv2d",
           "LRLayer", "LRLinear", "LRConv2d", "LRRecord", "lr_layers", "recording",
           "LIF", "SpikeEncoder", "SURROGATES", "spike",
           "NENNIConv2d", "NENNILayer", "NENNILinear", "nenni_layers", "set_nenni_mode", "MeanSoftmax", "draws_per_forward"]
