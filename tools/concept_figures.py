"""Draw the book's concept figures (boxes and arrows, no data) as SVG into book/_static/concepts/.

Each chapter opens its idea with one diagram drawn here with matplotlib, deterministically (no
dates, a fixed hash salt, text kept as text), so the committed SVGs change only when this script
does. A test (tests/test_tools.py) draws them into a temporary folder and compares.

    python tools/concept_figures.py            # rewrite book/_static/concepts/*.svg
    python tools/concept_figures.py --check    # exit 1 naming the SVGs that are missing or stale
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import matplotlib

matplotlib.use("svg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch, Rectangle  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "book" / "_static" / "concepts"
STYLE = {"svg.hashsalt": "pvqae-book", "svg.fonttype": "none", "font.family": "DejaVu Sans",
         "font.size": 10}
# one palette for every diagram: data, model parts, scores, evaluation
DATA, MODEL, SCORE, EVAL, NOTE = "#dbe9f6", "#fde9c9", "#e3f1dc", "#eeeeee", "#555555"
LEVELS = ["#3b6fb6", "#e8a90c", "#c2185b"]   # coarse, middle, fine: the colours of pv.viz.LEVEL_COLORS
HIDDEN = "#bbbbbb"


def canvas(width: float, height: float):
    """A figure of width x height inches whose data coordinates are inches (origin bottom left)."""
    fig = plt.figure(figsize=(width, height))
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set(xlim=(0, width), ylim=(0, height))
    ax.axis("off")
    return fig, ax


def box(ax, x, y, w, h, text, color=MODEL, size=9, bold=False):
    """A rounded box centred at (x, y) of size w x h with centred text; returns its edges."""
    ax.add_patch(FancyBboxPatch((x - w / 2, y - h / 2), w, h, boxstyle="round,pad=0.02,rounding_size=0.08",
                                fc=color, ec="#333333", lw=0.9))
    ax.text(x, y, text, ha="center", va="center", fontsize=size, weight="bold" if bold else "normal",
            linespacing=1.25)
    return {"l": (x - w / 2, y), "r": (x + w / 2, y), "t": (x, y + h / 2), "b": (x, y - h / 2)}


def arrow(ax, start, end, text=None, dashed=False, color="#333333", offset=(0, 0.12), rad=0.0, size=8):
    ax.add_patch(FancyArrowPatch(start, end, arrowstyle="-|>", mutation_scale=11, lw=1.0, color=color,
                                 linestyle="--" if dashed else "-", shrinkA=1, shrinkB=1,
                                 connectionstyle=f"arc3,rad={rad}"))
    if text:
        ax.text((start[0] + end[0]) / 2 + offset[0], (start[1] + end[1]) / 2 + offset[1], text,
                ha="center", va="bottom", fontsize=size, color=NOTE)


def grid(ax, x, y, n, cell, colors, label=None):
    """An n x n grid of squares, lower left corner (x, y), colours given row by row from the top."""
    for r in range(n):
        for c in range(n):
            ax.add_patch(Rectangle((x + c * cell, y + (n - 1 - r) * cell), cell, cell,
                                   fc=colors[r * n + c], ec="#444444", lw=0.5))
    if label:
        ax.text(x + n * cell / 2, y - 0.12, label, ha="center", va="top", fontsize=8, color=NOTE)


# --- the diagrams ---------------------------------------------------------------------------------

def pvqae_flow():
    """Introduction: PVQAE's data flow, from an image to the score S = S_prior x S_recon."""
    fig, ax = canvas(9.0, 3.3)
    img = box(ax, 0.65, 1.9, 1.0, 0.8, "image $x$", DATA)
    enc = box(ax, 2.15, 1.9, 1.1, 0.8, "encoder\n3 levels", MODEL)
    arrow(ax, img["r"], enc["l"])
    levels = [box(ax, 3.65, 2.75 - 0.85 * i, 1.2, 0.55, t, MODEL, size=8)
              for i, t in enumerate(["coarse codes", "middle codes", "fine codes"])]
    for lv in levels:
        arrow(ax, enc["r"], lv["l"])
    router = box(ax, 5.35, 2.6, 1.4, 0.75, "Dynamic Routing\nModule: one\nlevel per patch", MODEL, size=8)
    for lv in levels:
        arrow(ax, lv["r"], router["l"])
    budget = box(ax, 5.35, 1.2, 1.4, 0.75, "DWT budget\n(context richness)", MODEL, size=8)
    arrow(ax, budget["t"], router["b"])
    ax.text(5.42, 1.9, "cost\nper level", fontsize=8, color=NOTE, ha="left", va="center")
    dec = box(ax, 7.0, 2.6, 1.0, 0.75, "decoder\n$\\hat x$", MODEL, size=9)
    arrow(ax, router["r"], dec["l"])
    prior = box(ax, 7.0, 1.2, 1.1, 0.75, "Budget Prior\nTransformer", MODEL, size=8)
    arrow(ax, router["r"], prior["l"])
    s = box(ax, 8.45, 1.9, 0.95, 1.0, "$S =$\n$S_\\mathrm{prior}$\n$\\times S_\\mathrm{recon}$", SCORE,
            size=9)
    arrow(ax, dec["r"], s["l"])
    arrow(ax, prior["r"], s["l"])
    ax.text(7.75, 2.75, "$S_\\mathrm{recon}$", fontsize=8, color=NOTE, ha="center")
    ax.text(7.75, 1.0, "$S_\\mathrm{prior}$", fontsize=8, color=NOTE, ha="center")
    ax.text(0.15, 0.3, "trained on normal images only; the score is high where $x$ is unlike them",
            fontsize=8, color=NOTE, ha="left", va="center")
    return fig


