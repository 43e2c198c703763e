"""Checkpoints: safetensors + JSON, committed atomically, loaded without unpickling anything.

A checkpoint named ``<dir>/<name>`` (``last``: every epoch, for ``--resume``; ``best``: the early-stop
pick) is three files:

* ``<name>.<tag>.safetensors``        the model's state_dict (weights and buffers, noise-stream states);
* ``<name>.<tag>.state.safetensors``  the optimizer state's tensors and the torch / CUDA RNG states;
* ``<name>.json``                     config, model spec (to rebuild the architecture), epoch, the file
  names above, the model's non-tensor state_dict entries (``extra_state``: the configurations that
  `fastnoise.nn.NoiseModule` layers save as ``<prefix>_extra_state``), the optimizer's non-tensor state,
  the scheduler state, numpy / python / fastnoise RNG states, metrics, history.

`<tag>` is new for every save. The two safetensors files are written first (each to a temporary name,
then ``os.replace``), then the JSON (temporary name + ``os.replace``): replacing the JSON is the one
commit point, so a run killed at any moment leaves either the previous checkpoint or the new one,
complete. Files of older tags are deleted after the commit. Both safetensors files carry the JSON's
token in their metadata, and loading checks it. A file that is truncated, not JSON / safetensors, or not
a fastnoise checkpoint is a ValueError naming the file.
"""
from __future__ import annotations

import collections
import json
import os
import random
import re
import uuid
from pathlib import Path
from typing import Any, Optional, Union

import numpy as np
import torch
from safetensors.torch import load_file, safe_open, save_file

from .config import TrainConfig

FORMAT = "fastnoise-checkpoint-1"
_PathLike = Union[str, os.PathLike]


# ---- file helpers -------------------------------------------------------------------------------

def _atomic(path: Path, write) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        write(tmp)
        os.chmod(tmp, 0o644)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def _save_tensors(path: Path, tensors: dict[str, torch.Tensor], token: str) -> None:
    # safetensors refuses shared storage and non-contiguous tensors: store private contiguous copies
    flat = {k: v.detach().to("cpu").contiguous().clone() for k, v in tensors.items()}
    _atomic(path, lambda p: save_file(flat, str(p), metadata={"format": FORMAT, "token": token}))


def _load_tensors(path: Path, token: Optional[str], device: Union[str, torch.device] = "cpu") -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint file {path} is missing")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
    except Exception as e:  # safetensors raises its own SafetensorError (and OSError) on a damaged file
        raise ValueError(f"checkpoint file {path} is not a readable safetensors file ({type(e).__name__}: {e}); "
                         f"it is truncated or was not written by fastnoise train") from None
    if token is not None and meta.get("token") != token:
        raise ValueError(f"checkpoint file {path} does not belong to its JSON (token mismatch: "
                         f"the files were modified or mixed up)")
    try:
        return load_file(str(path), device=str(device))
    except Exception as e:
        raise ValueError(f"checkpoint file {path} is damaged ({type(e).__name__}: {e})") from None


def resolve_path(path: _PathLike) -> Path:
    """The JSON of a checkpoint given its directory (best, else last), its prefix or any of its files."""
    p = Path(path)
    if p.is_dir():
        for name in ("best", "last"):
            if (p / f"{name}.json").is_file():
                return p / f"{name}.json"
        raise FileNotFoundError(f"no checkpoint in {p}: expected best.json or last.json (with their .safetensors)")
    name = p.name
    for suffix in (".state.safetensors", ".safetensors", ".json"):
        if name.endswith(suffix):
            name = name[: -len(suffix)]
            if suffix != ".json" and re.fullmatch(r".+\.[0-9a-f]{12}", name):
                name = name.rsplit(".", 1)[0]  # drop the save tag
            break
    j = p.with_name(name + ".json")
    if not j.is_file():
        if p.is_file():
            raise ValueError(f"{p}: not a fastnoise checkpoint (expected a run folder, a checkpoint <name>.json or one "
                             f"of its .safetensors files; {j.name} not found next to it)")
        raise FileNotFoundError(f"checkpoint {j} not found")
    return j


# ---- JSON-safe state ------------------------------------------------------------------------------

