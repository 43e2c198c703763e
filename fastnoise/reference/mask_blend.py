"""Reference mask_blend: eager PyTorch (torch.topk), deterministic ties. Kernel signature of
fastnoise_kernels::mask_blend / mask_select / mask_blend_backward.

Selection rule shared by every backend (see fastnoise/ops/mask_blend.py):
  score s = |z_approx| (signed_score False) or z_approx; NaN ranks above every number (like torch.topk),
  all NaNs are equal, -0 == +0. Keep the `k` largest scores of a row (k = keep, or n of each group of m);
  among equal scores at the threshold, lower indices win.
"""
from __future__ import annotations

import torch


def _topk_mask(s: torch.Tensor, k: int) -> torch.Tensor:
    """Bool mask of the k largest entries along the last dim of s; ties -> lower index; NaN largest."""
    length = s.shape[-1]
    if k <= 0 or s.numel() == 0:
        return torch.zeros(s.shape, dtype=torch.bool, device=s.device)
    if k >= length:
        return torch.ones(s.shape, dtype=torch.bool, device=s.device)
    thr = s.topk(k, dim=-1).values[..., -1:]                  # the k-th largest score of each row
    s_nan, t_nan = torch.isnan(s), torch.isnan(thr)
    gt = (s > thr) | (s_nan & ~t_nan)
    eq = (s == thr) | (s_nan & t_nan)
    need = k - gt.sum(-1, keepdim=True)                        # how many ties to take, lowest index first
    return gt | (eq & (eq.cumsum(-1) <= need))


def mask_select(za: torch.Tensor, keep: int, n: int, m: int, signed_score: bool, dim: int) -> torch.Tensor:
    s = (za if signed_score else za.abs()).movedim(dim, -1)
    feats = s.shape[-1]
    if m > 0:  # N:M: keep n of every m consecutive features
        mask = _topk_mask(s.reshape(*s.shape[:-1], feats // m, m), n).reshape(s.shape)
    else:
        mask = _topk_mask(s, keep)
    return mask.movedim(-1, dim).contiguous()


def mask_blend(z: torch.Tensor, za: torch.Tensor, keep: int, n: int, m: int, signed_score: bool,
               dim: int) -> tuple[torch.Tensor, torch.Tensor]:
    mask = mask_select(za, keep, n, m, signed_score, dim)
    return torch.where(mask, z, za).contiguous(), mask


def mask_blend_backward(grad: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    zero = torch.zeros((), dtype=grad.dtype, device=grad.device)
    return torch.where(mask, grad, zero).contiguous(), torch.where(mask, zero, grad).contiguous()
