"""`Hooks`: how a defense method plugs into the training loop without its own loop.

Defined with the methods (fastnoise/methods/_hooks.py: a method returns its Hooks from
``Method.hooks(config)``, below the trainer); this module keeps the trainer's public names.
"""
from ..methods._hooks import HookList, Hooks

__all__ = ["Hooks", "HookList"]
