"""Running a leaderboard: entries from the method registry, training (resumable), one evaluation protocol.

Layout of the output folder DIR (every file is written atomically; a killed run continues where it
stopped, and nothing finished is recomputed or overwritten):

    DIR/leaderboard-settings.json     format, data set, budget: what makes two runs comparable
    DIR/train/<slug>/                 one `fastnoise.train` run per distinct training config (checkpoints;
                                      PGD-AT baseline and a method converting a PGD-AT model share one)
    DIR/results/<entry>-seed<k>.json  the evaluation of one (entry, training seed): the job's done marker
    DIR/leaderboard.json, .md, *.png  the table over every requested entry and seed (`_report`)
"""
from __future__ import annotations

import contextlib
import datetime as _dt
import hashlib
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Sequence, Union

import torch

from .. import data as fndata
from .. import methods as fnmethods
from ._budget import Budget, get_budget

FORMAT = "fastnoise-leaderboard-1"
STANDARD = "standard"
DETERMINISTIC = "deterministic: PGD-20 as is"
#: the attacks of the protocol at the headline eps, weakest first (FGSM is there to catch masking)
ATTACKS = ("fgsm", "pgd20", "autoattack_rand", "square")


@dataclass(frozen=True)
class Entry:
    """One leaderboard row: a registered method, or a baseline ("standard": no adversarial training;
    "none": PGD-AT). method: the registry name trained / deployed ("none" for both baselines); recipe: the
    training recipe (None: the method's own)."""
    key: str
    label: str
    method: str
    recipe: Optional[str]
    description: str

    def method_obj(self) -> fnmethods.Method:
        return fnmethods.get(self.method)


def all_entries() -> list[Entry]:
    """The baselines and every registered method (the registry decides; nothing here names a method)."""
    out = []
    registered = fnmethods.names()
    if STANDARD not in registered:
        out.append(Entry(STANDARD, "standard training", "none", "standard",
                         "no adversarial training: clean cross-entropy (recipe 'standard')"))
    base = fnmethods.baseline()
    out.append(Entry("none", "PGD-AT (none)", "none", None, base.description))
    for name in registered:
        m = fnmethods.get(name)
        out.append(Entry(name, name, name, None, m.description))
    return out


def select_entries(methods: Union[str, Sequence[str]] = "all") -> list[Entry]:
    """`methods`: "all", or names (a list or "a,b") of registered methods; the baselines are always in."""
    entries = all_entries()
    if isinstance(methods, str):
        methods = ["all"] if methods.strip() == "all" else [s.strip() for s in methods.split(",") if s.strip()]
    methods = list(methods)
    if not methods:
        raise ValueError(f"methods must be 'all' or names from {[e.key for e in entries]}, got an empty list")
    if methods == ["all"]:
        return entries
    valid = {e.key: e for e in entries}
    bad = [m for m in methods if m not in valid]
    if bad:
        raise ValueError(f"unknown method{'s' if len(bad) > 1 else ''} {', '.join(map(repr, bad))}; valid choices: "
                         f"all, {', '.join(valid)}")
    keep = {e.key for e in entries if e.method == "none"} | set(methods)  # baselines always present
    return [e for e in entries if e.key in keep]


# ---- small helpers ---------------------------------------------------------------------------------

