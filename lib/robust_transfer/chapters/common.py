"""Shared by the chapter modules: the figure style, colours, image tiles, CI bands and text,
glue, and whether a live (interactive) kernel is running."""
from __future__ import annotations

import math

import matplotlib.pyplot as plt
import numpy as np

from ..progress import is_interactive

__all__ = ["MATCH_POINTS", "clean_match", "STYLE", "use_style", "colours", "family_colours", "log2_axis", "band", "show_image",
           "fmt_ci", "verdict", "is_interactive", "glue", "glue_all", "claim_values",
           "claim_markdown", "show_figures", "ROW_FIELDS"]

#: readable at the book's page width (figures are drawn about 10 in wide and shown ~7 in)
STYLE = {"font.size": 10, "axes.titlesize": 10, "axes.labelsize": 10, "xtick.labelsize": 9,
         "ytick.labelsize": 9, "legend.fontsize": 9, "figure.dpi": 100, "savefig.dpi": 110}


def use_style() -> None:
    """Apply :data:`STYLE` to matplotlib (each chapter's notebook calls it once)."""
    plt.rcParams.update(STYLE)


def colours(labels) -> dict:
    """tab10 colours keyed by label, "natural..." first so it is always blue."""
    cmap = plt.get_cmap("tab10")
    order = sorted(labels, key=lambda s: (not str(s).lower().startswith("natural"), str(s)))
    return {lab: cmap(i % 10) for i, lab in enumerate(order)}


def family_colours(order) -> dict:
    """tab10 colours in the given order (families already sorted natural first)."""
    cmap = plt.get_cmap("tab10")
    return {f: cmap(i % 10) for i, f in enumerate(order)}


def log2_axis(ax, ns) -> None:
    """A log2 x axis with a tick at each n."""
    ns = sorted(set(int(n) for n in ns))
    ax.set_xscale("log", base=2)
    ax.set_xticks(ns)
    ax.set_xticklabels([str(n) for n in ns])
    ax.minorticks_off()
    ax.grid(alpha=0.3)


def band(ax, g, label, colour, x: str = "n", clip: tuple[float, float] | None = None) -> None:
    """Mean line with its CI band (columns ``mean``, ``ci_low``, ``ci_high``); ``clip`` bounds the
    band to a valid range (accuracies: (0, 100))."""
    g = g.sort_values(x)
    lo, hi = g["ci_low"].to_numpy(float), g["ci_high"].to_numpy(float)
    if clip is not None:
        lo, hi = np.clip(lo, *clip), np.clip(hi, *clip)
    xs = g[x].to_numpy(float)
    ax.plot(xs, g["mean"].to_numpy(float), "o-", ms=3, lw=1.4, color=colour, label=label)
    ax.fill_between(xs, lo, hi, color=colour, alpha=0.2, lw=0)


def show_image(ax, img, title=None, color="black") -> None:
    """Draw one CHW image in [0, 1] (tensor or array) without axes, with an optional title."""
    img = img.detach().cpu().numpy() if hasattr(img, "detach") else np.asarray(img)
    ax.imshow(img[0] if img.shape[0] == 1 else np.transpose(img, (1, 2, 0)),
              cmap="gray", vmin=0, vmax=1)
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title, fontsize=8, color=color)


def fmt_ci(value, low, high, pct: bool = False, signed: bool = False, digits: int = 1) -> str:
    """``"v [low, high]"``; ``pct`` multiplies fractions by 100 and adds %, ``signed`` shows +."""
    sign = "+" if signed else ""
    if pct:
        f = lambda v: f"{100 * v:{sign}.{digits}f}%"  # noqa: E731
    else:
        f = lambda v: f"{v:{sign}.{digits}f}"  # noqa: E731
    return f"{f(value)} [{f(low)}, {f(high)}]"


def verdict(low, high, what: str) -> str:
    """Words for a paired difference's CI: an advantage for ``what``, for natural, or none."""
    if low > 0:
        return f"a significant advantage for the {what}"
    if high < 0:
        return "a significant advantage for the natural source"
    return "not significant (the 95% CI includes 0)"


def glue(name: str, value, display: bool = False):
    """``myst_nb.glue`` a headline value under ``name`` (hidden unless ``display``) and return it;
    numbers are stored as plain floats so tests and the introduction can read them back."""
    from myst_nb import glue as _glue
    if isinstance(value, (np.floating, np.integer)):
        value = value.item()
    _glue(name, value, display=display)
    return value


#: the columns of the introduction's "results at a glance" table, glued per chapter as
#: ``<chapter>_row_<field>`` (see each chapter module's ``results_row``)
ROW_FIELDS = ("claim", "paper", "ours", "ci", "verdict")


