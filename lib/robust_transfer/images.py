"""Pure image transforms: low/high-pass, resizing, patch shuffle, edges, silhouettes, Fourier
phase/amplitude recombination, texture replacement (stylize), procedural class textures.

Every function takes a batch of images (N, C, H, W) with values in [0, 1] (a float tensor or an
array; channels first) and returns a new batch; nothing is cached or read from disk. Lengths
(``sigma``, ``size``, ``patch``) are in pixels. :func:`stylize` takes its texture photos as
arguments (the caller reads them). Imports nothing from the rest of the package.
"""
from __future__ import annotations

import hashlib
from itertools import permutations

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage

__all__ = ["LOWRES_SIZE", "as_array", "lowpass", "highpass", "lowres", "downsample", "stylize",
           "stylize_styles", "patch_shuffle",
           "sobel_magnitude", "edge_map", "silhouette_mask", "fourier_recombine", "to_unit_range",
           "TEXTURE_CLASSES", "texture_fields", "apply_texture"]

LOWRES_SIZE = 32  # the authors' low-resolution probe size in pixels


def as_array(images) -> np.ndarray:
    """Images (N, C, H, W) as a new float64 numpy array (tensors are detached and moved to CPU);
    ValueError for any other number of dimensions."""
    x = images.detach().cpu().numpy() if isinstance(images, torch.Tensor) else np.asarray(images)
    if x.ndim != 4:
        raise ValueError(f"images must have shape (N, C, H, W); got {x.shape}")
    return x.astype(np.float64)


# --------------------------------------------------------------------------- frequency filters
def lowpass(images, sigma: float) -> torch.Tensor:
    """Gaussian blur with standard deviation ``sigma`` pixels (0 = unchanged), float32 tensor."""
    if not isinstance(sigma, (int, float)) or sigma < 0:
        raise ValueError(f"sigma={sigma!r} must be a number >= 0 (pixels)")
    x = as_array(images)
    if sigma > 0:
        x = ndimage.gaussian_filter(x, sigma=(0, 0, sigma, sigma), mode="nearest")
    return torch.from_numpy(x.astype(np.float32))


def highpass(images, sigma: float) -> torch.Tensor:
    """High-pass ``clip(x - lowpass(x, sigma) + 0.5, 0, 1)`` for ``sigma`` > 0 pixels."""
    if not isinstance(sigma, (int, float)) or sigma <= 0:
        raise ValueError(f"sigma={sigma!r} must be a number > 0 (pixels) for a high-pass")
    x = as_array(images)
    return torch.from_numpy(np.clip(x - lowpass(x, sigma).double().numpy() + 0.5, 0, 1)
                            .astype(np.float32))


def lowres(images: torch.Tensor, size: int = LOWRES_SIZE) -> torch.Tensor:
    """The authors' low-pass: resize (bilinear, antialiased) down to ``size`` px and back up.

    Images (N, C, H, W) in [0, 1]; returns the same shape. Images no larger than ``size`` are
    returned unchanged (there is nothing to remove).
    """
    if not isinstance(size, int) or isinstance(size, bool) or size < 1:
        raise ValueError(f"size={size!r} must be a positive integer (pixels)")
    x = torch.as_tensor(images, dtype=torch.float32)
    h, w = x.shape[-2:]
    if size >= min(h, w):
        return x.clone()
    small = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True,
                          align_corners=False)
    return F.interpolate(small, size=(h, w), mode="bilinear", align_corners=False).clamp(0, 1)


def downsample(images, factor: float) -> torch.Tensor:
    """Resolution low-pass: resize (bilinear, antialiased) down by ``factor`` (to
    ``round(H / factor)`` px, at least 1) and back up to H x W with :func:`lowres`.

    Unlike :func:`lowres` at a fixed 32 px, this removes detail at any image size: 28 px digits
    with ``factor`` 4 go through 7 x 7. ``factor`` must be a number > 1.
    """
    if not isinstance(factor, (int, float)) or isinstance(factor, bool) or not factor > 1:
        raise ValueError(f"factor={factor!r} must be a number > 1 (the resolution divisor)")
    x = torch.as_tensor(as_array(images), dtype=torch.float32)
    return lowres(x, max(1, int(round(min(x.shape[-2:]) / factor))))


