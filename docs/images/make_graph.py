"""Draws the computation graph of the reparameterized negative ELBO: docs/images/elbo_graph.svg.

    python docs/images/make_graph.py [OUT.svg]

Forward edges are black, labelled with the equation each computes; backward edges are red and dashed, labelled
with the equation of the gradient they carry. Square boxes are deterministic nodes and the round one is random,
as in the lecture's picture of the reparameterized form: the noise enters from the side, as an input that needs
no gradient. The text stays text in the SVG (not paths), so tests/test_docs.py can check that every equation
label drawn exists in the docs. Needs matplotlib only.
"""

import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.patches import Ellipse, FancyArrowPatch, FancyBboxPatch  # noqa: E402

OUT = Path(__file__).with_name("elbo_graph.svg")
RED = "#c0392b"
BOX_H = 0.9
#: Text sizes in points. The page shows the figure across its column and the margin beside it (about 900 px for
#: its 960), so the smallest text, the edges' equation labels, comes out about 12 px tall.
LABEL_PT, NOTE_PT, NODE_PT, NODE_TWO_LINES_PT = 9.5, 10, 11, 10

#: name -> (x, y, width, text); the noise is the one random node
NODES = {
    "x": (0.9, 4.0, 1.51, "$x$ (data)"),
    "encoder": (4.2, 4.0, 2.27, "encoder MLP\n(parameters $\\phi$)"),
    "mu": (7.4, 5.7, 1.08, "$\\mu$"),
    "log_var": (7.4, 2.3, 1.4, "$\\log\\sigma^2$"),
    "z": (11.2, 5.7, 2.48, "$z = \\mu + \\sigma \\odot \\varepsilon$"),
    "noise": (11.2, 7.7, 2.48, "$\\varepsilon \\sim N(0, I)$"),
    "kl": (11.2, 2.3, 2.81, "KL$(q(z|x)\\,\\|\\,p(z))$"),
    "decoder": (14.9, 5.7, 2.27, "decoder MLP\n(parameters $\\theta$)"),
    "nll": (18.5, 5.7, 1.84, "$-\\log p(x|z)$"),
    "loss": (18.5, 2.3, 3.46, "$L = \\beta\\,\\mathrm{KL} - \\log p(x|z)$"),
}
#: forward edges: (from, to, label or None, label offset from the edge's middle)
FORWARD = [
    ("x", "encoder", "affine-fwd", (0.0, 0.35)),
    ("encoder", "mu", None, None),
    ("encoder", "log_var", None, None),
    ("mu", "z", "reparam-fwd", (0.0, 0.35)),
    ("log_var", "z", None, None),
    ("noise", "z", None, None),
    ("mu", "kl", None, None),
    ("log_var", "kl", "kl-fwd", (0.0, 0.35)),
    ("z", "decoder", None, None),
    ("decoder", "nll", "bern-nll, gauss-nll", (0.0, 0.5)),
    ("kl", "loss", "neg-elbo", (0.0, 0.35)),
    ("nll", "loss", None, None),
]
#: backward edges, drawn a little to the side of their forward edge: (from, to, label or None, label offset)
BACKWARD = [
    ("loss", "nll", None, None),
    ("nll", "decoder", "bern-grad, gauss-grad", (0.0, -0.45)),
    ("decoder", "z", "mlp-bwd", (0.0, -0.3)),
    ("z", "mu", "reparam-bwd", (0.0, -0.3)),
    ("z", "log_var", None, None),
    ("kl", "log_var", "kl-bwd", (0.0, -0.3)),
    ("kl", "mu", None, None),
    ("mu", "encoder", "elbo-bwd: the paths add", (-1.0, 0.3)),
    ("log_var", "encoder", None, None),
]
SIDE = 0.13  # how far a backward edge runs beside its forward edge


def _boundary(name, toward):
    """Where the straight line from a node's centre towards the point ``toward`` leaves the node."""
    x, y, width, _ = NODES[name]
    dx, dy = toward[0] - x, toward[1] - y
    t = min((width / 2 + 0.05) / abs(dx) if dx else float("inf"), (BOX_H / 2 + 0.05) / abs(dy) if dy else float("inf"))
    return x + t * dx, y + t * dy


