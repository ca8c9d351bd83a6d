"""matplotlib backend for airlock sandboxes (MPLBACKEND=module://airlock_plot).

Renders with Agg; plt.show() saves every open figure as a PNG under /work/out/, which airlock
returns to the caller as an image, then closes them. There is no display in the sandbox.
"""
import os

from matplotlib.backend_bases import FigureManagerBase as FigureManager  # noqa: F401
from matplotlib.backends.backend_agg import FigureCanvasAgg as FigureCanvas  # noqa: F401

OUT_DIR = "/work/out"
_saved = 0


def show(*args, **kwargs):
    global _saved
    import matplotlib.pyplot as plt

    os.makedirs(OUT_DIR, exist_ok=True)
    for num in plt.get_fignums():
        _saved += 1
        plt.figure(num).savefig(os.path.join(OUT_DIR, "figure-%d.png" % _saved))
    plt.close("all")
