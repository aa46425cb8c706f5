"""Batched training augmentation (``transfer._augment``) vs the per-image torchvision loop it
replaced, in one run: same transforms (crop pad 4, flip, jitter 0.25, rotation 2 degrees).

Times both on random batches at the paper targets' own size (3 x 32 px, where
``transfer.finetune`` applies it, batch 128) and at 224 px (batch 32), on the CPU with the
given torch threads (and on CUDA when there is one: the batched version only). Prints ms per
batch and the speed-up ratio.

    python benchmarks/augment_batched.py [--threads 1] [--reps 3]
"""
import argparse
import time

import torch

from robust_transfer import transfer


def per_image_loop(x: torch.Tensor) -> torch.Tensor:
    """The previous ``transfer._augment``: torchvision v2 transforms image by image."""
    from torchvision.transforms import v2
    tf = v2.Compose([v2.RandomCrop(x.shape[-1], padding=4), v2.RandomHorizontalFlip(),
                     v2.ColorJitter(0.25, 0.25, 0.25 if x.shape[1] == 3 else 0.0),
                     v2.RandomRotation(2)])
    return torch.stack([tf(img) for img in x]).clamp(0, 1)


def timed(fn, x, reps: int) -> float:
    """Median seconds of ``fn(x)`` over ``reps`` calls after one warm-up."""
    sync = torch.cuda.synchronize if x.is_cuda else (lambda: None)
    fn(x)
    sync()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn(x)
        sync()
        times.append(time.perf_counter() - t0)
    return sorted(times)[len(times) // 2]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--reps", type=int, default=3)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    print(f"torch {torch.__version__}, {args.threads} CPU thread(s)")
    for size, batch in ((32, 128), (224, 32)):
        x = torch.rand(batch, 3, size, size)
        old = timed(per_image_loop, x, args.reps)
        new = timed(transfer._augment, x, args.reps)
        line = (f"3x{size}px batch {batch}: per-image loop {1e3 * old:8.1f} ms, batched "
                f"{1e3 * new:7.1f} ms (cpu), x{old / new:5.1f}")
        if torch.cuda.is_available():
            line += f"; batched on cuda {1e3 * timed(transfer._augment, x.cuda(), args.reps):.2f} ms"
        print(line, flush=True)


if __name__ == "__main__":
    main()