def one_class():
    """Chapter 1: the one-class setting. Training sees normal images; labels only evaluate."""
    fig, ax = canvas(9.0, 2.9)
    ax.text(0.15, 2.7, "training", fontsize=9, weight="bold", va="center")
    ax.text(0.15, 1.45, "testing", fontsize=9, weight="bold", va="center")
    normal = box(ax, 1.35, 2.25, 1.7, 0.6, "normal images\n$x_1, \\dots, x_N$", DATA, size=8)
    model = box(ax, 3.75, 1.75, 1.6, 0.8, "detector\n(fit to normal)", MODEL)
    arrow(ax, normal["r"], (model["l"][0], model["l"][1] + 0.2), "fit", offset=(0, 0.02))
    test = box(ax, 1.35, 1.05, 1.7, 0.6, "test image $x$\n(normal or not)", DATA, size=8)
    arrow(ax, test["r"], (model["l"][0], model["l"][1] - 0.2))
    amap = box(ax, 6.0, 2.25, 1.8, 0.6, "anomaly map $A(x)$\nlocalizes", SCORE, size=8)
    score = box(ax, 6.0, 1.2, 1.8, 0.6, "image score\n$s(x) = \\max A(x)$", SCORE, size=8)
    arrow(ax, model["r"], amap["l"])
    arrow(ax, model["r"], score["l"])
    ev = box(ax, 8.1, 1.75, 1.5, 1.05, "evaluation\nimage AUROC\npixel AUROC\nPRO", EVAL, size=8)
    arrow(ax, amap["r"], ev["l"])
    arrow(ax, score["r"], ev["l"])
    labels = box(ax, 8.1, 0.45, 1.5, 0.5, "labels, masks", EVAL, size=8)
    arrow(ax, labels["t"], ev["b"], dashed=True)
    ax.text(4.6, 0.3, "labels and masks are used only here, never to train", fontsize=8, color=NOTE,
            ha="center")
    return fig