def claim_values(claim, prefix: str = "") -> dict:
    """Glue-able values of a ``claims.Claim`` (None: "not tested"): ``{prefix}verdict`` (its
    label), ``{prefix}claim_key``, and per part ``{prefix}part_<key>_label`` (stated),
    ``{prefix}part_<key>_raw`` (the label its interval gives in this build, before the
    replication check) and ``{prefix}part_<key>_text`` (the interval, or why it is not
    testable / not replicated)."""
    if claim is None:
        return {f"{prefix}verdict": "not tested"}
    out = {f"{prefix}verdict": claim.label, f"{prefix}claim_key": claim.key}
    for p in claim.parts:
        out[f"{prefix}part_{p.key}_label"] = p.label
        out[f"{prefix}part_{p.key}_raw"] = p.raw_label or p.label
        out[f"{prefix}part_{p.key}_text"] = p.why or p.interval_text()
    return out


def claim_markdown(claim) -> str:
    """Markdown: the claim's label and a table of its parts (label, estimate with 95% CI, what
    it rests on, the paper's value and whether our interval holds it), controls marked."""
    if claim is None:
        return "**Verdict: not tested** (nothing to compare in this configuration)."
    head = (f"**{claim.title}: {claim.label}.**\n\n| part | label | estimate [95% CI] | rests on "
            f"| paper | paper inside |\n|---|---|---|---|---|---|\n")
    rows = "".join(
        f"| {p.name}{' (control, not counted)' if p.role == 'control' else ''} | {p.label} | "
        f"{p.why or p.interval_text() + ' ' + p.unit} | {p.basis or '–'} | "
        f"{'–' if p.paper != p.paper else f'{p.paper:+.1f}'} | {p.paper_inside} |\n"
        for p in claim.parts)
    return head + rows


def glue_all(prefix: str, values: dict) -> dict:
    """Glue every ``values[name]`` as ``<prefix>_<name>``; returns ``values``."""
    for name, value in values.items():
        glue(f"{prefix}_{name}", value)
    return values


def show_figures(figs) -> None:
    """Display the matplotlib figures ``figs`` as one PNG image, stacked top to bottom, and close
    them: a cell that draws one figure per target or block count gives one output, which the
    book numbers and captions as one figure (a cell's ``mystnb.figure`` metadata wraps each
    output, so several would each need a name)."""
    import io

    from IPython.display import Image, display
    from PIL import Image as PILImage
    images = []
    for fig in figs:
        buf = io.BytesIO()
        fig.savefig(buf, format="png", bbox_inches="tight")  # what the inline backend does
        plt.close(fig)
        images.append(PILImage.open(buf).convert("RGB"))
    if not images:
        return
    out = PILImage.new("RGB", (max(i.width for i in images), sum(i.height for i in images)),
                       "white")
    top = 0
    for image in images:
        out.paste(image, (0, top))
        top += image.height
    buf = io.BytesIO()
    out.save(buf, format="png")
    display(Image(data=buf.getvalue(), format="png"))


#: a noise-trained control counts as matched in clean accuracy to a robust family when the 95% interval of its
#: clean accuracy minus the robust family's lies within +-MATCH_POINTS points (fixed with the
#: mini matched-noise control, before any of its transfer runs)
MATCH_POINTS = 2.0


def clean_match(clean, family: str, control: str, level: float = 0.95) -> dict:
    """Clean source accuracy (points) of ``family`` and ``control`` from ``zoo.table`` rows
    ``clean`` (one per source): means, Welch's ``level`` interval of control minus family, and
    ``matched`` (that interval inside +-:data:`MATCH_POINTS`)."""
    from scipy import stats as st
    a = 100 * clean.loc[clean["family"] == family, "clean_acc"].to_numpy(float)
    b = 100 * clean.loc[clean["family"] == control, "clean_acc"].to_numpy(float)
    out = dict(family=a.mean(), control=b.mean(), diff=b.mean() - a.mean(), n_family=len(a),
               n_control=len(b), low=math.nan, high=math.nan, matched=False)
    if len(a) > 1 and len(b) > 1:
        va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
        dof = (va + vb) ** 2 / (va ** 2 / (len(a) - 1) + vb ** 2 / (len(b) - 1)) \
            if va + vb > 0 else math.inf
        half = st.t.ppf(0.5 + level / 2, dof) * math.sqrt(va + vb)
        out.update(low=out["diff"] - half, high=out["diff"] + half)
        out["matched"] = bool(-MATCH_POINTS < out["low"] and out["high"] < MATCH_POINTS)
    return out