def _to_json(obj: Any) -> Any:
    if isinstance(obj, collections.Counter):
        return {"__counter__": [[_to_json(k), v] for k, v in obj.items()]}
    if isinstance(obj, dict):
        if any(not isinstance(k, str) for k in obj):
            return {"__intdict__": [[k, _to_json(v)] for k, v in obj.items()]}
        return {k: _to_json(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_to_json(v) for v in obj]
    if isinstance(obj, torch.Tensor):
        if obj.ndim == 0:
            return {"__scalar__": obj.item(), "dtype": str(obj.dtype).replace("torch.", "")}
        raise TypeError("tensors with dimensions go to safetensors, not JSON")
    if isinstance(obj, (np.integer, np.floating)):
        return obj.item()
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    raise TypeError(f"cannot store {type(obj).__name__} in a checkpoint JSON")


def _from_json(obj: Any) -> Any:
    if isinstance(obj, dict):
        if "__counter__" in obj:
            return collections.Counter({k: v for k, v in obj["__counter__"]})
        if "__intdict__" in obj:
            return {k: _from_json(v) for k, v in obj["__intdict__"]}
        if "__scalar__" in obj:
            return torch.tensor(obj["__scalar__"], dtype=getattr(torch, obj["dtype"]))
        return {k: _from_json(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_from_json(v) for v in obj]
    return obj


def _split_optimizer(sd: dict) -> tuple[dict, dict[str, torch.Tensor]]:
    """optimizer.state_dict() -> (JSON part, tensors); tensors with > 1 element go to safetensors."""
    tensors, state = {}, {}
    for idx, st in sd["state"].items():
        js = {}
        for k, v in st.items():
            if isinstance(v, torch.Tensor) and v.ndim > 0:
                tensors[f"optim.{idx}.{k}"] = v
                js[k] = {"__tensor__": f"optim.{idx}.{k}"}
            else:
                js[k] = _to_json(v)
        state[str(idx)] = js
    return {"state": state, "param_groups": _to_json(sd["param_groups"])}, tensors


def _join_optimizer(js: dict, tensors: dict[str, torch.Tensor]) -> dict:
    state = {}
    for idx, st in js["state"].items():
        state[int(idx)] = {k: (tensors[v["__tensor__"]] if isinstance(v, dict) and "__tensor__" in v else _from_json(v))
                           for k, v in st.items()}
    return {"state": state, "param_groups": _from_json(js["param_groups"])}


# ---- RNG ----------------------------------------------------------------------------------------

def capture_rng() -> tuple[dict, dict[str, torch.Tensor]]:
    from .. import rng as fnrng
    tensors = {"rng.torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"rng.cuda.{i}"] = s
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    version, pystate, gauss = random.getstate()
    js = {"numpy": [kind, keys.tolist(), int(pos), int(has_gauss), float(cached)],
          "python": [version, list(pystate), gauss],
          "fastnoise": {"seed": fnrng._global.seed, "offset": fnrng._global.offset}}
    return js, tensors


def restore_rng(js: dict, tensors: dict[str, torch.Tensor]) -> None:
    from .. import rng as fnrng
    torch.set_rng_state(tensors["rng.torch"].to("cpu"))
    cuda = [tensors[k] for k in sorted(k for k in tensors if k.startswith("rng.cuda."))]
    if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all([c.to("cpu") for c in cuda])
    kind, keys, pos, has_gauss, cached = js["numpy"]
    np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    version, pystate, gauss = js["python"]
    random.setstate((version, tuple(pystate), gauss))
    fnrng._global.seed, fnrng._global.offset = js["fastnoise"]["seed"], js["fastnoise"]["offset"]


# ---- save / load ----------------------------------------------------------------------------------

def noise_modes(model: torch.nn.Module) -> dict[str, str]:
    from ..nn import NoiseModule
    return {n: m.noise_mode for n, m in model.named_modules() if isinstance(m, NoiseModule)}


def split_state_dict(sd: dict) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """(tensors for safetensors, JSON of the other entries): a module's ``get_extra_state()`` (e.g. a NENNI or
    noise layer's configuration) is any object, stored as JSON, never pickled."""
    tensors, extra = {}, {}
    for k, v in sd.items():
        if isinstance(v, torch.Tensor):
            tensors[k] = v
            continue
        try:
            extra[k] = _to_json(v)
        except TypeError as e:
            raise TypeError(f"state_dict entry {k!r} ({type(v).__name__}) cannot be stored in a checkpoint: {e}; "
                            f"a module's get_extra_state() must return JSON-able values (dicts, lists, numbers, "
                            f"strings, 0-dim tensors)") from None
    return tensors, extra


def to_device(sd: dict, device: Union[str, torch.device]) -> dict:
    """A state_dict with its tensors on `device` (extra-state entries unchanged)."""
    return {k: (v.to(device) if isinstance(v, torch.Tensor) else v) for k, v in sd.items()}


def save(prefix: _PathLike, model: torch.nn.Module, config: TrainConfig, model_spec: dict, *, epoch: int,
         optimizer: Optional[torch.optim.Optimizer] = None, scheduler=None, extra: Optional[dict] = None) -> Path:
    """Write checkpoint `prefix` (.safetensors, .state.safetensors, .json) atomically; returns the JSON path."""
    prefix = Path(prefix)
    prefix.parent.mkdir(parents=True, exist_ok=True)
    token = uuid.uuid4().hex
    files = {"weights": f"{prefix.name}.{token[:12]}.safetensors", "state": f"{prefix.name}.{token[:12]}.state.safetensors"}
    weights, extra_state = split_state_dict(model.state_dict())
    _save_tensors(prefix.with_name(files["weights"]), weights, token)
    rng_js, state_tensors = capture_rng()
    meta: dict[str, Any] = {"format": FORMAT, "token": token, "epoch": int(epoch), "files": files, "config": config.to_dict(),
                            "model_spec": model_spec, "noise_modes": noise_modes(model), "rng": rng_js,
                            "extra_state": extra_state}
    if optimizer is not None:
        opt_js, opt_tensors = _split_optimizer(optimizer.state_dict())
        state_tensors.update(opt_tensors)
        meta["optimizer"] = opt_js
    if scheduler is not None:
        meta["scheduler"] = _to_json(scheduler.state_dict())
    meta.update(extra or {})
    _save_tensors(prefix.with_name(files["state"]), state_tensors, token)
    text = json.dumps(meta, indent=1, allow_nan=True)
    _atomic(prefix.with_name(prefix.name + ".json"), lambda p: Path(p).write_text(text))  # the commit
    stale = re.compile(re.escape(prefix.name) + r"\.[0-9a-f]{12}(\.state)?\.safetensors")
    for old in prefix.parent.glob(f"{prefix.name}.*.safetensors"):
        if old.name not in files.values() and stale.fullmatch(old.name):
            old.unlink(missing_ok=True)
    return prefix.with_name(prefix.name + ".json")


def _files(j: Path, meta: dict) -> dict:
    name = j.name[: -len(".json")]  # checkpoints before save tags: <name>.safetensors, <name>.state.safetensors
    return meta.get("files", {"weights": f"{name}.safetensors", "state": f"{name}.state.safetensors"})


def read_meta(j: Path) -> dict:
    """The JSON of checkpoint `j`, checked: a ValueError naming the file when it is unreadable or foreign."""
    try:
        meta = json.loads(j.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{j}: not a readable fastnoise checkpoint JSON ({type(e).__name__}: {e}); the file is "
                         f"truncated or is not a checkpoint written by fastnoise train") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        got = meta.get("format") if isinstance(meta, dict) else type(meta).__name__
        raise ValueError(f"{j}: not a fastnoise checkpoint (format {got!r}, expected {FORMAT!r})")
    bad = [k for k, t in (("token", str), ("config", dict), ("model_spec", dict)) if not isinstance(meta.get(k), t)]
    if bad or not isinstance(meta.get("files", {}), dict) or not isinstance(meta.get("extra_state", {}), dict):
        raise ValueError(f"{j}: a damaged fastnoise checkpoint (missing or malformed {bad or ['files/extra_state']})")
    return meta


def weights_path(path: _PathLike) -> Path:
    """The model-weights safetensors file of the checkpoint at `path` (its tensors; the non-tensor
    state_dict entries are in the JSON's ``extra_state``)."""
    j = resolve_path(path)
    return j.with_name(_files(j, read_meta(j))["weights"])


def read(path: _PathLike, map_location: Union[str, torch.device] = "cpu", *, state: bool = False):
    """(meta dict, model state_dict, state tensors or None) of the checkpoint at `path`.

    The state_dict holds the weights file's tensors and the JSON's non-tensor entries (``extra_state``).
    """
    j = resolve_path(path)
    meta = read_meta(j)
    files = _files(j, meta)
    weights = _load_tensors(j.with_name(files["weights"]), meta["token"], map_location)
    for k, v in meta.get("extra_state", {}).items():
        weights[k] = _from_json(v)
    tensors = _load_tensors(j.with_name(files["state"]), meta["token"], "cpu") if state else None
    return meta, weights, tensors


def load_weights(model: torch.nn.Module, weights: dict[str, torch.Tensor], where: str = "checkpoint") -> None:
    """load_state_dict(strict) with an error naming every missing / unexpected key and shape mismatch."""
    own = model.state_dict()
    # buffers registered as None (optional state, e.g. a NENNI layer's INT4 weights before quantize_()) are
    # not in the model's state_dict: a checkpoint may hold them, and the module's own load makes room
    optional = {f"{n}.{b}" if n else b for n, m in model.named_modules() for b, v in m._buffers.items() if v is None}
    missing = sorted(set(own) - set(weights))
    unexpected = sorted(set(weights) - set(own) - optional)
    shapes = [f"{k}: checkpoint {tuple(weights[k].shape)} vs model {tuple(own[k].shape)}"
              for k in own if k in weights and isinstance(own[k], torch.Tensor) and isinstance(weights[k], torch.Tensor)
              and tuple(weights[k].shape) != tuple(own[k].shape)]
    if missing or unexpected or shapes:
        parts = []
        if missing:
            parts.append(f"missing in the {where}: {missing[:10]}{' ...' if len(missing) > 10 else ''}")
        if unexpected:
            parts.append(f"not in the model: {unexpected[:10]}{' ...' if len(unexpected) > 10 else ''}")
        if shapes:
            parts.append(f"shape mismatch: {shapes[:10]}{' ...' if len(shapes) > 10 else ''}")
        raise ValueError(f"the {where} does not fit this architecture; " + "; ".join(parts))
    try:
        model.load_state_dict(weights, strict=True)
    except RuntimeError as e:  # (an optional buffer the module did not take: still named, with the file)
        raise ValueError(f"the {where} does not fit this architecture: {e}") from None


def build_from_spec(spec: dict, method: str = "none", method_options: Optional[dict] = None) -> torch.nn.Module:
    from .. import models
    from ..convert import convert
    model = models.build(spec["name"], spec["num_classes"], spec["in_channels"], tuple(spec["input_size"]),
                         mean=spec["mean"], std=spec["std"], **spec.get("options", {}))
    if method != "none":
        model = convert(model, method, **(method_options or {}))
    return model


def load_checkpoint(path: _PathLike, map_location: Union[str, torch.device] = "cpu") -> tuple[torch.nn.Module, TrainConfig]:
    """Rebuild the model of a checkpoint (architecture + conversion method) and load its weights.

    `path`: a run directory (its ``best`` checkpoint, else ``last``), a checkpoint prefix or any of its
    files. Returns ``(model in eval mode on map_location, TrainConfig)``; noise modes are restored.
    Nothing is unpickled: weights come from safetensors, the rest from JSON.
    """
    meta, weights, _ = read(path, map_location)
    try:
        config = TrainConfig.from_dict(meta["config"])
    except (ValueError, TypeError) as e:
        raise ValueError(f"{resolve_path(path)}: the checkpoint's config is not valid here: {e}") from None
    model = build_from_spec(meta["model_spec"], config.method, config.method_options)
    model.to(map_location)
    load_weights(model, weights, where=f"checkpoint {resolve_path(path)}")
    modes = meta.get("noise_modes", {})
    for name, m in model.named_modules():
        if name in modes:
            m.set_noise_mode(modes[name])
    return model.eval(), config