def vq_lookup():
    """Chapter 2: vector quantization, a nearest-code lookup with a straight-through gradient."""
    fig, ax = canvas(9.0, 3.0)
    x = box(ax, 0.7, 1.7, 1.0, 0.7, "image $x$", DATA)
    enc = box(ax, 2.05, 1.7, 1.1, 0.7, "encoder", MODEL)
    arrow(ax, x["r"], enc["l"])
    blues = ["#9ecae1", "#6baed6", "#c6dbef", "#4292c6", "#9ecae1", "#c6dbef", "#6baed6", "#9ecae1",
             "#4292c6"]
    grid(ax, 3.05, 1.25, 3, 0.3, blues, "$z = E(x)$: one vector per patch")
    arrow(ax, enc["r"], (3.05, 1.7))
    cb_colors = ["#e6550d", "#31a354", "#756bb1", "#3182bd", "#fdae6b"]
    ax.text(5.35, 2.75, "codebook $Q = \\{q_1, \\dots, q_K\\}$", fontsize=8, ha="center", color=NOTE)
    for k, c in enumerate(cb_colors):
        ax.add_patch(Rectangle((4.6 + 0.3 * k, 2.3), 0.28, 0.28, fc=c, ec="#444444", lw=0.5))
        ax.text(4.74 + 0.3 * k, 2.2, f"{k + 1}", fontsize=7, ha="center", va="top", color=NOTE)
    look = box(ax, 5.35, 1.55, 1.5, 0.6, "nearest code\n$\\mathrm{argmin}_m\\, \\|z - q_m\\|$", MODEL,
               size=8)
    arrow(ax, (4.0, 1.7), look["l"])
    arrow(ax, (5.35, 2.18), look["t"])
    idx = ["#3182bd", "#31a354", "#756bb1", "#e6550d", "#3182bd", "#756bb1", "#31a354", "#3182bd",
           "#e6550d"]
    grid(ax, 6.45, 1.25, 3, 0.3, idx, "$z_q$: the nearest codes")
    arrow(ax, look["r"], (6.45, 1.7))
    dec = box(ax, 8.3, 1.7, 1.0, 0.7, "decoder\n$\\hat x$", MODEL)
    arrow(ax, (7.4, 1.7), dec["l"])
    arrow(ax, (6.9, 0.95), (3.5, 0.95), "gradient copied past the lookup (straight-through)",
          dashed=True, color="#b22222", offset=(0, -0.35))
    return fig


def dwt_budget():
    """Chapter 4: context richness from wavelets, and the budget a routing pays for it."""
    fig, ax = canvas(9.0, 3.0)
    img = box(ax, 0.75, 1.6, 1.1, 0.8, "image $x$", DATA)
    dwt = box(ax, 2.35, 1.6, 1.3, 0.8, "Haar DWT\nLH, HL, HH", MODEL, size=8)
    arrow(ax, img["r"], dwt["l"])
    ent = ["#fee0d2", "#fee0d2", "#fc9272", "#de2d26", "#fee0d2", "#fc9272", "#de2d26", "#fc9272",
           "#fee0d2"]
    grid(ax, 3.55, 1.15, 3, 0.3, ent, "entropy per patch")
    arrow(ax, dwt["r"], (3.55, 1.6))
    cost = box(ax, 5.6, 1.6, 1.6, 0.9, "cost of a level\nhigh where the patch\nis plain", MODEL, size=8)
    arrow(ax, (4.5, 1.6), cost["l"])
    c, m, f = LEVELS
    route = [c, c, m, f, c, m, f, m, c]
    grid(ax, 6.9, 1.95, 3, 0.25, route, None)
    ax.text(7.27, 2.82, "router's levels", fontsize=8, ha="center", color=NOTE)
    arrow(ax, (7.27, 1.9), (7.27, 1.35))
    loss = box(ax, 7.6, 0.85, 2.4, 0.55, "budget loss $\\lambda\\, L_\\mathrm{budget}$", SCORE,
               size=9)
    arrow(ax, cost["r"], (loss["l"][0] + 0.3, loss["t"][1]), rad=-0.2)
    ax.text(0.2, 0.25, "fine codes are cheap where the wavelets see detail, expensive where the "
            "surface is flat", fontsize=8, color=NOTE)
    return fig


def lfq_sign():
    """Chapter 9: lookup-free quantization, the code of a vector is the signs of its entries."""
    fig, ax = canvas(9.0, 2.8)
    z = [0.7, -0.2, 1.3, -0.9]
    ax.text(1.2, 2.45, "encoder output $z$ (4 numbers)", fontsize=8, ha="center", color=NOTE)
    for i, v in enumerate(z):
        y = 1.95 - 0.38 * i
        ax.add_patch(Rectangle((0.7, y - 0.15), 1.0, 0.3, fc=DATA, ec="#444444", lw=0.6))
        ax.text(1.2, y, f"{v:+.1f}", ha="center", va="center", fontsize=9)
        ax.add_patch(Rectangle((3.5, y - 0.15), 0.6, 0.3, fc=SCORE if v > 0 else "#fde0dd", ec="#444444",
                               lw=0.6))
        ax.text(3.8, y, "+1" if v > 0 else "-1", ha="center", va="center", fontsize=9)
        arrow(ax, (1.75, y), (3.45, y))
    ax.text(2.6, 2.2, "$q = \\mathrm{sign}(z)$", fontsize=9, ha="center")
    ax.text(3.8, 2.45, "code $q$", fontsize=8, ha="center", color=NOTE)
    idx = box(ax, 5.7, 1.4, 1.9, 0.9, "signs read as bits\n1, 0, 1, 0 (bit $i$ = 1\nwhere $q_i > 0$)\n"
              "→ code index 5", MODEL, size=8)
    arrow(ax, (4.15, 1.4), idx["l"])
    note = box(ax, 7.95, 1.4, 1.7, 1.2, "no codebook to\nsearch: $2^4 = 16$\nimplicit codes;\n"
               "entropy loss\nkeeps them in use", EVAL, size=8)
    arrow(ax, idx["r"], note["l"])
    ax.text(0.2, 0.2, "VQ compares $z$ with every stored code; LFQ reads the code off $z$ directly",
            fontsize=8, color=NOTE)
    return fig


