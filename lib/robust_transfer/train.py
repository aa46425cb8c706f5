"""Source training (natural, PGD-adversarial, Gaussian-noise control) and its evaluation.

Recipe (one for every source so that only the training *objective* differs): SGD with
Nesterov momentum 0.9, weight decay 5e-4, a one-cycle learning-rate schedule peaking at
``lr``, batch ``batch_size``, ``epochs`` passes over the images in a seeded order.

- ``norm="natural"``: plain cross-entropy on the clean images.
- ``norm="l2"`` / ``"linf"``: Madry et al. adversarial training; every batch is replaced by
  its PGD adversarial examples (``steps`` steps, step 2.5*eps/steps, random start) against the
  current model before the gradient step.
- ``norm="noise"``: the control: every batch gets i.i.d. Gaussian pixel noise of standard
  deviation ``eps`` (clamped to [0, 1]), same recipe, no attack.

Everything is seeded by ``seed`` (initialisation is seeded by the caller, see
:func:`robust_transfer.zoo.load`), so two runs with the same seed and thread count give the
same weights on CPU.
"""
from __future__ import annotations

import time

import torch
import torch.nn.functional as F
from . import attacks
from .progress import bar

__all__ = ["TRAIN_NORMS", "train_source", "evaluate", "robust_accuracies"]

TRAIN_NORMS = ("natural", "l2", "linf", "noise")


def _check(norm, eps, steps, epochs, batch_size, lr) -> None:
    if norm not in TRAIN_NORMS:
        raise ValueError(f"norm={norm!r} is not allowed; allowed: {list(TRAIN_NORMS)}")
    if not isinstance(eps, (int, float)) or eps < 0 or (norm == "natural" and eps != 0):
        raise ValueError(f"eps={eps!r} is not allowed for norm={norm!r}; must be >= 0 "
                         f"(and 0 for natural training)")
    for name, v in (("steps", steps), ("epochs", epochs), ("batch_size", batch_size)):
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            raise ValueError(f"{name}={v!r} is not allowed; must be a positive integer")
    if not isinstance(lr, (int, float)) or not 0 < lr <= 10:
        raise ValueError(f"lr={lr!r} is not allowed; must be a number in (0, 10]")


def train_source(model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor, *,
                 norm: str = "natural", eps: float = 0.0, steps: int = 3, epochs: int = 2,
                 batch_size: int = 128, lr: float = 0.1, weight_decay: float = 5e-4,
                 seed: int = 0, progress: bool = True) -> dict:
    """Train ``model`` in place; returns the recipe dict (all arguments + ``train_seconds``
    wall-clock and ``train_cpu_seconds`` of this process).

    ``images`` in [0, 1], shape (N, C, H, W); ``eps`` in pixel units (the noise sigma for
    ``norm="noise"``). The model is left in eval mode.
    """
    _check(norm, eps, steps, epochs, batch_size, lr)
    device = next(model.parameters()).device
    torch.manual_seed(seed)
    order_rng = torch.Generator().manual_seed(seed)
    n = len(images)
    batches = (n + batch_size - 1) // batch_size
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, nesterov=True,
                          weight_decay=weight_decay)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=epochs * batches,
                                                pct_start=0.25)
    start, cpu_start = time.perf_counter(), time.process_time()
    pbar = bar(total=epochs * batches, desc=f"train {norm} eps={eps:g} seed={seed}",
               disable=not progress, leave=False)
    model.train()
    for _ in range(epochs):
        perm = torch.randperm(n, generator=order_rng)
        for b in range(batches):
            idx = perm[b * batch_size:(b + 1) * batch_size]
            x, y = images[idx].to(device), labels[idx].to(device)
            if norm in attacks.NORMS and eps > 0:
                x = attacks.pgd(model, x, y, norm, eps, steps)
            elif norm == "noise" and eps > 0:
                x = (x + eps * torch.randn_like(x)).clamp(0, 1)
            loss = F.cross_entropy(model(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            pbar.update()
    pbar.close()
    model.eval()
    return dict(norm=norm, eps=float(eps), steps=steps if norm in attacks.NORMS else 0,
                epochs=epochs, batch_size=batch_size, lr=lr, weight_decay=weight_decay,
                optimizer="SGD nesterov momentum 0.9, one-cycle", seed=seed, train_images=n,
                train_seconds=round(time.perf_counter() - start, 2),
                train_cpu_seconds=round(time.process_time() - cpu_start, 2))


def evaluate(model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor, *,
             norm: str | None = None, eps: float = 0.0, steps: int = 10,
             batch_size: int = 500, seed: int = 0) -> float:
    """Top-1 accuracy in [0, 1]: clean if ``norm`` is None or ``eps`` is 0, else under PGD.

    Under PGD (``steps`` steps, default step size, random start seeded by ``seed``) an image
    counts as correct only if neither it nor any PGD iterate is misclassified
    (:func:`attacks.fooled`), so robust accuracy <= clean accuracy.
    """
    if norm is not None and norm not in attacks.NORMS:
        raise ValueError(f"norm={norm!r} is not allowed; allowed: None (clean) or "
                         f"{list(attacks.NORMS)}")
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    torch.manual_seed(seed)
    correct = 0
    try:
        for i in range(0, len(images), batch_size):
            x, y = images[i:i + batch_size].to(device), labels[i:i + batch_size].to(device)
            if norm is not None and eps > 0:
                correct += (~attacks.fooled(model, x, y, norm, eps, steps)).sum().item()
                continue
            with torch.no_grad():
                correct += (model(x).argmax(1) == y).sum().item()
    finally:
        model.train(was_training)
    return correct / max(len(images), 1)


def robust_accuracies(model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor,
                      attack_eps: dict[str, tuple[float, ...]], *, steps: int = 10,
                      progress: bool = False) -> dict:
    """``{"clean_acc": acc, "robust_acc": {norm: {eps: acc}}}``, accuracies in [0, 1].

    ``attack_eps`` maps an attack norm (``"l2"``/``"linf"``) to the eps values to attack with.
    """
    out = {"clean_acc": evaluate(model, images, labels), "robust_acc": {}}
    todo = [(nm, e) for nm, es in attack_eps.items() for e in es]
    for nm, e in bar(todo, desc="robust eval", disable=not progress, leave=False):
        out["robust_acc"].setdefault(nm, {})[float(e)] = evaluate(
            model, images, labels, norm=nm, eps=float(e), steps=steps)
    return out