# --------------------------------------------------------------------------- shape / texture
def stylize_styles(n_photos: int) -> list[tuple[int, int]]:
    """The styles of :func:`stylize`: every ordered pair (foreground photo, background photo)
    of distinct photo indices, e.g. 12 styles from 4 photos."""
    if not isinstance(n_photos, int) or n_photos < 2:
        raise ValueError(f"n_photos={n_photos!r} must be an integer >= 2 (a style pairs two photos)")
    return list(permutations(range(n_photos), 2))


def _texture_crop(photo: np.ndarray, h: int, w: int, rng, mean: float, std: float) -> np.ndarray:
    """A random h x w crop of a grey photo, randomly rotated by k * 90 degrees (square crops) and
    standardised to ``mean`` and standard deviation ``std`` (clipped to [0, 1])."""
    i = rng.integers(0, photo.shape[0] - h + 1)
    j = rng.integers(0, photo.shape[1] - w + 1)
    crop = photo[i:i + h, j:j + w]
    if h == w:
        crop = np.rot90(crop, int(rng.integers(4)))
    return np.clip(mean + std * (crop - crop.mean()) / max(crop.std(), 1e-6), 0.0, 1.0)


def stylize(images, photos, seed: int, contrast: float = 0.6, std: float = 0.1) -> torch.Tensor:
    """Texture-replaced copies of grey shapes on a dark background (digits): shape kept, texture
    replaced.

    Each image's grey level g (channel mean, in [0, 1]) becomes the blend weight between two
    texture crops: ``g * foreground + (1 - g) * background``. The style (an ordered pair of two
    different ``photos``, :func:`stylize_styles`) and the crop places / rotations are drawn from
    a generator seeded by ``seed`` and a hash of the image itself, so each output image is a
    deterministic function of its input image and ``seed`` (order- and batch-independent). The
    crops are standardised to standard deviation ``std`` and means 0.5 +- ``contrast`` / 2
    (foreground brighter): the shape keeps a ``contrast`` of the original full black-to-white
    step, the texture is the photos'. ``photos``: 2-d grey arrays in [0, 1], each at least
    H x W. Returns float32 (N, C, H, W) in [0, 1].
    """
    for name, v in (("contrast", contrast), ("std", std)):
        if not isinstance(v, (int, float)) or not 0 <= v <= 1:
            raise ValueError(f"{name}={v!r} must be a number in [0, 1] (grey levels)")
    x = as_array(images)
    _, c, h, w = x.shape
    photos = [np.asarray(p, dtype=np.float64) for p in photos]
    styles = stylize_styles(len(photos))
    for k, p in enumerate(photos):
        if p.ndim != 2 or p.shape[0] < h or p.shape[1] < w:
            raise ValueError(f"photos[{k}] has shape {p.shape}; need a 2-d grey image of at "
                             f"least {h}x{w} px")
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed={seed!r} must be an integer >= 0")
    grey = np.clip(x.mean(axis=1), 0.0, 1.0)
    out = np.empty((len(x), h, w))
    for i, g in enumerate(grey):
        digest = hashlib.blake2b(g.astype(np.float32).tobytes(), digest_size=8).digest()
        rng = np.random.default_rng([int(seed), *np.frombuffer(digest, dtype=np.uint32).tolist()])
        fg, bg = styles[rng.integers(len(styles))]
        out[i] = g * _texture_crop(photos[fg], h, w, rng, 0.5 + contrast / 2, std) + \
            (1 - g) * _texture_crop(photos[bg], h, w, rng, 0.5 - contrast / 2, std)
    return torch.from_numpy(np.repeat(out[:, None], c, axis=1).astype(np.float32))


#: the procedural texture of each texture class (index = class): (kind, orientation in degrees,
#: period in px). Fine gratings at four orientations, coarse gratings at two, a checkerboard
#: (its Fourier components at +-45 degrees and period 8 / sqrt 2, apart from the gratings'),
#: dots on a grid, white noise and blotches (white noise blurred by ``period`` / 2 px)
TEXTURE_CLASSES = (("grating", 0, 4), ("grating", 90, 4), ("grating", 45, 4), ("grating", 135, 4),
                   ("grating", 0, 9), ("grating", 90, 9), ("checker", 0, 8), ("dots", 0, 6),
                   ("noise", 0, 1), ("blotches", 0, 3))


