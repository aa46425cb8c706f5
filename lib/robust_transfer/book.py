"""Build the book: stage the sources, execute every notebook with papermill, run Jupyter Book.

``python -m robust_transfer.book --preset mini --out _build`` (what ``make book`` runs) writes
the executed notebooks under ``<out>/src/notebooks/`` (never into the committed notebooks,
which stay output-free) and the HTML under ``<out>/html``. The build is strict
(``-W -n --keep-going``): any Sphinx warning fails it.
"""
from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]   # the repository (editable install)
BOOK_FILES = ("_config.yml", "_toc.yml", "book")


def notebooks(root: Path = ROOT) -> list[Path]:
    """The section notebooks in book order."""
    return sorted((root / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def stage(out: Path, root: Path = ROOT) -> Path:
    """Copy the book's config and prose into ``<out>/src`` (fresh copies; notebooks executed
    by an earlier run stay, so ``--only`` can re-run a few) and return that folder."""
    src = out / "src"
    (src / "notebooks").mkdir(parents=True, exist_ok=True)
    for name in BOOK_FILES:
        path, dest = root / name, src / name
        if dest.is_dir():
            shutil.rmtree(dest)
        (shutil.copytree if path.is_dir() else shutil.copy2)(path, dest)
    return src


def execute(src: Path, preset: str, only: list[str] | None = None, root: Path = ROOT) -> dict:
    """Run each notebook with papermill (``preset`` parameter) into ``src/notebooks``;
    returns seconds per notebook. Stops at the first failing notebook."""
    import papermill as pm
    times = {}
    for nb in notebooks(root):
        if only and nb.stem not in only:
            continue
        t0 = time.perf_counter()
        print(f"[book] executing {nb.name} (preset={preset})", flush=True)
        pm.execute_notebook(str(nb), str(src / "notebooks" / nb.name), parameters={"preset": preset},
                            kernel_name="python3", cwd=str(nb.parent), progress_bar=False)
        times[nb.name] = time.perf_counter() - t0
        print(f"[book] {nb.name}: {times[nb.name]:.1f} s", flush=True)
    return times


def build(src: Path, out: Path) -> Path:
    """Strict Jupyter Book HTML build of ``src``; returns ``<out>/html``."""
    exe = Path(sys.executable).with_name("jupyter-book")
    work = out / "jb"
    subprocess.run([str(exe), "build", str(src), "--path-output", str(work), "-W", "-n",
                    "--keep-going", "--quiet"], check=True)
    html = out / "html"
    if html.exists():
        shutil.rmtree(html)
    shutil.move(str(work / "_build" / "html"), str(html))
    return html


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--preset", default="mini")
    parser.add_argument("--out", default="_build", type=Path)
    parser.add_argument("--only", nargs="*", help="notebook stems to execute (default: all)")
    args = parser.parse_args(argv)
    from . import zoo
    from .config import resolve
    cfg = resolve(args.preset)  # a bad preset stops here, before any notebook runs
    t0 = time.perf_counter()
    # the sources are the long part of a cold build: train / fetch them here, with progress
    # bars in the terminal; the notebooks then load them from the cache
    zoo.load_grid(cfg.sources, allow_download=cfg.allow_download, progress=True)
    print(f"[book] sources ready in {time.perf_counter() - t0:.1f} s", flush=True)
    src = stage(args.out.resolve())
    execute(src, args.preset, args.only)
    html = build(src, args.out.resolve())
    print(f"[book] built {html / 'index.html'} in {time.perf_counter() - t0:.1f} s", flush=True)


if __name__ == "__main__":
    main()
