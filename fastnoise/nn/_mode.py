"""Explicit noise modes for randomized layers (DESIGN §7).

torchattacks (and most evaluation code) calls ``model.eval()``; a defense whose noise is tied to
``self.training`` silently turns into a deterministic model under attack. Every randomized fastnoise
layer is a `NoiseModule` with an explicit mode:

* ``"on"``    (default) noise in train and eval: the model as deployed, and as it must be attacked;
* ``"train"`` noise only while ``self.training`` (the classical dropout-like behaviour);
* ``"off"``   never (the exact / clean model).

**Configurations in state_dicts.** A layer's noise level is part of the defense, not a detail: a
checkpoint evaluated later must run with the sigma it was trained with. Every subclass implements
`NoiseModule.config` (every setting that defines the defense and is not a learned tensor: sigma values
as floats, modes, shapes, bounds, fractions, granularity..., JSON-able). The base class saves it as the
module's extra state (``<prefix>_extra_state = {"config": {...}}``, written to a checkpoint's JSON, never
pickled) and `load_state_dict` refuses, with a ValueError naming the differing keys, a state_dict whose
config differs or that has none (also with ``strict=False``: the tensors of another defense are not a
partial match). A subclass that returns None from `config` (the default) saves no extra state.
"""
from __future__ import annotations

import contextlib
import json
from typing import Any, Iterator, Optional

import torch

NOISE_MODES = ("on", "train", "off")


class NoiseModule(torch.nn.Module):
    """Base class of every layer that injects randomness; see the module docstring for the modes."""

    noise_mode: str = "on"
    #: False for layers whose "noise" is a deterministic function of the input (NENNI's approximation
    #: error): the evaluation harness then treats the model as deterministic (no EOT, one draw)
    stochastic: bool = True
    #: True for layers whose call draws element i of x from stream element ``offset + i`` and advances the
    #: offset by ``x.numel()`` (fastnoise.rng.PhiloxStream): n calls on x then draw exactly what one call on
    #: ``cat([x] * n)`` draws, which lets EOT / ensembles batch their draws (fastnoise.nn.draws)
    draws_per_element: bool = False

    #: what the state_dict errors call this layer's configuration ("NENNI configuration", ...); default: the class name
    config_label: Optional[str] = None

    # --- configuration in the state_dict ------------------------------------------------------

    def config(self) -> Optional[dict]:
        """Every setting that defines this defense and is not a learned tensor, JSON-able (see the module
        docstring). Subclasses override it; None (the default) means "no configuration to check"."""
        return None

    def get_extra_state(self) -> dict:
        """``{"config": self.config()}``; subclasses may add JSON-able fields (``{**super()..., "x": ...}``)."""
        return {"config": _jsonable(self.config(), type(self).__name__)}

    def set_extra_state(self, state: Any) -> None:
        """Refuse a state whose configuration differs from this layer's (ValueError naming the keys)."""
        label = self.config_label or type(self).__name__
        mine = self.config()
        if mine is None:
            if isinstance(state, dict) and state.get("config") is not None:
                raise ValueError(f"{type(self).__name__}: the state_dict carries a configuration {state['config']} "
                                 f"but this layer defines none")
            return
        if not isinstance(state, dict) or not isinstance(state.get("config"), dict):
            raise ValueError(f"{type(self).__name__}: the state_dict has no {label} configuration; expected one "
                             f"matching {mine}")
        theirs = _jsonable(state["config"], type(self).__name__)
        mine = _jsonable(mine, type(self).__name__)
        keys = list(mine) + [k for k in theirs if k not in mine]
        diff = {k: (theirs.get(k), mine.get(k)) for k in keys if theirs.get(k) != mine.get(k)}
        if diff:
            detail = ", ".join(f"{k}: state_dict has {t!r}, layer has {m!r}" for k, (t, m) in diff.items())
            raise ValueError(f"{type(self).__name__}: cannot load a state_dict of another {label} configuration "
                             f"({detail}); build the layer with the same settings")

    def _save_to_state_dict(self, destination, prefix, keep_vars) -> None:
        super()._save_to_state_dict(destination, prefix, keep_vars)
        if self.config() is None:  # nothing to check: no extra-state key (plain subclasses keep their keys)
            destination.pop(prefix + "_extra_state", None)

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                              error_msgs) -> None:
        key = prefix + "_extra_state"
        if self.config() is not None and key not in state_dict:
            label = self.config_label or type(self).__name__
            raise ValueError(f"{type(self).__name__} at {prefix[:-1] or '<root>'!r}: the state_dict has no {label} "
                             f"configuration ('{key}' missing); it was not saved from a layer with {self.config()}")
        n_missing = len(missing_keys)
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                                      error_msgs)
        if self.config() is None and key not in state_dict:  # a layer without a config expects no extra state
            missing_keys[n_missing:] = [k for k in missing_keys[n_missing:] if k != key]

    # --- noise mode ---------------------------------------------------------------------------

    def set_noise_mode(self, mode: str) -> "NoiseModule":
        if mode not in NOISE_MODES:
            raise ValueError(f"noise mode must be one of {NOISE_MODES}, got {mode!r}")
        self.noise_mode = mode
        return self

    @property
    def noise_active(self) -> bool:
        """Whether this call injects noise under the current mode and train/eval state."""
        return self.noise_mode == "on" or (self.noise_mode == "train" and self.training)


def _jsonable(cfg: Any, owner: str) -> Any:
    """`cfg` as it reads back from JSON (tuples -> lists), so saved and live configs compare equal."""
    if cfg is None:
        return None
    try:
        return json.loads(json.dumps(cfg, allow_nan=True))
    except (TypeError, ValueError) as e:
        raise TypeError(f"{owner}.config() must return a JSON-able dict, got {cfg!r} ({e})") from None


def noise_modules(model: torch.nn.Module) -> list[NoiseModule]:
    return [m for m in model.modules() if isinstance(m, NoiseModule)]


def set_noise_mode(model: torch.nn.Module, mode: str) -> torch.nn.Module:
    """Set the noise mode of every `NoiseModule` inside `model`; returns `model`."""
    for m in noise_modules(model):
        m.set_noise_mode(mode)
    return model


@contextlib.contextmanager
def noise_mode(model: torch.nn.Module, mode: str) -> Iterator[torch.nn.Module]:
    """Temporarily set the noise mode of every `NoiseModule` inside `model`."""
    previous = [(m, m.noise_mode) for m in noise_modules(model)]
    try:
        set_noise_mode(model, mode)
        yield model
    finally:
        for m, p in previous:
            m.noise_mode = p


def is_randomized(model: torch.nn.Module) -> bool:
    """True when `model` holds a stochastic NoiseModule whose noise is active in eval mode."""
    return any(m.stochastic and m.noise_mode == "on" for m in noise_modules(model))