def texture_fields(texture_labels, size: int, seed: int, angle_jitter: float = 8.0,
                   period_jitter: float = 0.1) -> np.ndarray:
    """One texture field per label: float32 (N, size, size) in [0, 1], field i of class
    ``TEXTURE_CLASSES[texture_labels[i]]`` with a random phase, its orientation jittered by up to
    +-``angle_jitter`` degrees and its period by a factor within 1 +- ``period_jitter`` (noise and
    blotches: fresh white noise, blotches blurred by the class's period / 2), drawn
    from one generator seeded by ``seed``; each field standardised to mean 0.5 and standard
    deviation 0.3 (then clipped), so classes differ by structure, not brightness or contrast."""
    labels = np.asarray(texture_labels, dtype=np.int64).reshape(-1)
    if len(labels) and not 0 <= labels.min() <= labels.max() < len(TEXTURE_CLASSES):
        raise ValueError(f"texture_labels must lie in 0..{len(TEXTURE_CLASSES) - 1}; got "
                         f"{labels.min()}..{labels.max()}")
    if not isinstance(size, (int, np.integer)) or size < 2:
        raise ValueError(f"size={size!r} must be an integer >= 2 (pixels)")
    rng = np.random.default_rng(seed)
    n = len(labels)
    kind = np.array([TEXTURE_CLASSES[k][0] for k in labels], dtype="U8")
    theta = np.deg2rad(np.array([TEXTURE_CLASSES[k][1] for k in labels], dtype=float)
                       + rng.uniform(-angle_jitter, angle_jitter, n))
    period = (np.array([TEXTURE_CLASSES[k][2] for k in labels], dtype=float)
              * rng.uniform(1 - period_jitter, 1 + period_jitter, n))
    phase = rng.uniform(0, 2 * np.pi, (n, 2))
    random = np.isin(kind, ("noise", "blotches"))
    noise = np.zeros((n, size, size), dtype=np.float32)
    noise[random] = rng.standard_normal((int(random.sum()), size, size), dtype=np.float32)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    out = np.empty((n, size, size), dtype=np.float32)
    for name in np.unique(kind):
        i = np.flatnonzero(kind == name)
        if name == "noise":
            out[i] = noise[i]
            continue
        if name == "blotches":  # one blur per class (its period / 2), vectorised over images
            for k in np.unique(labels[i]):
                j, sigma = i[labels[i] == k], TEXTURE_CLASSES[k][2] / 2
                out[j] = ndimage.gaussian_filter(noise[j], (0, sigma, sigma), mode="wrap")
            continue
        c, s = (f(theta[i])[:, None, None].astype(np.float32) for f in (np.cos, np.sin))
        w = (2 * np.pi / period[i][:, None, None]).astype(np.float32)
        p0, p1 = phase[i, :, None, None].astype(np.float32).transpose(1, 0, 2, 3)
        u = np.cos(w * (xx * c + yy * s) + p0)
        v = np.cos(w * (yy * c - xx * s) + p1)
        out[i] = u if name == "grating" else u * v if name == "checker" else u + v > 1.0
    out -= out.mean((1, 2), keepdims=True)
    out /= np.maximum(out.std((1, 2), keepdims=True), 1e-12)
    return np.clip(0.5 + 0.3 * out, 0.0, 1.0, out=out)


def apply_texture(images, fields, floor: float = 0.3) -> torch.Tensor:
    """Images whose grey level is modulated by a texture: ``x * (floor + (1 - floor) * field)``
    on every channel (``fields`` (N, H, W) in [0, 1], e.g. :func:`texture_fields`). On dark
    backgrounds (x = 0) nothing changes, so the texture fills the shape; a flat field of 0.5 is
    the neutral texture. Returns float32 (N, C, H, W) in [0, 1]."""
    if not 0 <= floor <= 1:
        raise ValueError(f"floor={floor!r} must be in [0, 1] (the grey level a field of 0 keeps)")
    x = torch.as_tensor(images, dtype=torch.float32)
    f = torch.as_tensor(fields, dtype=torch.float32)
    if x.ndim != 4 or f.shape != (x.shape[0],) + x.shape[2:]:
        raise ValueError(f"fields {tuple(f.shape)} must be (N, H, W) of images (N, C, H, W) "
                         f"{tuple(x.shape)}")
    return x * (floor + (1 - floor) * f[:, None])


