"""Tests for robust_transfer.images: the pure image transforms (Fourier recombination and the
[0, 1] mapping, patch shuffle, low/high-pass, lowres, edges, silhouettes)."""

import numpy as np
import pytest
import torch

from robust_transfer import images


def _templates(n=10, size=12, seed=0):
    x = np.random.default_rng(seed).random((n, 1, size, size)).astype(np.float32)
    return torch.from_numpy(x)


def _unit_phase(z):
    return z / np.maximum(np.abs(z), 1e-300)


def test_as_array_checks_dimensions():
    x = images.as_array(torch.zeros(2, 1, 3, 3))
    assert x.dtype == np.float64 and x.shape == (2, 1, 3, 3)
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        images.as_array(np.zeros((3, 3)))


# --------------------------------------------------------------------------- Fourier
@pytest.mark.parametrize("hw", [(16, 16), (15, 17)])
def test_fourier_recombination_keeps_phase_of_a_and_amplitude_of_b(hw):
    rng = np.random.default_rng(0)
    a, b = rng.random((3, 2, *hw)), rng.random((3, 2, *hw))
    raw = images.fourier_recombine(a, b)
    assert raw.dtype == np.float64 and raw.shape == a.shape
    fa, fb, fr = np.fft.fft2(a), np.fft.fft2(b), np.fft.fft2(raw)
    np.testing.assert_allclose(np.abs(fr), np.abs(fb), atol=1e-10)
    np.testing.assert_allclose(_unit_phase(fr), _unit_phase(fa), atol=1e-9)
    # swapped roles must fail the same check (the test can fail)
    assert not np.allclose(np.abs(fr), np.abs(fa), atol=1e-3)
    # the [0,1] mapping: no clipping, DC kept, non-DC phase kept, amplitudes scaled by one factor
    mapped = images.to_unit_range(raw)
    assert mapped.min() >= 0 and mapped.max() <= 1
    fm = np.fft.fft2(mapped)
    np.testing.assert_allclose(fm[..., 0, 0], fr[..., 0, 0], rtol=1e-10)
    nondc = np.ones(hw, bool)
    nondc[0, 0] = False
    np.testing.assert_allclose(_unit_phase(fm)[..., nondc], _unit_phase(fa)[..., nondc], atol=1e-8)
    ratio = np.abs(fm)[..., nondc] / np.abs(fb)[..., nondc]
    for i in range(3):
        np.testing.assert_allclose(ratio[i], ratio[i].mean(), rtol=1e-8)
        assert 0 < ratio[i].mean() <= 1 + 1e-12
    with pytest.raises(ValueError, match="must match"):
        images.fourier_recombine(a, b[:2])


def test_to_unit_range_leaves_in_range_images_alone():
    x = np.random.default_rng(0).random((2, 1, 8, 8)) * 0.5 + 0.2
    np.testing.assert_allclose(images.to_unit_range(x), x)


# --------------------------------------------------------------------------- shape / texture
def test_patch_shuffle_permutes_tiles():
    x = _templates(5, size=12)
    out = images.patch_shuffle(x, 3, seed=0)
    assert torch.equal(images.patch_shuffle(x, 1, seed=0), x)
    assert not torch.equal(out, x)
    assert torch.equal(out, images.patch_shuffle(x, 3, seed=0))           # seeded
    tiles = lambda im: sorted(im[0, r:r + 4, c:c + 4].numpy().tobytes()  # noqa: E731
                              for r in range(0, 12, 4) for c in range(0, 12, 4))
    for i in range(5):
        assert tiles(out[i]) == tiles(x[i])
    with pytest.raises(ValueError, match=r"grid=5 .*allowed: \[1, 2, 3, 4, 6, 12\]"):
        images.patch_shuffle(x, 5, seed=0)


def test_low_and_high_pass():
    x = _templates(4, size=16)
    assert torch.equal(images.lowpass(x, 0), x)
    hf = lambda im: (im[..., :, 1:] - im[..., :, :-1]).pow(2).mean()  # noqa: E731
    assert hf(images.lowpass(x, 1.0)) < 0.3 * hf(x)
    assert hf(images.lowpass(x, 2.0)) < hf(images.lowpass(x, 1.0))
    const = torch.full((2, 1, 8, 8), 0.3)
    np.testing.assert_allclose(images.highpass(const, 1.0).numpy(), 0.5, atol=1e-6)
    with pytest.raises(ValueError, match="sigma"):
        images.highpass(x, 0)
    with pytest.raises(ValueError, match="sigma"):
        images.lowpass(x, -1)