def synthetic_head():
    """Chapter 10: a synthetic anomaly pasted onto a normal image, and a segmentation head that learns
    to find it."""
    fig, ax = canvas(9.0, 2.9)
    normal = box(ax, 0.8, 2.2, 1.3, 0.6, "normal image", DATA, size=8)
    noise = box(ax, 0.8, 1.1, 1.3, 0.6, "Perlin noise\n→ mask $M$", DATA, size=8)
    paste = box(ax, 2.75, 1.65, 1.6, 0.8, "blend foreign\ncontent inside $M$", MODEL, size=8)
    arrow(ax, normal["r"], paste["l"])
    arrow(ax, noise["r"], paste["l"])
    rec = box(ax, 4.85, 2.2, 1.55, 0.6, "autoencoder\nreconstructs $\\hat x$", MODEL, size=8)
    arrow(ax, paste["r"], rec["l"])
    head = box(ax, 6.85, 1.65, 1.7, 0.8, "segmentation head\nsees the input\nand its reconstruction", MODEL, size=8)
    arrow(ax, rec["r"], head["l"])
    arrow(ax, paste["r"], head["l"], rad=0.25)
    out = box(ax, 8.45, 1.65, 0.95, 0.8, "map\n$\\hat M$", SCORE, size=8)
    arrow(ax, head["r"], out["l"])
    loss = box(ax, 6.85, 0.45, 2.7, 0.5, "Dice + Focal loss against the known $M$", EVAL, size=8)
    arrow(ax, (8.45, 1.25), (loss["r"][0] - 0.2, loss["t"][1]), dashed=True)
    ax.text(0.2, 0.2, "the anomalies are made up, so their masks are free", fontsize=8, color=NOTE)
    return fig


def routing_module():
    """Chapter 3: the Dynamic Routing Module, one resolution per coarse patch by Gumbel-Softmax."""
    fig, ax = canvas(9.0, 3.1)
    levels = ["coarse features\n$h \\times w$", "middle features\n$2h \\times 2w$",
              "fine features\n$4h \\times 4w$"]
    boxes = [box(ax, 0.95, 2.55 - 0.8 * i, 1.5, 0.6, t, DATA, size=8) for i, t in enumerate(levels)]
    pool = [box(ax, 2.65, 2.55 - 0.8 * i, 1.1, 0.5, t, MODEL, size=8)
            for i, t in enumerate(["as is", "avg-pool 2x2", "avg-pool 4x4"])]
    for a, b in zip(boxes, pool):
        arrow(ax, a["r"], b["l"])
    cat = box(ax, 4.05, 1.75, 0.85, 1.9, "concat\nper\ncoarse\npatch", MODEL, size=8)
    for b in pool:
        arrow(ax, b["r"], (cat["l"][0], b["r"][1]))
    mlp = box(ax, 5.3, 1.75, 1.15, 0.9, "MLP, one\nhidden layer\nlogits $g^{ij}$", MODEL, size=8)
    arrow(ax, cat["r"], mlp["l"])
    gum = box(ax, 6.75, 1.75, 1.25, 0.9, "Gumbel-Softmax\n(temperature $\\tau$)\none-hot forward", MODEL,
              size=8)
    arrow(ax, mlp["r"], gum["l"])
    c, m, f = LEVELS
    route = [c, m, c, c, f, m, c, m, c]
    grid(ax, 7.95, 1.35, 3, 0.27, route, "one level per patch")
    arrow(ax, gum["r"], (7.95, 1.75))
    ax.text(0.2, 0.3, "the decoder gets each coarse patch's codes from the level chosen for it; "
            "training sees the soft scores' gradient (straight-through)", fontsize=8, color=NOTE)
    return fig


