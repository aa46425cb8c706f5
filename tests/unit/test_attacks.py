"""PGD: ball and box constraints, loss increase, more steps no weaker, eps=0, closed-form optimum."""
import itertools
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from robust_transfer import attacks, models

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def cnn_batch():
    torch.manual_seed(0)
    model = models.build("resnet8", 10, 1).eval()
    x = torch.rand(16, 1, 28, 28)
    y = torch.randint(0, 10, (16,))
    return model, x, y


def _dist(a, b, norm):
    d = (a - b).flatten(1)
    return d.norm(dim=1) if norm == "l2" else d.abs().amax(dim=1)


@pytest.mark.parametrize("norm,eps", [("l2", 1.5), ("linf", 0.1)])
def test_in_ball_and_box_and_loss_rises(cnn_batch, norm, eps):
    model, x, y = cnn_batch
    x_adv = attacks.pgd(model, x, y, norm, eps, steps=5)
    assert x_adv.shape == x.shape
    assert (_dist(x_adv, x, norm) <= eps * (1 + 1e-5)).all()
    assert x_adv.min() >= 0 and x_adv.max() <= 1
    with torch.no_grad():
        clean, adv = F.cross_entropy(model(x), y), F.cross_entropy(model(x_adv), y)
    assert adv > clean + 1e-3


def test_eps_zero_is_identity_and_mode_restored(cnn_batch):
    model, x, y = cnn_batch
    model.train()
    bn = model.stem[1]
    before = bn.running_mean.clone()
    assert torch.equal(attacks.pgd(model, x, y, "linf", 0.0, steps=3), x)
    attacks.pgd(model, x, y, "l2", 1.0, steps=2)
    assert model.training, "mode must be restored"
    assert torch.equal(bn.running_mean, before), "BatchNorm statistics must not move (eval mode)"
    assert all(p.grad is None for p in model.parameters()), "no gradients left on parameters"
    model.eval()


def test_more_steps_no_weaker():
    # a model that classifies its data well, so the attack has something to break
    g = torch.Generator().manual_seed(1)
    x = torch.rand(400, 1, 6, 6, generator=g)
    y = (x[:, 0, :3].mean((1, 2)) > x[:, 0, 3:].mean((1, 2))).long()
    model = nn.Sequential(nn.Flatten(), nn.Linear(36, 32), nn.ReLU(), nn.Linear(32, 2))
    opt = torch.optim.Adam(model.parameters(), 1e-2)
    for _ in range(300):
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()
    model.eval()

    def acc(x_):
        with torch.no_grad():
            return (model(x_).argmax(1) == y).float().mean().item()

    assert acc(x) > 0.9
    for norm, eps in (("l2", 0.3), ("linf", 0.05)):
        torch.manual_seed(0)
        one = acc(attacks.pgd(model, x, y, norm, eps, steps=1))
        torch.manual_seed(0)
        ten = acc(attacks.pgd(model, x, y, norm, eps, steps=10))
        assert ten <= one + 0.01, (norm, one, ten)
        assert ten < acc(x), "the attack should break some predictions"


def _linear(d, seed):
    torch.manual_seed(seed)
    lin = nn.Linear(d, 2)
    return lin, torch.full((1, d), 0.5), torch.tensor([0])


def test_linf_matches_brute_force_vertex_search():
    # cross-entropy of a linear model is convex in x, so its max over the L-inf box is at one of
    # the 2^d vertices; x = 0.5 and eps = 0.1 keep the box inside [0, 1]
    d, eps = 6, 0.1
    lin, x, y = _linear(d, 0)
    best = max(F.cross_entropy(lin(x + eps * torch.tensor([s], dtype=torch.float32)), y).item()
               for s in itertools.product((-1.0, 1.0), repeat=d))
    x_adv = attacks.pgd(lin, x, y, "linf", eps, steps=20)
    got = F.cross_entropy(lin(x_adv), y).item()
    assert got == pytest.approx(best, rel=1e-5)
    w = lin.weight[1] - lin.weight[0]  # the closed form: delta = eps * sign(w_other - w_y)
    assert torch.allclose(x_adv - x, eps * w.sign().view(1, -1), atol=1e-6)