def test_lowres_removes_fine_detail():
    checker = torch.from_numpy((np.indices((64, 64)).sum(0) % 2).astype(np.float32))[None, None]
    out = images.lowres(checker.repeat(2, 3, 1, 1), 32)
    assert out.shape == (2, 3, 64, 64)
    assert out.std() < 0.05 and abs(out.mean() - 0.5) < 0.05
    smooth = torch.linspace(0, 1, 64).view(1, 1, 1, 64).repeat(1, 1, 64, 1)
    assert (images.lowres(smooth, 32) - smooth).abs().max() < 0.05
    assert torch.equal(images.lowres(checker, 64), checker)
    assert images.LOWRES_SIZE == 32
    with pytest.raises(ValueError, match="size"):
        images.lowres(checker, 0)


def test_data_and_attacks_use_the_same_transforms():
    from robust_transfer import attacks, data
    assert data.lowres is images.lowres and data.sobel_magnitude is images.sobel_magnitude
    assert data.LOWRES_SIZE == images.LOWRES_SIZE
    assert attacks.sobel_magnitude is images.sobel_magnitude


def test_edge_map_and_silhouette():
    x = torch.zeros(1, 1, 10, 10)
    x[0, 0, 3:7, 3:7] = 1
    e = images.edge_map(x)
    assert e.max() == 1 and e[0, 0, 5, 5] == 0 and e[0, 0, 0, 0] == 0
    # images are filtered one by one: a blank image beside the square has no edges
    pair = images.edge_map(torch.cat([x, torch.zeros_like(x)]))
    assert torch.equal(pair[0], e[0]) and pair[1].abs().max() == 0
    assert images.edge_map(x.repeat(1, 3, 1, 1)).shape == (1, 3, 10, 10)
    ring = torch.zeros(1, 1, 10, 10)
    ring[0, 0, 2:8, 2:8] = 1
    ring[0, 0, 4:6, 4:6] = 0
    assert images.silhouette_mask(ring)[0, 4, 4]  # holes are filled
    assert not images.silhouette_mask(ring)[0, 0, 0]


# --------------------------------------------------------------------------- derived targets
def _digit_like(n=6, size=28, seed=0):
    """Bright strokes (a ring or a bar) on a black background."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    out = np.zeros((n, 1, size, size), np.float32)
    for i in range(n):
        cy, cx = rng.integers(10, 18, 2)
        r = np.hypot(yy - cy, xx - cx)
        out[i, 0] = ((r > 5) & (r < 8)) if i % 2 else (np.abs(xx - cx) < 2) & (np.abs(yy - cy) < 9)
    return torch.from_numpy(out)


def test_downsample_removes_detail_by_a_factor_at_any_size():
    x = _templates(4, 28)
    for f in (2, 4):
        y = images.downsample(x, f)
        assert y.shape == x.shape and 0 <= y.min() and y.max() <= 1
        # what is left is (nearly) band-limited to the small grid: little power above it
        spec = np.abs(np.fft.fft2(y.numpy())) ** 2
        k = np.abs(np.fft.fftfreq(28))
        high = (k[:, None] > 0.5 / f + 0.05) | (k[None, :] > 0.5 / f + 0.05)
        assert spec[..., high].sum() / spec.sum() < 0.02
    assert (images.downsample(x, 4) - x).abs().mean() > (images.downsample(x, 2) - x).abs().mean()
    # the authors' fixed 32 px changes nothing at 28 px; the factor does
    assert torch.equal(images.lowres(x), x) and not torch.equal(images.downsample(x, 2), x)
    for bad in (1, 0.5, "4", True):
        with pytest.raises(ValueError, match="factor"):
            images.downsample(x, bad)


def test_stylize_keeps_the_shape_replaces_the_texture_and_is_a_function_of_each_image():
    x = _digit_like()
    photos = [np.random.default_rng(k).random((60, 70)) * 0.5 + 0.25 * k for k in range(3)]
    y = images.stylize(x, photos, seed=0)
    assert y.shape == x.shape and y.dtype == torch.float32 and 0 <= y.min() and y.max() <= 1
    mask = x[:, 0] > 0.5
    inside, outside = y[:, 0][mask].mean(), y[:, 0][~mask].mean()
    assert inside - outside == pytest.approx(0.6, abs=0.08)  # the shape, at `contrast`
    assert y[:, 0][~mask].std() > 0.05                        # texture where x was flat black
    # deterministic per image and seed: order and batch do not matter; the seed does
    perm = torch.tensor([3, 1, 5, 0, 2, 4])
    assert torch.equal(images.stylize(x[perm], photos, seed=0), y[perm])
    assert torch.equal(images.stylize(x[2:3], photos, seed=0), y[2:3])
    assert not torch.equal(images.stylize(x, photos, seed=1), y)
    # styles: every ordered pair of distinct photos
    assert images.stylize_styles(3) == [(0, 1), (0, 2), (1, 0), (1, 2), (2, 0), (2, 1)]
    with pytest.raises(ValueError, match="n_photos"):
        images.stylize(x, photos[:1], seed=0)
    with pytest.raises(ValueError, match="photos"):
        images.stylize(x, [np.zeros((10, 10))] * 2, seed=0)
    with pytest.raises(ValueError, match="contrast"):
        images.stylize(x, photos, seed=0, contrast=2)
