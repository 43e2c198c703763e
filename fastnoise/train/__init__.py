"""Training: ``fit(config, hooks=None) -> dict``, ``train_model(model, splits, config, hooks)``,
``load_checkpoint(path) -> (model, config)``; recipes "standard", "pgd" (PGD-AT with Rice et al. early
stopping) and "noisy_fgsm" (seed 003) from `fastnoise.adversarial`; a method's hooks from
``fastnoise.methods.get(config.method).hooks(config)``. CLI: ``fastnoise train`` (fastnoise/train/cli.py)."""
from .checkpoint import load_checkpoint
from .config import RECIPES, TrainConfig
from .hooks import HookList, Hooks
from .loop import evaluate, fit, noisy_fgsm, pgd, train_model
from .rundir import RunDirError

__all__ = ["TrainConfig", "RECIPES", "Hooks", "HookList", "fit", "train_model", "load_checkpoint", "evaluate",
           "pgd", "noisy_fgsm", "RunDirError"]
