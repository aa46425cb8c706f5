"""Projected gradient descent (PGD) attacks in the L2 and L-inf balls (Madry et al. 2018).

Images are in [0, 1]; ``eps`` is in the same pixel units (L-inf 8/255 is written ``8/255``).
The attack maximises the cross-entropy loss by gradient *ascent* on the perturbation:
a random start inside the ball, then ``steps`` steps of size ``step_size`` along the
normalised gradient (L2) or its sign (L-inf), each followed by projection onto the ball and
clamping of the image to [0, 1]. The model is put in eval mode during the attack (BatchNorm
uses its running statistics, nothing is updated) and its previous mode is restored after.

The random start is uniform in the ball: L-inf draws each coordinate from U(-eps, eps); L2
draws a uniformly random direction (a normalised Gaussian) and a radius ``eps * U**(1/d)``
with ``d`` the number of pixels (the volume-uniform radius, which for images is ~eps).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .images import sobel_magnitude

__all__ = ["pgd", "fooled", "edge_alignment", "attack_and_align", "NORMS"]

NORMS = ("l2", "linf")


def _flat_norm(t: torch.Tensor) -> torch.Tensor:
    """Per-sample L2 norm, shaped to broadcast against ``t``."""
    return t.flatten(1).norm(dim=1).view(-1, *([1] * (t.dim() - 1)))


def _random_start(x: torch.Tensor, norm: str, eps: float) -> torch.Tensor:
    if norm == "linf":
        return torch.empty_like(x).uniform_(-eps, eps)
    d = x[0].numel()
    direction = torch.randn_like(x)
    direction = direction / _flat_norm(direction).clamp_min(1e-12)
    radius = eps * torch.rand(x.shape[0], device=x.device, dtype=x.dtype) ** (1.0 / d)
    return direction * radius.view(-1, *([1] * (x.dim() - 1)))


def _project(delta: torch.Tensor, norm: str, eps: float) -> torch.Tensor:
    if norm == "linf":
        return delta.clamp(-eps, eps)
    return delta * (eps / _flat_norm(delta).clamp_min(1e-12)).clamp(max=1.0)


def _validate(norm, eps, steps, step_size) -> None:
    if norm not in NORMS:
        raise ValueError(f"norm={norm!r} is not allowed; allowed: {list(NORMS)}")
    if not isinstance(eps, (int, float)) or isinstance(eps, bool) or not math.isfinite(eps) \
            or eps < 0:
        raise ValueError(f"eps={eps!r} is not allowed; must be a finite number >= 0 "
                         f"(pixel units, images in [0, 1])")
    if not isinstance(steps, int) or isinstance(steps, bool) or steps < 1:
        raise ValueError(f"steps={steps!r} is not allowed; must be an integer >= 1")
    if step_size is not None and (not isinstance(step_size, (int, float)) or step_size <= 0):
        raise ValueError(f"step_size={step_size!r} is not allowed; must be a number > 0 or None "
                         f"(None means 2.5 * eps / steps)")


def _ascent(x: torch.Tensor, delta: torch.Tensor, grad: torch.Tensor, norm: str, eps: float,
            step: float) -> torch.Tensor:
    """One PGD step on ``delta``: along the gradient's sign (L-inf) or its normalised direction
    (L2), projected onto the eps-ball, the image clamped to [0, 1]."""
    if norm == "linf":
        delta = delta + step * grad.sign()
    else:
        delta = delta + step * grad / _flat_norm(grad).clamp_min(1e-12)
    delta = _project(delta, norm, eps)
    return (x + delta).clamp(0, 1) - x


def pgd(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, norm: str, eps: float,
        steps: int, step_size: float | None = None, random_start: bool = True) -> torch.Tensor:
    """Adversarial images ``x_adv`` (same shape, in [0, 1]) with ``||x_adv - x||_norm <= eps``.

    ``norm`` is ``"l2"`` or ``"linf"``; ``eps`` in pixel units; ``step_size`` defaults to
    ``2.5 * eps / steps``. ``eps == 0`` returns a copy of ``x``. Model parameters receive no
    gradients (their ``.grad`` is left untouched).
    """
    _validate(norm, eps, steps, step_size)
    x = x.detach()
    if eps == 0:
        return x.clone()
    step = 2.5 * eps / steps if step_size is None else float(step_size)
    was_training = model.training
    model.eval()
    try:
        delta = _random_start(x, norm, eps) if random_start else torch.zeros_like(x)
        delta = (x + delta).clamp(0, 1) - x
        for _ in range(steps):
            delta.requires_grad_(True)
            loss = F.cross_entropy(model(x + delta), y, reduction="sum")
            (grad,) = torch.autograd.grad(loss, delta)
            with torch.no_grad():
                delta = _ascent(x, delta, grad, norm, eps, step)
        return (x + delta).detach()
    finally:
        model.train(was_training)


def fooled(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, norm: str, eps: float,
           steps: int, step_size: float | None = None) -> torch.Tensor:
    """Per image (bool, N): is ``x`` itself, the random start or any of the ``steps`` PGD
    iterates of :func:`pgd` misclassified? (Robust accuracy is the share of False: an image
    fooled at any point counts as broken, an attack at least as strong as the last iterate
    alone, and robust <= clean accuracy exactly.) Fooled images are not attacked further, so a
    weak model costs few steps; the others follow :func:`pgd`'s steps (same random start)."""
    _validate(norm, eps, steps, step_size)
    x = x.detach()
    step = 2.5 * eps / steps if step_size is None else float(step_size)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            out = model(x).argmax(1) != y
        if eps == 0:
            return out
        delta = (x + _random_start(x, norm, eps)).clamp(0, 1) - x
        for k in range(steps + 1):
            idx = (~out).nonzero().squeeze(1)
            if idx.numel() == 0:
                break
            xi, yi, d = x[idx], y[idx], delta[idx].requires_grad_(True)
            logits = model(xi + d)
            out[idx] = logits.argmax(1) != yi
            if k == steps:
                break
            (grad,) = torch.autograd.grad(F.cross_entropy(logits, yi, reduction="sum"), d)
            with torch.no_grad():
                delta[idx] = _ascent(xi, d, grad, norm, eps, step)
        return out
    finally:
        model.train(was_training)


def edge_alignment(x: torch.Tensor, x_adv: torch.Tensor) -> torch.Tensor:
    """Per-image Pearson correlation (N,) between the perturbation size ``|x_adv - x|`` (summed
    over channels) and the edge strength (Sobel gradient magnitude) of ``x``; in [-1, 1].

    High values mean the attack changes the image along its object outlines ("shape-like"
    perturbations), values near 0 mean it spreads texture-like noise.
    """
    edges = sobel_magnitude(x).to(x.dtype).flatten(1)
    pert = (x_adv - x).abs().sum(1).flatten(1)
    e, p = edges - edges.mean(1, keepdim=True), pert - pert.mean(1, keepdim=True)
    return (e * p).sum(1) / (e.norm(dim=1) * p.norm(dim=1)).clamp_min(1e-12)


def attack_and_align(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, norm: str,
                     eps: float, steps: int, seed: int = 0):
    """``(x_adv, pred, alignment)``: PGD adversarial images of ``x`` (drawn after
    ``torch.manual_seed(seed)``, so the same call gives the same images), the model's predicted
    classes (N,) on them, and each perturbation's :func:`edge_alignment` (N,)."""
    torch.manual_seed(seed)
    x_adv = pgd(model, x, y, norm, eps, steps=steps)
    with torch.no_grad():
        pred = model(x_adv).argmax(1)
    return x_adv, pred, edge_alignment(x, x_adv)
