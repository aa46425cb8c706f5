"""Build the book: stage the sources, execute every notebook with papermill, run Jupyter Book.

``python -m robust_transfer.book --preset mini --out _build`` (what ``make book`` runs) trains or
fetches the preset's sources in the terminal (with progress bars), executes each notebook with
papermill into ``<out>/src/notebooks/`` (never into the committed notebooks, which stay
output-free; kernels run with :data:`KERNEL_ENV`: no progress bars, one torch thread), two at a
time, and builds the HTML into ``<out>/html``. The build is strict (``-W -n --keep-going``): any
Sphinx warning fails it.

The repository's own ``_config.yml`` executes notebooks itself (``execute_notebooks: auto``), so
a plain ``jupyter-book build .`` (what hosting actions run) also gives a complete mini book; the
staged copy here turns that execution off, since papermill has already run every notebook, and
points the launch buttons (Colab, Binder) at the commit being built.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import yaml

from . import pool, zoo
from .config import resolve

ROOT = Path(__file__).resolve().parents[2]   # the repository (editable install)
BOOK_FILES = ("_config.yml", "_toc.yml", "book")


def notebooks(root: Path = ROOT) -> list[Path]:
    """The section notebooks in book order."""
    return sorted((root / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def commit(root: Path = ROOT) -> str | None:
    """The git commit the book is built from (None outside a git checkout)."""
    try:
        out = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], check=True,
                             capture_output=True, text=True)
    except (OSError, subprocess.CalledProcessError):
        return None
    return out.stdout.strip() or None


def staged_config(root: Path = ROOT) -> dict:
    """``_config.yml`` for a papermill-executed build: execution off, launch buttons at
    :func:`commit` (so Colab and Binder open, and Binder installs, exactly this version)."""
    cfg = yaml.safe_load((root / "_config.yml").read_text())
    cfg.setdefault("execute", {})["execute_notebooks"] = "off"
    sha = commit(root)
    if sha:
        cfg.setdefault("repository", {})["branch"] = sha
    return cfg


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
    (src / "_config.yml").write_text(yaml.safe_dump(staged_config(root), sort_keys=False))
    return src


#: the Colab cell's package ref in the committed notebooks; executed copies get the commit
REF_LINE = 'REF = "main"'


def stamp_ref(path: Path, sha: str | None) -> None:
    """Point the Colab install cell of the executed notebook ``path`` at commit ``sha``, and tag
    papermill's injected-parameters cell ``remove-cell`` (plumbing a reader need not see)."""
    import nbformat
    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        if sha and cell.cell_type == "code" and REF_LINE in cell.source:
            cell.source = cell.source.replace(REF_LINE, f'REF = "{sha}"')
        tags = cell.get("metadata", {}).get("tags", [])
        if "injected-parameters" in tags and "remove-cell" not in tags:
            tags.append("remove-cell")
    nbformat.write(nb, path)


#: what the kernels inherit: no progress bars in the book, and one torch / BLAS thread, so that
#: two notebooks side by side do not fight over the cores (OpenMP threads spin-wait: a 2-thread
#: kernel beside another busy process ran 9x slower) and every number a kernel computes itself
#: is the same on any core count (heavy work runs in one-thread worker processes anyway)
KERNEL_ENV = dict(RT_PROGRESS="0", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1",
                  OPENBLAS_NUM_THREADS="1")


#: the environment variable that tags a notebook's kernel (and the worker processes it starts,
#: which inherit it) with the notebook's stem, for :class:`PeakMemory`
MEMORY_TAG = "RT_NOTEBOOK"