def test_l2_matches_brute_force_circle_search():
    # in 2-d the max over the L2 disc is on its boundary circle: search it on a fine grid
    eps = 0.2
    lin, x, y = _linear(2, 1)
    angles = torch.linspace(0, 2 * math.pi, 20001)
    circle = eps * torch.stack([angles.cos(), angles.sin()], 1)
    with torch.no_grad():
        best = F.cross_entropy(lin(x + circle), y.expand(len(circle)), reduction="none").max()
    w = lin.weight[1] - lin.weight[0]  # closed form: delta = eps * w / ||w||
    # from a random start on the sphere PGD's angle to the optimum shrinks geometrically
    for random_start, steps in ((False, 10), (True, 60)):
        x_adv = attacks.pgd(lin, x, y, "l2", eps, steps=steps, step_size=eps / 4,
                            random_start=random_start)
        got = F.cross_entropy(lin(x_adv), y).item()
        assert got == pytest.approx(best.item(), rel=1e-5)
        assert torch.allclose(x_adv - x, eps * w.view(1, -1) / w.norm(), atol=1e-4)


@pytest.mark.parametrize("kwargs,match", [
    (dict(norm="l1", eps=1.0, steps=1), "norm"),
    (dict(norm="l2", eps=-1.0, steps=1), "eps"),
    (dict(norm="l2", eps=float("nan"), steps=1), "eps"),
    (dict(norm="linf", eps=0.1, steps=0), "steps"),
    (dict(norm="linf", eps=0.1, steps=2.5), "steps"),
    (dict(norm="linf", eps=0.1, steps=2, step_size=0), "step_size"),
])
def test_bad_arguments(cnn_batch, kwargs, match):
    model, x, y = cnn_batch
    with pytest.raises(ValueError, match=match):
        attacks.pgd(model, x, y, **kwargs)


def test_edge_alignment():
    x = torch.zeros(2, 1, 12, 12)
    x[:, :, 3:9, 3:9] = 1.0  # a square: edges on its outline
    edges_only = x.clone()
    edges_only[:, :, 4:8, 4:8] = 0.0
    on_outline = x + 0.05 * edges_only
    noise = x + 0.05 * torch.rand(x.shape, generator=torch.Generator().manual_seed(0))
    assert (attacks.edge_alignment(x, on_outline) > 0.5).all()
    assert (attacks.edge_alignment(x, noise).abs() < 0.25).all()


def test_attack_and_align_is_seeded_and_matches_its_parts(cnn_batch):
    model, x, y = cnn_batch
    x_adv, pred, align = attacks.attack_and_align(model, x, y, "l2", 1.0, steps=2, seed=0)
    torch.rand(3)  # the global generator moves on; the call reseeds itself
    again = attacks.attack_and_align(model, x, y, "l2", 1.0, steps=2, seed=0)
    assert torch.equal(x_adv, again[0]) and torch.equal(pred, again[1]) and torch.equal(align, again[2])
    torch.manual_seed(0)
    by_hand = attacks.pgd(model, x, y, "l2", 1.0, steps=2)
    assert torch.equal(x_adv, by_hand)
    with torch.no_grad():
        assert torch.equal(pred, model(by_hand).argmax(1))
    assert torch.equal(align, attacks.edge_alignment(x, by_hand)) and align.shape == (len(x),)
    other = attacks.attack_and_align(model, x, y, "l2", 1.0, steps=2, seed=1)[0]
    assert not torch.equal(x_adv, other)


@pytest.mark.parametrize("norm,eps", [("l2", 1.0), ("linf", 0.1)])
def test_fooled_counts_any_iterate(cnn_batch, norm, eps):
    """An image counts as fooled when it, the random start or any PGD iterate is misclassified:
    never fewer than pgd's last iterate (same seed), never fewer than the clean errors."""
    model, x, y = cnn_batch
    clean_wrong = model(x).argmax(1) != y
    torch.manual_seed(0)
    last_wrong = model(attacks.pgd(model, x, y, norm, eps, steps=5)).argmax(1) != y
    torch.manual_seed(0)
    fooled = attacks.fooled(model, x, y, norm, eps, steps=5)
    assert fooled.dtype == torch.bool and fooled.shape == y.shape
    assert not (clean_wrong & ~fooled).any() and not (last_wrong & ~fooled).any()
    assert fooled.sum() > clean_wrong.sum()       # the attack does something
    assert torch.equal(attacks.fooled(model, x, y, norm, 0.0, steps=5), clean_wrong)
