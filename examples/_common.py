"""Helpers shared by the examples: the command line, Adam over a dict of arrays, softmax
cross-entropy, and the optional figure."""

import argparse

import numpy as np


def parse_args(argv, doc, steps, batch, hidden=32):
    """The options every example takes (training steps, batch, hidden units, seed, threads,
    figure).  ``doc`` is the example's docstring: its title line describes the script."""
    title = next((line.strip() for line in (doc or "").splitlines() if line.strip()), None)
    ap = argparse.ArgumentParser(description=title)
    ap.add_argument("--steps", type=int, default=steps)
    ap.add_argument("--batch", type=int, default=batch)
    ap.add_argument("--hidden", type=int, default=hidden)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--plot", nargs="?", const="", default=None, metavar="PNG",
                    help="draw the figure (needs matplotlib); with a path, save it there")
    return ap.parse_args(argv)


def figure(args, *subplots, **kw):
    """A matplotlib figure when ``--plot`` asked for one and matplotlib is installed, else
    None (the examples run without matplotlib; the figure is optional)."""
    if args.plot is None:
        return None, None
    try:
        import matplotlib.pyplot as plt
    except ImportError:
        print("skipping the figure: matplotlib is not installed (pip install matplotlib)")
        return None, None
    fig, axes = plt.subplots(*subplots, **kw)
    return fig, axes


def finish(args, fig):
    """Save the figure to the path of ``--plot PNG`` (with ``--plot`` alone it stays open:
    the documentation's gallery shows it)."""
    if fig is None:
        return
    fig.tight_layout()
    if args.plot:
        fig.savefig(args.plot, dpi=100)
        import matplotlib.pyplot as plt

        plt.close(fig)
        print(f"figure: {args.plot}")


class Adam:
    """Adam (Kingma & Ba) updating a dict of parameter arrays in place."""

    def __init__(self, params, lr=0.01, betas=(0.9, 0.999), eps=1e-8):
        self.lr, self.b1, self.b2, self.eps, self.t = lr, betas[0], betas[1], eps, 0
        self.m = {k: np.zeros_like(v) for k, v in params.items()}
        self.v = {k: np.zeros_like(v) for k, v in params.items()}

    def step(self, params, grads):
        self.t += 1
        for k, p in params.items():
            g = grads[k]
            self.m[k] = self.b1 * self.m[k] + (1 - self.b1) * g
            self.v[k] = self.b2 * self.v[k] + (1 - self.b2) * g * g
            mh = self.m[k] / (1 - self.b1 ** self.t)
            vh = self.v[k] / (1 - self.b2 ** self.t)
            p -= (self.lr * mh / (np.sqrt(vh) + self.eps)).astype(p.dtype)


def softmax_xent(logits, labels):
    """Mean cross-entropy and its gradient w.r.t. the logits."""
    z = logits - logits.max(axis=1, keepdims=True)
    p = np.exp(z)
    p /= p.sum(axis=1, keepdims=True)
    n = len(labels)
    loss = -np.log(p[np.arange(n), labels] + 1e-12).mean()
    p[np.arange(n), labels] -= 1
    return loss, p / n