class PeakMemory:
    """Peak resident memory (RSS, bytes) per notebook of a build, sampled every ``every``
    seconds (psutil): :attr:`peak`, the kernel plus every worker process it starts, summed;
    :attr:`kernel` the kernel alone; :attr:`worker` the largest single worker (so a one-worker
    setting such as Binder's needs about ``kernel + worker``). A kernel is known by
    :data:`MEMORY_TAG` in its environment: :meth:`starting` sets it for one notebook at a time
    and holds the next notebook's start until that kernel is seen (or ``wait`` s passed)."""

    def __init__(self, every: float = 0.5, wait: float = 120.0):
        self.peak: dict[str, int] = {}
        self.kernel: dict[str, int] = {}
        self.worker: dict[str, int] = {}
        self.every, self.wait = every, wait
        self._gate, self._waiting, self._since = threading.Lock(), None, 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="peak-memory", daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self._open()

    def starting(self, stem: str) -> None:
        """Tag the kernel ``stem``'s notebook is about to start (waits for the previous tag)."""
        self._gate.acquire()
        os.environ[MEMORY_TAG], self._waiting, self._since = stem, stem, time.monotonic()

    def _open(self) -> None:
        if self._waiting is not None:
            os.environ.pop(MEMORY_TAG, None)
            self._waiting = None
            self._gate.release()

    def sample(self) -> dict[str, int]:
        """RSS (bytes) per tagged notebook now; updates :attr:`peak`."""
        import psutil
        now: dict[str, int] = {}
        me = os.getpid()
        for proc in psutil.Process().children(recursive=True):
            try:
                stem = proc.environ().get(MEMORY_TAG)
                if not stem:
                    continue
                rss = proc.memory_info().rss
                now[stem] = now.get(stem, 0) + rss
                own = self.kernel if proc.ppid() == me else self.worker
                own[stem] = max(own.get(stem, 0), rss)
            except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
                continue
        for stem, rss in now.items():
            self.peak[stem] = max(self.peak.get(stem, 0), rss)
        if self._waiting is not None and (self._waiting in now
                                          or time.monotonic() - self._since > self.wait):
            self._open()
        return now

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            self.sample()


#: notebooks that read another notebook's results (stem -> the stems it reads); they start after
#: those have finished: chapter 3 links the shape bias to Section 1's transfer gains
READS = {"03_shape_bias": ("02_transfer_vs_sample_size",)}


def execute(src: Path, preset: str, only: list[str] | None = None, root: Path = ROOT,
            jobs: int | None = None, source_seed_offset: int = 0,
            memory: PeakMemory | None = None) -> dict:
    """Run each notebook with papermill (``preset`` and ``source_seed_offset`` parameters) into
    ``src/notebooks``, its Colab cell stamped with :func:`commit`; returns seconds per notebook.
    ``memory`` (a running :class:`PeakMemory`) measures each notebook's peak memory.

    ``jobs`` notebooks run at a time (default: 2, or 1 on a one-core machine). A notebook
    writes only cache entries keyed by their inputs (atomically), a notebook that reads
    another's results starts once that one has finished (:data:`READS`), and the heavy work runs
    in one-thread worker processes, so running two at a time changes no number; it fills the
    core that one notebook's single-threaded parts (kernel start, imports, tables, figures)
    leave idle. Notebooks that others read start first, the ones that read others last. A
    failing notebook stops the build: notebooks not yet started are skipped, and its error is
    raised once the running ones end.
    """
    import papermill as pm
    from concurrent.futures import ThreadPoolExecutor
    if jobs is not None and jobs < 1:
        raise ValueError(f"jobs={jobs} is not allowed; give an integer >= 1 or None (default)")
    todo = [nb for nb in notebooks(root) if not only or nb.stem in only]
    jobs = min(jobs or min(2, os.cpu_count() or 1), max(len(todo), 1))
    read = {stem for stems in READS.values() for stem in stems}
    order = sorted(todo, key=lambda nb: 0 if nb.stem in read else 2 if nb.stem in READS else 1)
    times, sha, failed, futures = {}, commit(root), [], {}

    def one(nb: Path) -> None:
        for stem in READS.get(nb.stem, ()):
            if stem in futures:
                futures[stem].exception()   # wait; its failure is raised by its own future
        if failed:
            return
        t0 = time.perf_counter()
        print(f"[book] executing {nb.name} (preset={preset}, source_seed_offset="
              f"{source_seed_offset})", flush=True)
        out = src / "notebooks" / nb.name
        if memory is not None:
            memory.starting(nb.stem)
        try:
            # the kernel starts in the notebook's folder; papermill's own ``cwd=`` would chdir
            # this whole process, which two threads cannot share
            pm.execute_notebook(str(nb), str(out), parameters={"preset": preset, "source_seed_offset": source_seed_offset},
                                kernel_name="python3", progress_bar=False,
                                resources={"metadata": {"path": str(nb.parent)}})
        except BaseException:
            failed.append(nb.name)
            raise
        stamp_ref(out, sha)
        times[nb.name] = time.perf_counter() - t0
        peak = f", peak memory {memory.peak.get(nb.stem, 0) / 2**30:.2f} GiB (kernel + " \
               f"workers)" if memory is not None else ""
        print(f"[book] {nb.name}: {times[nb.name]:.1f} s{peak}", flush=True)

    with pool.environ(KERNEL_ENV), ThreadPoolExecutor(jobs) as ex:
        for nb in order:
            futures[nb.stem] = ex.submit(one, nb)
        for nb in order:
            futures[nb.stem].result()
    return {nb.name: times[nb.name] for nb in todo if nb.name in times}