def _edge(ax, src, dst, label, offset, backward):
    start, end = _boundary(src, NODES[dst][:2]), _boundary(dst, NODES[src][:2])
    if backward:  # shifted sideways, to the left of its direction of travel
        dx, dy = end[0] - start[0], end[1] - start[1]
        norm = (dx * dx + dy * dy) ** 0.5
        shift = (-dy / norm * SIDE, dx / norm * SIDE)
        start, end = (start[0] + shift[0], start[1] + shift[1]), (end[0] + shift[0], end[1] + shift[1])
    color = RED if backward else "black"
    ax.add_patch(FancyArrowPatch(start, end, arrowstyle="-|>", mutation_scale=11, color=color, lw=1.2,
                                 linestyle=(0, (4, 2.5)) if backward else "solid", shrinkA=0, shrinkB=0, zorder=1))
    if label:
        mx, my = (start[0] + end[0]) / 2 + offset[0], (start[1] + end[1]) / 2 + offset[1]
        text = "eq. " + label.replace(", ", ",\n")  # two equations: one a line
        ax.text(mx, my, text, ha="center", va="center", fontsize=LABEL_PT, color=color, zorder=4,
                bbox=dict(boxstyle="round,pad=0.12", facecolor="white", edgecolor="none", alpha=0.85))


def draw(out=OUT):
    plt.rcParams.update({"svg.fonttype": "none", "svg.hashsalt": "minivae-elbo-graph", "font.family": "DejaVu Sans"})
    fig, ax = plt.subplots(figsize=(12.6, 6.0))
    ax.set(xlim=(-0.1, 20.1), ylim=(-0.1, 9.2), aspect="equal")
    ax.axis("off")
    for name, (x, y, width, text) in NODES.items():
        if name == "noise":
            ax.add_patch(Ellipse((x, y), width, BOX_H * 1.15, facecolor="#fdf2e9", edgecolor="black", lw=1.1))
        else:
            ax.add_patch(FancyBboxPatch((x - width / 2, y - BOX_H / 2), width, BOX_H, facecolor="#eaf2f8",
                                        boxstyle="round,pad=0,rounding_size=0.1", edgecolor="black", lw=1.1))
        ax.text(x, y, text, ha="center", va="center", fontsize=NODE_TWO_LINES_PT if "\n" in text else NODE_PT, zorder=3)
    for edges, backward in ((FORWARD, False), (BACKWARD, True)):
        for src, dst, label, offset in edges:
            _edge(ax, src, dst, label, offset, backward)
    # the data enter the likelihood too: a line over the graph, into the top of the likelihood's box
    top = 8.75
    ax.plot([0.9, 0.9, 18.5], [4.0 + BOX_H / 2 + 0.05, top, top], color="black", lw=1.0, zorder=0)
    ax.add_patch(FancyArrowPatch((18.5, top), (18.5, 5.7 + BOX_H / 2 + 0.05), arrowstyle="-|>", mutation_scale=11,
                                 color="black", lw=1.0, shrinkA=0, shrinkB=0, zorder=0))
    ax.text(9.7, top + 0.25, "$x$ again: the likelihood scores it", fontsize=NOTE_PT, ha="center")
    ax.text(0.0, 1.05, "forward, black: the equation computed", fontsize=NOTE_PT, ha="left")
    ax.text(0.0, 0.6, "backward, red dashed: the equation of the gradient", fontsize=NOTE_PT, ha="left", color=RED)
    ax.text(0.0, 0.15, "square: deterministic node; round: random node, an input without gradient", fontsize=NOTE_PT,
            ha="left")
    ax.text(4.2, 3.5, "$\\partial L/\\partial\\phi$:\neq. mlp-bwd", fontsize=NOTE_PT, ha="center", va="top",
            color=RED)
    ax.text(14.9, 4.85, "$\\partial L/\\partial\\theta$:\neq. mlp-bwd", fontsize=NOTE_PT, ha="center", va="top",
            color=RED)
    fig.savefig(out, format=Path(out).suffix[1:] or "svg", metadata={"Date": None} if str(out).endswith(".svg")
                else None, bbox_inches="tight")
    plt.close(fig)
    return Path(out)


if __name__ == "__main__":
    print(draw(sys.argv[1] if len(sys.argv) > 1 else OUT))