def lambda_ramp():
    """Chapter 5: the budget weight rises during training; the router gives up fine codes on
    plain patches first."""
    fig, ax = canvas(9.0, 2.9)
    ax.plot([0.6, 3.6], [0.7, 2.3], color="#333333", lw=1.4)
    ax.plot([0.6, 3.6], [0.7, 0.7], color="#333333", lw=0.8)
    ax.plot([0.6, 0.6], [0.7, 2.5], color="#333333", lw=0.8)
    ax.text(2.1, 0.45, "training progress $p = t/T$", ha="center", va="top", fontsize=8, color=NOTE)
    ax.text(0.45, 1.6, "$\\lambda(p)$", ha="right", va="center", fontsize=9)
    ax.text(3.65, 2.3, "$\\lambda_{max}$", ha="left", va="center", fontsize=9)
    coarse, middle, fine = LEVELS
    plain = [0, 1, 2, 3, 6]                      # the flat patches; the others hold print
    states = [(fine, fine), (middle, fine), (coarse, middle)]   # (plain, detailed)
    for k, (title, (c_plain, c_rich)) in enumerate(zip(["small $\\lambda$", "larger", "large $\\lambda$"],
                                                     states)):
        colors = [c_plain if i in plain else c_rich for i in range(9)]
        grid(ax, 4.5 + 1.5 * k, 1.0, 3, 0.33, colors, title)
        if k:
            arrow(ax, (4.5 + 1.5 * k - 0.45, 1.5), (4.5 + 1.5 * k - 0.05, 1.5))
    ax.text(6.25, 2.35, "the same image: flat surface (left, top) and detailed print",
            ha="center", fontsize=8, color=NOTE)
    ax.text(0.2, 0.15, "each level costs $c^r / H$ (chapter 4): as $\\lambda$ grows the plain patches "
            "are the first to drop to cheaper codes", fontsize=8, color=NOTE)
    return fig


def real_protocol():
    """Chapter 8: the real-data protocol. Normal tiles train, masks only evaluate, seeds give spread."""
    fig, ax = canvas(9.0, 3.4)
    data = box(ax, 0.9, 2.05, 1.5, 1.05, "MTSD folders\nMT_Free: normal\nMT_<Defect>:\nimage + mask",
               DATA, size=8)
    split = box(ax, 2.75, 2.05, 1.35, 0.75, "seeded split\n(--seed N)", MODEL, size=8)
    arrow(ax, data["r"], split["l"])
    train = box(ax, 4.55, 2.85, 1.6, 0.6, "train: 80 % of the\nnormal tiles only", DATA, size=8)
    test = box(ax, 4.55, 1.25, 1.6, 0.6, "test: other 20 %\n+ every defective", DATA, size=8)
    arrow(ax, split["r"], train["l"])
    arrow(ax, split["r"], test["l"])
    det = box(ax, 6.45, 2.85, 1.45, 0.6, "detector\n(fit, no masks)", MODEL, size=8)
    arrow(ax, train["r"], det["l"])
    maps = box(ax, 6.45, 1.25, 1.45, 0.6, "map $S(u)$, raw\nor standardized", SCORE, size=8)
    arrow(ax, test["r"], maps["l"])
    arrow(ax, det["b"], maps["t"], "score", offset=(0.28, -0.05))
    ev = box(ax, 8.3, 1.25, 1.3, 0.95, "image AUROC\npixel AUROC\nPRO", EVAL, size=8)
    arrow(ax, maps["r"], ev["l"])
    seeds = box(ax, 8.3, 2.85, 1.3, 0.6, "seeds 0, 1, 2:\nmean ± std", EVAL, size=8)
    arrow(ax, ev["t"], seeds["b"])
    ax.text(4.55, 0.55, "labels and masks of the test tiles: used only by the evaluation",
            fontsize=8, color=NOTE, ha="center")
    ax.text(0.15, 0.2, "standardized: $(S(u) - \\mu(u))\\,/\\,\\sigma(u)$, with $\\mu$ and "
            "$\\sigma$ taken over the training tiles' maps at the same pixel $u$",
            fontsize=8, color=NOTE, ha="left")
    return fig


