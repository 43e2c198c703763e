"""NENNI measurement on a small CNN trained on the digits data set (sklearn's 8x8 digits, CPU, minutes).

    python benchmarks/nenni_digits.py [--epochs 50] [--ks 16,32,64,default] [--out results/nenni_digits.json]

1. trains a plain CNN (conv 1->16, conv 16->32, conv 32->64, fc 256->128, fc 128->10) with plain PyTorch;
2. for each projection size k: converts it (`fastnoise.convert(model, "nenni", ratio=0.9, k=k)`: conv2,
   conv3 and fc1 become NENNI layers; the stem and the classifier stay exact), runs the seed's
   distillation (`fastnoise.nenni.distill`, momentum SGD on Eq. 1), and reports on the test split the
   per-layer relative error ||z - z~||^2 / ||z||^2 and the recall of the true top-10% by |z|
   (`topk_recall(ratio=0.9)`), in float and after the one-time INT4 quantization;
3. for the default k: 1 epoch of noisy fine-tuning, then clean accuracy dense vs noisy (r = 0.9).
"""
from __future__ import annotations

import argparse
import copy
import json
import os
import sys
import time
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import fastnoise  # noqa: E402
import fastnoise.nenni as nenni  # noqa: E402


class DigitsCNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 16, 3, padding=1)
        self.conv2 = nn.Conv2d(16, 32, 3, padding=1)
        self.conv3 = nn.Conv2d(32, 64, 3, padding=1)
        self.fc1 = nn.Linear(256, 128)
        self.fc2 = nn.Linear(128, 10)

    def forward(self, x):
        x = F.relu(self.conv1(x))
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        x = F.max_pool2d(F.relu(self.conv3(x)), 2)
        return self.fc2(F.relu(self.fc1(x.flatten(1))))


def load_digits():
    """(x_train, y_train, x_test, y_test): [N, 1, 8, 8] in [0, 1]; fastnoise.data when present."""
    try:
        from fastnoise import data
        sp = data.load("digits")
        xtr = torch.cat([sp.train.x.float(), sp.val.x.float()]) * sp.train.scale
        ytr = torch.cat([sp.train.y, sp.val.y])
        return xtr, ytr, sp.test.x.float() * sp.test.scale, sp.test.y
    except (ImportError, AttributeError):
        from sklearn.datasets import load_digits as sk
        X, y = sk(return_X_y=True)
        X = torch.tensor(X, dtype=torch.float32).view(-1, 1, 8, 8) / 16.0
        y = torch.tensor(y)
        perm = torch.randperm(len(X), generator=torch.Generator().manual_seed(0))
        X, y = X[perm], y[perm]
        return X[:1400], y[:1400], X[1400:], y[1400:]


def batches(x, y, bs=64, shuffle_seed=None):
    idx = torch.arange(len(x)) if shuffle_seed is None else torch.randperm(
        len(x), generator=torch.Generator().manual_seed(shuffle_seed))
    return [(x[idx[i:i + bs]], y[idx[i:i + bs]]) for i in range(0, len(x), bs)]


def accuracy(model, x, y):
    model.eval()
    with torch.no_grad():
        return float((model(x).argmax(1) == y).float().mean())


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--epochs", type=int, default=50, help="distillation epochs (the seed: 50)")
    p.add_argument("--ks", default="16,32,64,default")
    p.add_argument("--ratio", type=float, default=0.9)
    p.add_argument("--lr", type=float, default=0.2, help="distillation learning rate (normalized objective)")
    p.add_argument("--out", default=os.path.join("results", "nenni_digits.json"))
    args = p.parse_args(argv)
    torch.manual_seed(0)
    xtr, ytr, xte, yte = load_digits()
    model = DigitsCNN()
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    for ep in range(15):
        model.train()
        for xb, yb in batches(xtr, ytr, shuffle_seed=ep):
            opt.zero_grad()
            F.cross_entropy(model(xb), yb).backward()
            opt.step()
    base_acc = accuracy(model, xte, yte)
    print(f"digits CNN: test accuracy {base_acc:.4f} ({len(xtr)} train / {len(xte)} test)")
    train_loader = batches(xtr, ytr)
    test_loader = batches(xte, yte, bs=256)
    results = {"base_accuracy": base_acc, "ratio": args.ratio, "epochs": args.epochs, "lr": args.lr, "runs": []}
    for ks in args.ks.split(","):
        k = None if ks == "default" else int(ks)
        m = fastnoise.convert(copy.deepcopy(model), "nenni", ratio=args.ratio, k=k)
        layer_k = {n: l.k for n, l in nenni.nenni_layers(m)}
        t0 = time.perf_counter()
        nenni.distill(m, train_loader, epochs=args.epochs, lr=args.lr, finetune_epochs=0, quantize=False,
                      progress=False)
        t_distill = time.perf_counter() - t0
        err = nenni.approx_error(m, test_loader)
        rec = nenni.topk_recall(m, test_loader, ratio=args.ratio)
        nenni.quantize_(m)
        err_q = nenni.approx_error(m, test_loader)
        rec_q = nenni.topk_recall(m, test_loader, ratio=args.ratio)
        run = {"k": ks, "layer_k": layer_k, "distill_s": round(t_distill, 1), "rel_error": err, "recall": rec,
               "rel_error_int4": err_q, "recall_int4": rec_q}
        if k is None:
            try:
                nenni.distill(m, train_loader, epochs=0, finetune_epochs=1, finetune_approx=False, progress=False)
                nenni.set_nenni_mode(m, "dense")
                run["accuracy_dense"] = accuracy(m, xte, yte)
                nenni.set_nenni_mode(m, "noisy")
                run["accuracy_noisy"] = accuracy(m, xte, yte)
            except ImportError as e:  # the noisy path needs the mask_blend / sampled ops
                run["accuracy_noisy"] = f"unavailable: {e}"
        results["runs"].append(run)
        print(f"k={ks} {layer_k}: distill {t_distill:.1f}s")
        for name in err:
            print(f"  {name:8s} rel_err {err[name]:.4f} (INT4 {err_q[name]:.4f})  recall@r={args.ratio} "
                  f"{rec[name]:.3f} (INT4 {rec_q[name]:.3f})")
        print(f"  mean recall {rec['mean']:.3f} (INT4 {rec_q['mean']:.3f})"
              + (f"; accuracy dense {run['accuracy_dense']:.4f} noisy {run['accuracy_noisy']}"
                 if "accuracy_dense" in run else ""))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=1))
    print(f"written {args.out}")


if __name__ == "__main__":
    main()