def glued(path: Path) -> dict:
    """``{name: value}`` of every ``myst_nb.glue`` output of the executed notebook ``path`` (the
    numbers and verdicts the book states; "nan" as a float NaN)."""
    import ast
    import nbformat
    out = {}
    for cell in nbformat.read(path, as_version=4).cells:
        for o in cell.get("outputs", []):
            glue = o.get("metadata", {}).get("scrapbook", {})
            if glue.get("name"):
                name, text = glue["name"], o["data"][glue.get("mime_prefix", "") + "text/plain"]
                out[name] = float("nan") if text == "nan" else ast.literal_eval(text)
    return out


#: glued names of each chapter's stated verdicts and claim-part labels (``claims``; the
#: introduction's results table shows the rows)
VERDICT_SUFFIXES = ("verdict", "other_verdict", "cue_verdict")


def is_verdict(name: str) -> bool:
    """Whether a glued name states a verdict: a claim's (:data:`VERDICT_SUFFIXES`) or a claim
    part's label (``<chapter>_part_<key>_label``, ``common.claim_values``)."""
    return name.endswith(VERDICT_SUFFIXES) or ("_part_" in name and name.endswith("_label"))


def verdicts(out: Path) -> dict:
    """``{glued name: value}`` of every verdict the book built into ``out`` states (names ending
    in :data:`VERDICT_SUFFIXES`, row copies left out) and the interval texts they rest on
    (``*_gain_text``, ``*_row_ci``, the parts' ``*_text``), read from ``<out>/src/notebooks``. ValueError when ``out``
    holds no executed notebooks."""
    nbs = sorted((Path(out) / "src" / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    if not nbs:
        raise ValueError(f"{out} holds no executed notebooks (expected {out}/src/notebooks/*.ipynb"
                         f" from python -m robust_transfer.book --out {out})")
    found = {}
    for nb in nbs:
        for name, value in glued(nb).items():
            if (is_verdict(name) and "_row_" not in name) \
                    or name.endswith(("_gain_text", "_row_ci")) or "_part_" in name:
                found[name] = value
    return found


def compare_verdicts(*builds: Path) -> "pandas.DataFrame":
    """Side by side, the :func:`verdicts` of two or more builds (a replication check: disjoint
    source seeds, another thread count, another machine): name, one column per build (its
    folder name; ``a``, ``b``, ... when names repeat), ``same`` (verdicts and part labels only;
    interval texts are context, expected to move between builds)."""
    import pandas as pd
    if len(builds) < 2:
        raise ValueError(f"give at least two builds to compare, got {len(builds)}")
    names = [Path(b).name for b in builds]
    if len(set(names)) < len(names):
        names = [chr(ord("a") + i) for i in range(len(builds))]
    found = [verdicts(b) for b in builds]
    keys = sorted(set().union(*found))
    rows = [dict(name=k, **{n: f.get(k) for n, f in zip(names, found)},
                 same=(len({repr(f.get(k)) for f in found}) == 1) if is_verdict(k) else None)
            for k in keys]
    return pd.DataFrame(rows, columns=["name", *names, "same"])


def replication_record(*builds: Path) -> dict:
    """What ``claims.replication`` reads, from two or more builds of one preset: {"builds":
    [folder names], "parts": {"<claim key>/<part key>": {build: the label its interval gave
    there (before any earlier record was applied)}}}."""
    if len(builds) < 2:
        raise ValueError(f"give at least two builds to record, got {len(builds)}")
    names = [Path(b).name for b in builds]
    if len(set(names)) < len(names):
        raise ValueError(f"builds must have distinct folder names to be recorded: {names}")
    parts: dict = {}
    for name, b in zip(names, builds):
        for nb in sorted((Path(b) / "src" / "notebooks").glob("[0-9][0-9]_*.ipynb")):
            values = glued(nb)
            for key_name, claim_key in values.items():
                if not key_name.endswith("claim_key"):
                    continue
                prefix = key_name[:-len("claim_key")]
                for k, raw in values.items():
                    if k.startswith(prefix + "part_") and k.endswith("_raw"):
                        part = k[len(prefix + "part_"):-len("_raw")]
                        parts.setdefault(f"{claim_key}/{part}", {})[name] = raw
    return {"builds": names, "parts": parts}


def build(src: Path, out: Path) -> Path:
    """Strict Jupyter Book HTML build of ``src``, its Colab buttons at the published notebooks
    (:func:`point_colab`); returns ``<out>/html``."""
    exe = Path(sys.executable).with_name("jupyter-book")
    work = out / "jb"
    subprocess.run([str(exe), "build", str(src), "--path-output", str(work), "-W", "-n",
                    "--keep-going", "--quiet"], check=True)
    html = out / "html"
    if html.exists():
        shutil.rmtree(html)
    shutil.move(str(work / "_build" / "html"), str(html))
    point_colab(html)
    return html


#: the branch a built book is published to (``make publish``: ``ghp-import`` of ``_build/html``);
#: Colab opens the stamped notebooks from there (``_sources/notebooks/*.ipynb``)
PAGES_BRANCH = "gh-pages"
_COLAB_LINK = re.compile(r'(https://colab\.research\.google\.com/github/[^/"]+/[^/"]+/blob/)'
                         r'[^"]+/(notebooks/[^"/]+\.ipynb)')


def point_colab(html: Path) -> int:
    """Point the Colab launch buttons of the built pages in ``html`` at the published copies
    of the executed notebooks (``<PAGES_BRANCH>/_sources/notebooks/``), whose set-up cell
    installs the commit the book was built from (:func:`stamp_ref`); the repository's own
    notebooks install "main". Binder stays at the commit. Returns the links changed."""
    changed = 0
    for page in Path(html).rglob("*.html"):
        text = page.read_text(encoding="utf-8")
        new, n = _COLAB_LINK.subn(rf"\g<1>{PAGES_BRANCH}/_sources/\g<2>", text)
        if n:
            page.write_text(new, encoding="utf-8")
            changed += n
    return changed


def main(argv=None) -> None:
    """``make book``: sources, then every notebook, then the strict HTML build."""
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="mini")
    parser.add_argument("--out", default="_build", type=Path)
    parser.add_argument("--only", nargs="*", help="notebook stems to execute (default: all)")
    parser.add_argument("--jobs", type=int, default=None,
                        help="notebooks executed at a time (default: 2, 1 on one core)")
    parser.add_argument("--source-seed-offset", type=int, default=0,
                        help="shift every trained source seed (a replication build: 6 trains "
                             "seeds disjoint from the default build's)")
    parser.add_argument("--train-threads", type=int, default=None,
                        help="torch threads each source trains with (default 1: bitwise the same "
                             "sources on any machine; 2: the replication check of how far the "
                             "verdicts depend on the sources' last bits)")
    args = parser.parse_args(argv)
    if args.train_threads is not None:
        if args.train_threads < 1:
            parser.error(f"--train-threads={args.train_threads} is not allowed; give an "
                         f"integer >= 1")
        os.environ["RT_TRAIN_THREADS"] = str(args.train_threads)  # kernels inherit it
    if args.jobs is not None and args.jobs < 1:
        parser.error(f"--jobs={args.jobs} is not allowed; give an integer >= 1")
    try:  # a bad preset or offset stops here, before any notebook runs
        cfg = resolve(args.preset, source_seed_offset=args.source_seed_offset)
    except ValueError as err:
        parser.error(str(err))
    t0 = time.perf_counter()
    # the sources are the long part of a cold build: train / fetch them here, with progress
    # bars in the terminal; the notebooks then load them from the cache
    zoo.load_grid(cfg.sources + cfg.textured_sources, allow_download=cfg.allow_download,
                  progress=True, workers=None)
    print(f"[book] sources ready in {time.perf_counter() - t0:.1f} s", flush=True)
    sources_s = time.perf_counter() - t0
    out = args.out.resolve()
    src = stage(out)
    with PeakMemory() as memory:
        times = execute(src, args.preset, args.only, jobs=args.jobs,
                        source_seed_offset=args.source_seed_offset, memory=memory)
    html = build(src, out)
    total = time.perf_counter() - t0
    (out / "build.json").write_text(json.dumps(dict(
        preset=args.preset, source_seed_offset=args.source_seed_offset, commit=commit(),
        cores=os.cpu_count(), train_threads=os.environ.get("RT_TRAIN_THREADS", "1"),
        jobs=args.jobs, sources_s=round(sources_s, 1), total_s=round(total, 1),
        notebooks={name: dict(seconds=round(sec, 1), **{
            f"{what}_rss_mib": round(getattr(memory, what).get(Path(name).stem, 0) / 2**20)
            for what in ("peak", "kernel", "worker")}) for name, sec in times.items()}),
        indent=1))
    print(f"[book] built {html / 'index.html'} in {total:.1f} s ({out / 'build.json'}: "
          f"seconds and peak memory per notebook)", flush=True)