def _atomic_json(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(json.dumps(obj, indent=1, allow_nan=True) + "\n")
    os.replace(tmp, path)


def _jsonable(obj):
    return json.loads(json.dumps(obj, default=str))


def _commit() -> Optional[str]:
    try:
        root = Path(__file__).resolve().parents[2]
        p = subprocess.run(["git", "-C", str(root), "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                           timeout=10)
        return p.stdout.strip() or None
    except Exception:  # pragma: no cover - not a git checkout
        return None


class _Dist:
    """The process group of ``--distributed`` (torchrun): gloo on CPU, nccl with a CUDA device."""

    def __init__(self, distributed: bool, device: str) -> None:
        import torch.distributed as dist
        self.owned = False
        if not distributed:
            if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not dist.is_initialized():
                raise RuntimeError(f"launched with WORLD_SIZE={os.environ['WORLD_SIZE']} (torchrun) but distributed "
                                   f"is false: pass --distributed")
            self.rank, self.world = 0, 1
            return
        if not dist.is_initialized():
            missing = [k for k in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT") if k not in os.environ]
            if missing:
                raise RuntimeError(f"--distributed needs torchrun (environment variables {missing} are not set)")
            cuda = device.startswith("cuda")
            if cuda:
                torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
            # jobs are long and unequal: a rank may wait at a barrier while another trains
            dist.init_process_group("nccl" if cuda else "gloo", init_method="env://",
                                    timeout=_dt.timedelta(hours=48))
            self.owned = True
        self.rank, self.world = dist.get_rank(), dist.get_world_size()

    def barrier(self) -> None:
        if self.world > 1:
            import torch.distributed as dist
            dist.barrier()

    def broadcast(self, obj):
        """Rank 0's `obj` on every rank."""
        if self.world == 1:
            return obj
        import torch.distributed as dist
        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def close(self) -> None:
        if self.owned:
            import torch.distributed as dist
            dist.destroy_process_group()


# ---- the output folder -------------------------------------------------------------------------------

def _settings(dataset: str, budget: Budget) -> dict:
    return {"format": FORMAT, "dataset": dataset, "budget": budget.to_dict()}


def check_out_dir(out: Path, dataset: str, budget: Budget, *, write: bool) -> None:
    """`out` must be new, empty, or hold a leaderboard of the same data set and budget (then it is resumed).

    Anything else is an error naming what differs; nothing in `out` is changed by a failed check."""
    want = _jsonable(_settings(dataset, budget))
    f = out / "leaderboard-settings.json"
    if f.is_file():
        try:
            have = json.loads(f.read_text())
        except json.JSONDecodeError:
            raise ValueError(f"{out} holds a damaged {f.name}: choose another --out") from None
        if have.get("format") != FORMAT:
            raise ValueError(f"{out} holds results of another format ({have.get('format')!r}, this is {FORMAT!r}): "
                             f"choose another --out")
        diff = []
        if have.get("dataset") != want["dataset"]:
            diff.append(f"dataset {have.get('dataset')!r} (asked: {want['dataset']!r})")
        hb, wb = have.get("budget", {}), want["budget"]
        for k in sorted(set(hb) | set(wb)):
            if hb.get(k) != wb.get(k):
                diff.append(f"budget.{k} {hb.get(k)!r} (asked: {wb.get(k)!r})")
        if diff:
            raise ValueError(f"{out} holds another leaderboard's results, incompatible with this run: "
                             f"{'; '.join(diff)}. Nothing was changed; choose another --out (or the same "
                             f"--dataset / --budget to resume it)")
        return
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ValueError(f"{out} exists and is not a leaderboard folder (no leaderboard-settings.json): choose a new "
                         f"or empty --out; nothing was changed")
    if write:
        _atomic_json(f, want)


# ---- training ---------------------------------------------------------------------------------------------

def _start(entry: Entry) -> str:
    return "scratch" if entry.method == "none" else getattr(entry.method_obj().training, "start", "scratch")


#: options a method may declare that depend on the data set: filled from it unless example_options set them
DATA_OPTIONS = {"input_size": lambda sp: list(sp.input_size), "in_channels": lambda sp: int(sp.in_channels),
                "num_classes": lambda sp: int(sp.num_classes)}


def method_options(m: fnmethods.Method, splits) -> dict:
    """The options the leaderboard converts `m` with: its `example_options`, plus the data-set options it
    declares (`DATA_OPTIONS`: e.g. ``input_size`` = the data set's [H, W]) that those leave unset."""
    opts = dict(m.example_options)
    for o in m.options:
        if o.name in DATA_OPTIONS and o.name not in opts:
            opts[o.name] = DATA_OPTIONS[o.name](splits)
    return opts


def architecture(entry: Entry, budget: Budget) -> dict:
    """The architecture the entry is trained on: the budget's, or the one its method declares
    (`TrainingRecipe.model`, e.g. NIT's spiking MLP: a different network, said in its row).
    Returns {"name", "options", "source": "budget" | "method"}."""
    t = entry.method_obj().training if entry.method != "none" else None
    if t is not None and getattr(t, "model", None) is not None:
        return {"name": t.model, "options": dict(t.model_options), "source": "method"}
    return {"name": budget.model, "options": dict(budget.model_options), "source": "budget"}


def train_config(entry: Entry, seed: int, budget: Budget, dataset: str, splits, out: Path, device: str,
                 data_root: Optional[str]):
    """The `TrainConfig` the entry is trained with (for a method converting a trained model: that model's)."""
    from ..train import TrainConfig
    m = entry.method_obj()
    trained_start = _start(entry) == "trained"
    method = "none" if trained_start else entry.method
    recipe = entry.recipe if entry.recipe is not None else m.training.recipe
    steps = budget.train_steps if budget.train_steps is not None else splits.default_steps
    arch = architecture(entry, budget)
    cfg = dict(dataset=dataset, data_root=data_root, model=arch["name"], model_options=arch["options"],
               method=method, method_options=method_options(m, splits) if method != "none" else {}, recipe=recipe,
               epochs=budget.epochs, batch_size=budget.batch_size, lr=budget.lr, eps=float(splits.default_eps),
               alpha=None, steps=int(steps), early_stop=budget.early_stop, val_samples=budget.val_samples,
               test_eval=False, seed=seed, device=device, quiet=True, out_dir="-")
    ident = {k: v for k, v in cfg.items() if k not in ("out_dir", "device", "quiet", "data_root", "test_eval")}
    h = hashlib.sha1(json.dumps(ident, sort_keys=True, default=str).encode()).hexdigest()[:8]
    cfg["out_dir"] = str(out / "train" / f"{method}-{recipe}-seed{seed}-{h}")
    return TrainConfig(**cfg)


def _finished(cfg) -> Optional[dict]:
    """The last checkpoint's JSON when the run in cfg.out_dir has trained every epoch, else None."""
    last = Path(cfg.out_dir) / "last.json"
    if not last.is_file():
        return None
    meta = json.loads(last.read_text())
    return meta if meta.get("epoch") == cfg.epochs else None


def train_one(cfg, log: Callable[[str], None]) -> dict:
    """Train (or resume, or reuse) the run of `cfg`; returns {checkpoint, train_time_s, epochs, reused}."""
    from ..train import fit
    from ..train.loop import seed_everything
    d = Path(cfg.out_dir)
    meta = _finished(cfg)
    reused = meta is not None
    if meta is None:
        resume = (d / "last.json").is_file()
        log(f"[leaderboard] train {d.name}" + (" (resuming)" if resume else ""))
        seed_everything(cfg.seed)
        c0 = time.process_time()
        fit(cfg, resume=resume)
        meta = _finished(cfg)
        if meta is None:
            raise RuntimeError(f"training in {d} ended without a finished checkpoint")
        cpu = d / "cpu_seconds.json"  # this process's CPU time spent training, summed over resumptions
        prev = json.loads(cpu.read_text())["cpu_s"] if cpu.is_file() else 0.0
        _atomic_json(cpu, {"cpu_s": prev + time.process_time() - c0})
    chosen = d / ("best.json" if cfg.early_stop and (d / "best.json").is_file() else "last.json")
    hist = meta.get("history", [])
    cpu = d / "cpu_seconds.json"
    return {"checkpoint": str(chosen), "train_time_s": float(sum(h.get("epoch_time_s", 0.0) for h in hist)),
            "train_cpu_s": json.loads(cpu.read_text())["cpu_s"] if cpu.is_file() else None,
            "epochs": len(hist), "best_epoch": (meta.get("best") or {}).get("epoch"), "reused": reused,
            "out_dir": str(d)}


# ---- evaluation -----------------------------------------------------------------------------------------

def _eps_curve(budget: Budget, eps0: float) -> list[float]:
    return [round(f * eps0, 6) for f in budget.eps_factors]


@torch.no_grad()
def _inference_cost(deployed: torch.nn.Module, x: torch.Tensor, method: fnmethods.Method, reps: int = 5) -> dict:
    """Median wall time of one forward pass of the deployed model on a batch, and BitOPs per sample."""
    from ..bitops import bitops
    deployed.eval()
    deployed(x)  # warm-up
    ts = []
    for _ in range(reps):
        t0 = time.perf_counter()
        deployed(x)
        ts.append(time.perf_counter() - t0)
    try:
        b = bitops(deployed, (1,) + tuple(x.shape[1:]))
        bits = {"bitops": float(b["total"]), "dense_bitops": float(b["dense_total"]),
                "cost_model": method.cost is not None}
    except Exception as e:  # a layer bitops cannot price: say so, the rest still runs
        bits = {"bitops": None, "dense_bitops": None, "cost_model": method.cost is not None,
                "bitops_error": f"{type(e).__name__}: {e}"}
    return {"batch": int(x.shape[0]), "ms_per_batch": 1000 * statistics.median(ts), "reps": reps, **bits}


def post_options(m: fnmethods.Method, budget: Budget) -> dict:
    """The post-conversion options the budget sets: every int option named '*epochs' capped at post_epochs."""
    if budget.post_epochs is None:
        return {}
    return {o.name: budget.post_epochs for o in m.post_options if o.name.endswith("epochs")
            and isinstance(o.default, int) and not isinstance(o.default, bool) and o.default > budget.post_epochs}


def evaluate_one(entry: Entry, seed: int, trained: dict, budget: Budget, splits, device: str,
                 log: Callable[[str], None]) -> dict:
    """Every number of one (entry, training seed) under the leaderboard protocol (see docs/robustness.md)."""
    from ..attacks import evaluate
    from ..convert import convert
    from ..train import load_checkpoint
    from ..train.loop import seed_everything

    m = entry.method_obj()
    seed_everything(seed)
    model, _ = load_checkpoint(trained["checkpoint"], device)
    conversion = None
    t0, c0 = time.perf_counter(), time.process_time()
    if _start(entry) == "trained":
        torch.manual_seed(seed)
        model = convert(model, m.name, **method_options(m, splits))
    if entry.method != "none" and (_start(entry) == "trained" or type(m).after_convert is not fnmethods.Method.after_convert):
        post = post_options(m, budget)
        what = m.after_convert(model, fnmethods.ConvertData.from_splits(splits, budget.batch_size, seed), **post)
        conversion = {"options": method_options(m, splits), "post_options": post, "post_recipe": what,
                      "seconds": time.perf_counter() - t0,
                      "cpu_s": time.process_time() - c0}
        log(f"[leaderboard]   {entry.key} seed {seed}: post-conversion recipe: {what}")
    model.eval()
    x, y = splits.test.tensors()
    eps0 = float(splits.default_eps)
    n_exp = budget.expensive_samples
    common = dict(eot=budget.eot, draws=budget.draws, device=device, seed=seed, n_classes=splits.num_classes,
                  batch_size=budget.attack_batch, log=log, method=m)
    steps = {"pgd20": budget.pgd_steps, "autoattack_rand": budget.aa_iterations, "square": budget.square_queries}
    lim = {"default": budget.eval_samples, "autoattack_rand": n_exp, "square": n_exp, "eot_curve": n_exp,
           "sanity": min(64, n_exp or 64)}
    lim = {k: v for k, v in lim.items() if v is not None}
    main = evaluate(model, (x, y), list(ATTACKS), eps0, protocol=("eot",), max_samples=lim, steps=steps,
                    eot_curve=list(budget.eot_curve), sanity_eps=budget.sanity_eps, **common)
    # the accuracy-vs-eps curve (PGD-20, headline protocol); the headline eps comes from `main`
    others = [e for e in _eps_curve(budget, eps0) if abs(e - eps0) > 1e-9]
    curve = evaluate(model, (x, y), ["pgd20"], others, protocol=("eot",), steps=steps,
                     max_samples={"default": budget.eval_samples} if budget.eval_samples else None,
                     sanity_eps=None, **common)
    # the method paper's protocol, labelled
    spec = m.evaluation
    seed_res, seed_kind = None, None
    seed_lim = {"default": n_exp} if n_exp else None
    if spec.stochastic:
        seed_kind = "one draw per attack step (attack sees 1 draw), classified with fresh draws"
        seed_res = evaluate(model, (x, y), ["pgd20"], eps0, protocol=("seed",), max_samples=seed_lim, steps=steps,
                            sanity_eps=None, **common)
    elif getattr(spec, "seed_gradients", None) is not None:
        seed_kind = "the paper's gradient (Evaluation.seed_gradients), forward values unchanged"
        with spec.seed_gradients(model):
            seed_res = evaluate(model, (x, y), ["pgd20"], eps0, max_samples=seed_lim, steps=steps, sanity_eps=None,
                                **common)
    else:  # the paper attacked the deterministic model as is: PGD-20, on the worst case's samples
        seed_kind = DETERMINISTIC
        seed_res = evaluate(model, (x, y), ["pgd20"], eps0, max_samples=seed_lim, steps=steps, sanity_eps=None,
                            **common)
    deployed = m.deploy(model)
    cost = _inference_cost(deployed, x[:budget.inference_batch].to(device), m)
    return {"format": FORMAT, "entry": entry.key, "label": entry.label, "method": entry.method,
            "seed": seed, "describe": _jsonable(m.describe()), "description": entry.description,
            "recipe": entry.recipe if entry.recipe is not None else m.training.recipe, "start": _start(entry),
            "architecture": architecture(entry, budget), "train": trained, "conversion": conversion, "eps": eps0, "main": _jsonable(main),
            "curve": _jsonable(curve), "seed_protocol": {"kind": seed_kind, "paper": spec.seed_protocol,
                                                         "result": _jsonable(seed_res) if seed_res else None},
            "inference": cost}


def _result_path(out: Path, entry: Entry, seed: int) -> Path:
    return out / "results" / f"{entry.key}-seed{seed}.json"


def _load_result(path: Path, entry: Entry) -> dict:
    r = json.loads(path.read_text())
    now = _jsonable(entry.method_obj().describe())
    if r.get("format") != FORMAT:
        raise ValueError(f"{path} holds results of another format ({r.get('format')!r}, this is {FORMAT!r}): choose "
                         f"another --out; nothing was overwritten")
    then = r.get("describe") or {}
    if then != now:
        diff = [f"{k}.{j}" if isinstance(now.get(k), dict) else k for k in sorted(set(then) | set(now))
                if then.get(k) != now.get(k)
                for j in (sorted(set(then.get(k) or {}) | set(now.get(k) or {})) if isinstance(now.get(k), dict) else [0])
                if not isinstance(now.get(k), dict) or (then.get(k) or {}).get(j) != now[k].get(j)]
        raise ValueError(f"{path} holds results of method {entry.key!r} as it was defined then; the registered one "
                         f"differs in {', '.join(diff)}: choose another --out (or delete that file to re-evaluate "
                         f"it); nothing was overwritten")
    return r


class _Claims:
    """Jobs handed out to whichever rank asks first (a file created exclusively under DIR/.claims/<run id>/):
    a rank that finishes early takes the next job, so unequal jobs balance. The run id is rank 0's, new for
    every run, so the claims of a killed run do not block its resumption. One process: every job is its own."""

    def __init__(self, out: Path, d: "_Dist") -> None:
        import uuid
        self.d = d
        self.dir = out / ".claims" / str(d.broadcast(uuid.uuid4().hex[:12]))
        if d.world > 1:
            self.dir.mkdir(parents=True, exist_ok=True)
        d.barrier()

    def __call__(self, name: str) -> bool:
        if self.d.world == 1:
            return True
        try:
            os.close(os.open(self.dir / name, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
            return True
        except FileExistsError:
            return False

    def close(self) -> None:
        if self.d.rank == 0:
            import shutil
            shutil.rmtree(self.dir.parent, ignore_errors=True)


# ---- the run ---------------------------------------------------------------------------------------------

def _progress(items, enabled: bool, desc: str):
    if not enabled or not sys.stderr.isatty():
        return items
    from tqdm.auto import tqdm
    return tqdm(items, desc=desc, leave=False, dynamic_ncols=True)


def run(dataset: str = "digits", methods: Union[str, Sequence[str]] = "all", budget: Union[str, Budget] = "quick",
        seeds: int = 1, out: Union[str, os.PathLike] = "runs/leaderboard", *, device: str = "cpu",
        distributed: bool = False, data_root: Optional[str] = None, progress: bool = True,
        log: Optional[Callable[[str], None]] = None) -> Optional[dict]:
    """Train and evaluate every selected entry for `seeds` training seeds (0..seeds-1) under one budget and
    protocol; write DIR/leaderboard.json, leaderboard.md and the plots. Returns the leaderboard (rank 0;
    None on the other ranks). Errors (ValueError) name the valid data sets, budgets and methods."""
    from . import _report
    if dataset not in fndata.names():
        raise ValueError(f"dataset must be one of {fndata.names()}, got {dataset!r}")
    b = get_budget(budget, dataset)
    if isinstance(seeds, bool) or not isinstance(seeds, int) or seeds < 1:
        raise ValueError(f"seeds must be an int >= 1, got {seeds!r}")
    entries = select_entries(methods)
    if not isinstance(device, str) or not (device == "cpu" or device.startswith("cuda")):
        raise ValueError(f"device must be 'cpu', 'cuda' or 'cuda:N', got {device!r}")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError(f"device={device!r} but CUDA is not available (torch {torch.__version__})")
    out = Path(out)
    d = _Dist(distributed, device)
    say = log or (lambda s: print(s, flush=True))
    log0 = say if d.rank == 0 else (lambda s: None)
    quiet = lambda s: None  # noqa: E731  (the harness's per-attack lines; the progress bars show the phases)
    threads = torch.get_num_threads()
    try:
        err = None
        if d.rank == 0:
            try:
                check_out_dir(out, dataset, b, write=True)
            except ValueError as e:
                err = str(e)
        err = d.broadcast(err)
        if err:
            raise ValueError(err)
        if d.world > 1 and device.startswith("cuda"):
            device = f"cuda:{torch.cuda.current_device()}"
        torch.set_num_threads(b.threads)
        splits = fndata.load(dataset, data_root, seed=0)
        t_start, c_start = time.perf_counter(), time.process_time()
        jobs = [(e, s) for e in entries for s in range(seeds)]
        cfgs = {(e.key, s): train_config(e, s, b, dataset, splits, out, device, data_root) for e, s in jobs}
        # 1. training: every distinct config once, shared out over the ranks
        unique = list({c.out_dir: c for c in cfgs.values()}.values())
        log0(f"[leaderboard] {dataset}, budget {b.name}: {len(entries)} entries x {seeds} seed(s) = {len(jobs)} "
             f"models from {len(unique)} training runs; {d.world} process(es); output {out}")
        claim = _Claims(out, d)
        fails = out / "failed"  # one file per failed job of this run (a rerun retries it)

        def failed(name: str, exc: BaseException) -> None:
            msg = f"{type(exc).__name__}: {exc}"
            say(f"[leaderboard] {name} FAILED: {msg}")
            _atomic_json(fails / f"{name}.json", {"job": name, "error": msg})

        def cleared(name: str) -> None:
            (fails / f"{name}.json").unlink(missing_ok=True)

        for c in _progress(unique, progress and d.rank == 0, "training"):
            name = f"train-{Path(c.out_dir).name}"
            if _finished(c) is None and claim(name):
                try:
                    train_one(c, log0 if d.world == 1 else say)
                    cleared(name)
                except Exception as exc:  # one method's failure must not stop the others
                    failed(name, exc)
        d.barrier()
        trained = {c.out_dir: train_one(c, quiet) for c in unique if _finished(c) is not None}  # reads checkpoints
        # 2. evaluation: one job per (entry, seed), shared out over the ranks
        bar = _progress(jobs, progress and d.rank == 0, "evaluating")
        for e, s in bar:
            path = _result_path(out, e, s)
            if path.is_file():
                _load_result(path, e)
                continue
            name = f"eval-{e.key}-seed{s}"
            if cfgs[(e.key, s)].out_dir not in trained or not claim(name):
                continue
            if hasattr(bar, "set_postfix_str"):
                bar.set_postfix_str(f"{e.key} seed {s}")
            (log0 if d.world == 1 else say)(f"[leaderboard{'' if d.world == 1 else f' rank {d.rank}'}] evaluate "
                                             f"{e.key} seed {s}")
            t0, c0 = time.perf_counter(), time.process_time()
            try:
                # the harness's per-attack lines go to the progress bar (attack by attack), not to the log
                show = ((lambda line, k=e.key: bar.set_postfix_str(f"{k}: {line.replace('[eval] ', '')[:70]}"))
                        if hasattr(bar, "set_postfix_str") else quiet)
                r = evaluate_one(e, s, trained[cfgs[(e.key, s)].out_dir], b, splits, device, show)
            except Exception as exc:
                failed(name, exc)
                continue
            r["eval_seconds"], r["eval_cpu_seconds"] = time.perf_counter() - t0, time.process_time() - c0
            _atomic_json(path, r)
            cleared(name)
        d.barrier()
        claim.close()
        if d.rank != 0:
            return None
        results, failures = [], []
        for e, s in jobs:
            path = _result_path(out, e, s)
            if path.is_file():
                results.append(_load_result(path, e))
                continue
            f = fails / f"train-{Path(cfgs[(e.key, s)].out_dir).name}.json"
            f = f if f.is_file() else fails / f"eval-{e.key}-seed{s}.json"
            err = json.loads(f.read_text())["error"] if f.is_file() else "no result (unknown error)"
            failures.append({"entry": e.key, "label": e.label, "seed": s,
                             "stage": "training" if f.name.startswith("train-") else "evaluation", "error": err})
        meta = {"date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"), "commit": _commit(),
                "machine": f"{platform.node()} {platform.machine()} {os.cpu_count()} cpus",
                "device": device, "processes": d.world, "torch": torch.__version__,
                "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
                "wall_s": time.perf_counter() - t_start, "cpu_s": time.process_time() - c_start}
        board = _report.build(results, entries, seeds, dataset, b, _eps_curve(b, float(splits.default_eps)), meta,
                              failures)
        board["paths"] = _report.write(board, out)
        return board
    finally:
        torch.set_num_threads(threads)
        d.close()