def code_bank():
    """Chapter 8b: a frozen pyramid under PVQAE's codebooks read as a memory bank, beside PatchCore."""
    fig, ax = canvas(9.0, 3.6)
    img = box(ax, 0.5, 1.8, 0.75, 0.7, "tile $x$", DATA, size=8)
    net = box(ax, 1.75, 1.8, 1.25, 1.0, "frozen\nEfficientNet-\nLite0\n(ImageNet)", EVAL, size=8)
    arrow(ax, img["r"], net["l"])
    levels = [box(ax, 3.4, 2.45 - 0.65 * i, 1.3, 0.45, t, DATA, size=8)
              for i, t in enumerate(["coarse 7 x 7", "middle 14 x 14", "fine 28 x 28"])]
    for lv in levels:
        arrow(ax, net["r"], lv["l"])
    ax.text(3.4, 2.9, "descriptors $z_r$ per level", fontsize=8, color=NOTE, ha="center")
    books = box(ax, 5.15, 2.45, 1.6, 0.8, "codebook per level:\n4096 codes, k-means\non normal tiles",
                MODEL, size=8)
    for lv in levels:
        arrow(ax, lv["r"], books["l"])
    dist = box(ax, 6.85, 2.45, 1.3, 0.8, "$d_r$: distance\nto the nearest\ncode", SCORE, size=8)
    arrow(ax, books["r"], dist["l"])
    router = box(ax, 6.85, 1.3, 1.3, 0.6, "router: one level\nper coarse patch", MODEL, size=8)
    arrow(ax, router["t"], dist["b"], "picks $r^*$", offset=(0.42, -0.1))
    out = box(ax, 8.4, 2.45, 1.0, 0.8, "anomaly\nmap", SCORE, size=8)
    arrow(ax, dist["r"], out["l"])
    ax.text(6.0, 3.2, "PVQAE code bank: the codebooks are the memory", fontsize=8, weight="bold",
            ha="center")
    bank = box(ax, 5.15, 0.45, 1.6, 0.6, "memory bank: 1 % of\nthe real patches", MODEL, size=8)
    arrow(ax, levels[2]["b"], bank["l"], rad=0.25)
    pc = box(ax, 6.85, 0.45, 1.3, 0.6, "distance to the\nnearest patch", SCORE, size=8)
    arrow(ax, bank["r"], pc["l"])
    pc_out = box(ax, 8.4, 0.45, 1.0, 0.6, "anomaly\nmap", SCORE, size=8)
    arrow(ax, pc["r"], pc_out["l"])
    ax.text(5.15, 0.0, "PatchCore, on the same features (middle + fine)", fontsize=8, weight="bold",
            ha="center")
    return fig


def allocation():
    """Chapter 3b: what a trained router should do with an image whose richness varies, and the
    frame a zero-padded pretrained network adds."""
    fig, ax = canvas(9.0, 2.7)
    flat, print_ = "#e6e6e6", "#7a7a7a"
    c, m, _ = LEVELS
    n, cell = 6, 0.3
    image = [print_ if (2 <= r <= 3 and 2 <= q <= 4) else flat for r in range(n) for q in range(n)]
    grid(ax, 0.35, 0.6, n, cell, image, "image: flat surface, printed label")
    ent = ["#de2d26" if v == print_ else "#fee0d2" for v in image]
    grid(ax, 2.7, 0.6, n, cell, ent, "DWT entropy per patch")
    arrow(ax, (2.2, 1.5), (2.65, 1.5))
    want = [m if v == print_ else c for v in image]
    grid(ax, 5.0, 0.6, n, cell, want, "router: finer codes on the print")
    arrow(ax, (4.55, 1.5), (4.95, 1.5))
    frame = [m if (r in (0, n - 1) or q in (0, n - 1)) else want[n * r + q]
             for r in range(n) for q in range(n)]
    arrow(ax, (6.85, 1.5), (6.98, 1.5))
    grid(ax, 7.0, 0.6, n, cell, frame, "zero padding adds a frame")
    ax.text(4.5, 2.55, "coarse (blue) and middle (yellow) codes per coarse patch", ha="center",
            fontsize=8, color=NOTE)
    return fig