def patch_shuffle(images, grid: int, seed: int) -> torch.Tensor:
    """Images cut into a ``grid`` x ``grid`` array of tiles, tiles permuted per image (seeded)."""
    x = as_array(images)
    nimg, c, h, w = x.shape
    if not isinstance(grid, int) or grid < 1 or h % grid or w % grid:
        divisors = [g for g in range(1, min(h, w) + 1) if h % g == 0 and w % g == 0]
        raise ValueError(f"grid={grid!r} must divide the image size {h}x{w}; allowed: {divisors}")
    th, tw = h // grid, w // grid
    tiles = x.reshape(nimg, c, grid, th, grid, tw).transpose(0, 2, 4, 1, 3, 5)
    tiles = tiles.reshape(nimg, grid * grid, c, th, tw)
    perm = np.argsort(np.random.default_rng(seed).random((nimg, grid * grid)), axis=1)
    tiles = np.take_along_axis(tiles, perm[:, :, None, None, None], axis=1)
    out = tiles.reshape(nimg, grid, grid, c, th, tw).transpose(0, 3, 1, 4, 2, 5).reshape(x.shape)
    return torch.from_numpy(out.astype(np.float32))


def sobel_magnitude(images: torch.Tensor) -> torch.Tensor:
    """Per-image Sobel gradient magnitude (N, H, W) of the grey (channel-mean) images, with
    replicated borders; each image is filtered on its own."""
    grey = torch.as_tensor(images, dtype=torch.float32).mean(1, keepdim=True)
    kx = torch.tensor([[-1.0, 0, 1], [-2, 0, 2], [-1, 0, 1]], device=grey.device)
    k = torch.stack([kx, kx.t()]).unsqueeze(1)
    return F.conv2d(F.pad(grey, (1, 1, 1, 1), mode="replicate"), k).norm(dim=1)


def edge_map(images) -> torch.Tensor:
    """Sobel gradient magnitude of the grey image, scaled to max 1 per image, on every channel."""
    x = torch.as_tensor(as_array(images))
    mag = sobel_magnitude(x)
    mag = mag / mag.amax(dim=(1, 2), keepdim=True).clamp_min(1e-12)
    return mag[:, None].expand(-1, x.shape[1], -1, -1).contiguous()


def silhouette_mask(images, threshold: float = 0.05) -> np.ndarray:
    """Boolean (N, H, W): pixels whose channel mean exceeds ``threshold``, holes filled."""
    grey = as_array(images).mean(axis=1) > threshold
    return np.stack([ndimage.binary_fill_holes(m) for m in grey])


# --------------------------------------------------------------------------- Fourier
def fourier_recombine(phase_images, amplitude_images) -> np.ndarray:
    """Raw recombination ``ifft2(|FFT(amplitude_images)| * exp(i angle FFT(phase_images)))``.

    Both (N, C, H, W) in [0, 1]; returns a float64 array of the same shape, NOT clipped or
    rescaled (values may leave [0, 1]). The imaginary part is dropped: it is zero up to rounding
    because the combined spectrum is Hermitian-symmetric (checked here).
    """
    a, b = as_array(phase_images), as_array(amplitude_images)
    if a.shape != b.shape:
        raise ValueError(f"phase_images {a.shape} and amplitude_images {b.shape} must match")
    spec = np.abs(np.fft.fft2(b)) * np.exp(1j * np.angle(np.fft.fft2(a)))
    out = np.fft.ifft2(spec)
    assert np.abs(out.imag).max(initial=0.0) <= 1e-8 * max(1.0, np.abs(out.real).max(initial=0.0))
    return out.real


def to_unit_range(x) -> np.ndarray:
    """Map each image into [0, 1] as ``m + a (x - m)``, m = per-channel mean, a <= 1 maximal.

    No clipping: each channel's spatial mean (DC term) is unchanged, every other frequency keeps
    its phase and has its amplitude multiplied by one per-image factor ``a`` (1 when already in
    range). Needs every channel mean in [0, 1], true for Fourier recombinations of [0,1] images.
    Returns a float64 array.
    """
    x = as_array(x)
    m = x.mean(axis=(2, 3), keepdims=True)
    lo, hi = x.min(axis=(2, 3), keepdims=True), x.max(axis=(2, 3), keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        a_lo = np.where(lo < 0, m / (m - lo), 1.0)
        a_hi = np.where(hi > 1, (1 - m) / (hi - m), 1.0)
    a = np.clip(np.minimum(a_lo, a_hi).min(axis=1, keepdims=True), 0.0, 1.0)
    return np.clip(m + a * (x - m), 0.0, 1.0)  # the clip only removes rounding (~1e-16)
