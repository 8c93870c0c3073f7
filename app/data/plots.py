"""Matplotlib figures for data_prep: the label distribution of each split."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # no screen needed; figures go to W&B as images
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


# The figure widens with the classes up to this many inches (500 classes made a 400-inch, 40,000-pixel
# image), and names at most LABELLED_CLASSES of them (every n-th beyond: more do not fit).
MAX_WIDTH = 24
LABELLED_CLASSES = 60


def label_distribution(class_counts: dict[str, list[int]], class_names: list[str]):
    """Grouped bars: one group per class, one bar per split."""
    fig, ax = plt.subplots(figsize=(min(MAX_WIDTH, max(6, len(class_names) * 0.8)), 4))
    x = np.arange(len(class_names))
    width = 0.8 / len(class_counts)
    for i, (split, counts) in enumerate(class_counts.items()):
        ax.bar(x + i * width, counts, width, label=f"{split} ({sum(counts)})")
    step = -(-len(class_names) // LABELLED_CLASSES)  # 1 up to LABELLED_CLASSES
    ax.set_xticks((x + width * (len(class_counts) - 1) / 2)[::step])
    # parse_math=False: a class folder named `a$b$` is shown as written, not parsed as mathtext (or refused)
    ax.set_xticklabels(class_names[::step], rotation=45 if max(map(len, class_names)) > 3 else 0, ha="right",
                       parse_math=False)
    ax.set_ylabel("images")
    ax.set_title("Label distribution per split")
    ax.legend()
    fig.tight_layout()
    return fig