def budget_prior_mask():
    """Chapter 6: the Budget Prior Transformer's masked prediction of budget tokens."""
    fig, ax = canvas(9.0, 2.5)
    levels = [1, 1, 0, 0, 1, 2, 1, 0, 1, 2, 2, 1, 0, 1, 1, 1]
    hidden = {5, 10, 12}
    ax.text(0.85, 2.65, "budget map $B$ (4 x 4)", fontsize=9, ha="center", color=NOTE)
    grid(ax, 0.25, 1.05, 4, 0.3, [LEVELS[v] for v in levels], "level per coarse patch")
    arrow(ax, (1.5, 1.65), (1.95, 1.65), "flatten", offset=(0, 0.05))
    # the token sequence: class token, then 16 tokens, hidden ones grey with "?"
    x0, cell = 2.0, 0.17
    ax.add_patch(Rectangle((x0, 1.65 - cell / 2), cell, cell, fc=EVAL, ec="#444444", lw=0.5))
    ax.text(x0 + cell / 2, 1.65, "c", ha="center", va="center", fontsize=7)
    for i, v in enumerate(levels):
        x = x0 + (i + 1.3) * cell
        ax.add_patch(Rectangle((x, 1.65 - cell / 2), cell, cell, fc=HIDDEN if i in hidden else LEVELS[v],
                               ec="#444444", lw=0.5))
        if i in hidden:
            ax.text(x + cell / 2, 1.65, "?", ha="center", va="center", fontsize=7)
    ax.text(x0, 1.45, "class token c + 16 budget\ntokens (grey: hidden)", fontsize=8, color=NOTE,
            va="top")
    ax.text(x0, 1.9, "+ level and position\nembeddings", fontsize=8, color=NOTE)
    end = x0 + 17.3 * cell
    block = box(ax, 5.75, 1.65, 1.35, 0.95, "transformer\nblock\n(attention + MLP)", MODEL, size=9)
    arrow(ax, (end + 0.05, 1.65), block["l"])
    out = box(ax, 7.85, 1.65, 1.5, 0.95, "predicted level\n$\\hat b_\\mathrm{norm}$ at\neach position",
              SCORE, size=9)
    arrow(ax, block["r"], out["l"])
    loss = box(ax, 6.6, 0.45, 3.6, 0.5, "$L_\\mathrm{Prior}$: cross-entropy on the hidden "
               "positions only", EVAL, size=9)
    arrow(ax, out["b"], (loss["r"][0] - 0.3, loss["t"][1]), dashed=True)
    ax.text(0.2, 0.45, "trained on the budgets\nof normal images only", fontsize=9, color=NOTE,
            va="center")
    return fig


def _heat(v):
    """A white-to-red colour for v in [0, 1]."""
    v = min(max(v, 0.0), 1.0)
    return (1.0, 1.0 - 0.75 * v, 1.0 - 0.85 * v)


def score_product():
    """Chapter 7: S = S_prior x S_recon, the coarse prior map up-sampled and multiplied pixel by pixel."""
    fig, ax = canvas(9.0, 2.5)
    prior = [0.1] * 16
    prior[5] = 1.0                                 # the one patch whose budget surprised the prior
    recon = [[0.15] * 8 for _ in range(8)]
    for r, c, v in ((2, 2, 1.0), (2, 3, 0.8), (3, 2, 0.7), (3, 3, 0.9),   # the defect
                    (6, 6, 0.8), (0, 7, 0.6)):                             # normal texture errors
        recon[r][c] = v
    up = [[prior[(r // 2) * 4 + c // 2] for c in range(8)] for r in range(8)]
    prod = [[up[r][c] * recon[r][c] for c in range(8)] for r in range(8)]
    top = max(max(row) for row in prod)
    cell = 0.18
    grid(ax, 0.35, 0.95, 4, 0.36, [_heat(v) for v in prior], None)
    ax.text(1.07, 2.7, "$S_\\mathrm{prior}$ (coarse grid)", fontsize=9, ha="center", color=NOTE)
    ax.text(1.07, 0.8, "budget surprise,\nsums to 1 per image", fontsize=8, ha="center", va="top",
            color=NOTE)
    arrow(ax, (1.9, 1.67), (2.45, 1.67), "up-sample", offset=(0, 0.08))
    flat = [v for row in up for v in row]
    grid(ax, 2.55, 0.95, 8, cell, [_heat(v) for v in flat], None)
    ax.text(3.27, 2.7, "to pixels", fontsize=9, ha="center", color=NOTE)
    ax.text(4.3, 1.67, "$\\times$", fontsize=16, ha="center", va="center")
    grid(ax, 4.6, 0.95, 8, cell, [_heat(v) for row in recon for v in row], None)
    ax.text(5.32, 2.7, "$S_\\mathrm{recon} = \\|\\hat x - x\\|^2$", fontsize=8, ha="center", color=NOTE)
    ax.text(5.32, 0.8, "decoded with the\npredicted budget", fontsize=8, ha="center", va="top",
            color=NOTE)
    ax.text(6.35, 1.67, "=", fontsize=16, ha="center", va="center")
    grid(ax, 6.65, 0.95, 8, cell, [_heat(v / top) for row in prod for v in row], None)
    ax.text(7.37, 2.7, "$S$, then smoothed", fontsize=9, ha="center", color=NOTE)
    ax.text(7.37, 0.8, "high where both\nfactors are high", fontsize=8, ha="center", va="top",
            color=NOTE)
    score = box(ax, 8.65, 1.67, 0.6, 0.7, "max\n→ image\nscore", SCORE, size=8)
    arrow(ax, (8.12, 1.67), score["l"])
    return fig


def three_metrics():
    """Chapter 7b: one anomaly map per test image, read three ways: image AUROC, pixel AUROC, PRO."""
    fig, ax = canvas(9.0, 3.0)
    maps = box(ax, 0.95, 1.55, 1.5, 1.0, "anomaly maps\n$S$ of all\ntest images", SCORE, size=9)
    rows = [(2.5, "one score per image\n(the maximum of $S$)",
             "image AUROC\nnormal vs defective\nimages ranked"),
            (1.55, "every pixel, labelled\nby the defect masks",
             "pixel AUROC\nall pixels pooled:\nlarge defects weigh most"),
            (0.6, "each connected defect\nregion on its own",
             "PRO: overlap per region,\naveraged, up to\n30 % false positives")]
    for y, how, what in rows:
        mid = box(ax, 3.65, y, 2.3, 0.72, how, DATA, size=9)
        arrow(ax, maps["r"], mid["l"])
        end = box(ax, 6.6, y, 2.3, 0.85, what, EVAL, size=9)
        arrow(ax, mid["r"], end["l"])
    ax.text(7.85, 1.55, "per category,\nthen the mean", fontsize=9, color=NOTE, ha="left", va="center")
    return fig


FIGURES = {
    "pvqae_flow.svg": pvqae_flow,
    "one_class.svg": one_class,
    "vq_lookup.svg": vq_lookup,
    "dwt_budget.svg": dwt_budget,
    "lfq_sign.svg": lfq_sign,
    "synthetic_head.svg": synthetic_head,
    "routing_module.svg": routing_module,
    "lambda_ramp.svg": lambda_ramp,
    "allocation.svg": allocation,
    "real_protocol.svg": real_protocol,
    "code_bank.svg": code_bank,
    "budget_prior_mask.svg": budget_prior_mask,
    "score_product.svg": score_product,
    "three_metrics.svg": three_metrics,
}


def draw(out: Path) -> list[Path]:
    """Write every figure into ``out``; returns the paths."""
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    with plt.rc_context(STYLE):
        for name, make in FIGURES.items():
            fig = make()
            fig.savefig(out / name, format="svg", bbox_inches="tight", pad_inches=0.08,
                        metadata={"Date": None, "Creator": None})
            plt.close(fig)
            paths.append(out / name)
    return paths


def stale(out: Path = OUT) -> list[str]:
    """The committed SVGs that differ from a fresh drawing (or are missing)."""
    with tempfile.TemporaryDirectory() as tmp:
        fresh = draw(Path(tmp))
        return [p.name for p in fresh if not (out / p.name).is_file()
                or (out / p.name).read_bytes() != p.read_bytes()]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="write nothing; exit 1 when an SVG is stale")
    args = ap.parse_args(argv)
    if args.check:
        found = stale()
        print("stale concept figures: " + ", ".join(found) if found else "every concept figure is current")
        return 1 if found else 0
    for path in draw(OUT):
        print(path.relative_to(ROOT))
    return 0


if __name__ == "__main__":
    sys.exit(main())
