"""Optimizers that update a dict of parameter arrays in place.

Design: an optimizer holds its hyper-parameters and its state as plain arrays
(``state_dict()`` -> name -> array, plus a JSON-able ``config()``), so a
checkpoint stores them without pickle and a resumed run continues bit for bit.

- SGD:  p ← p − lr · g   (the textbook's recipe uses lr = 1 with clipping)
- Adam: m ← β1 m + (1−β1) g;  v ← β2 v + (1−β2) g²;
        p ← p − lr · m̂ / (√v̂ + ε)  with  m̂ = m/(1−β1ᵗ), v̂ = v/(1−β2ᵗ)   (Kingma & Ba)
"""

from __future__ import annotations

import numpy as np

OPTIMIZERS = ("sgd", "adam")

#: Learning rate used when none is given.
DEFAULT_LR = {"sgd": 1.0, "adam": 2e-3}


class SGD:
    """Plain stochastic gradient descent: ``p -= lr * g``."""

    name = "sgd"

    def __init__(self, params: dict, lr: float = 1.0):
        if not lr > 0:
            raise ValueError(f"lr must be positive, got {lr!r}")
        self.lr = float(lr)
        self.t = 0

    def step(self, params: dict, grads: dict) -> None:
        for name, p in params.items():
            p -= p.dtype.type(self.lr) * grads[name]
        self.t += 1

    def config(self) -> dict:
        return {"name": self.name, "lr": self.lr, "t": self.t}

    def state_dict(self) -> dict:
        return {}

    def load_state(self, config: dict, arrays: dict) -> None:
        self.lr, self.t = float(config["lr"]), int(config["t"])


class Adam:
    """Adam with bias correction (state: first and second moments per parameter)."""

    name = "adam"

    def __init__(self, params: dict, lr: float = 2e-3, betas=(0.9, 0.999), eps: float = 1e-8):
        if not lr > 0:
            raise ValueError(f"lr must be positive, got {lr!r}")
        self.lr, self.beta1, self.beta2, self.eps = float(lr), float(betas[0]), float(betas[1]), float(eps)
        self.t = 0
        self.m = {k: np.zeros_like(p) for k, p in params.items()}
        self.v = {k: np.zeros_like(p) for k, p in params.items()}

    def step(self, params: dict, grads: dict) -> None:
        self.t += 1
        c1 = 1.0 - self.beta1 ** self.t
        c2 = 1.0 - self.beta2 ** self.t
        for name, p in params.items():
            g, m, v = grads[name], self.m[name], self.v[name]
            f = p.dtype.type
            m *= f(self.beta1)
            m += f(1.0 - self.beta1) * g
            v *= f(self.beta2)
            v += f(1.0 - self.beta2) * (g * g)
            denom = np.sqrt(v / f(c2))
            denom += f(self.eps)
            p -= f(self.lr / c1) * m / denom

    def config(self) -> dict:
        return {"name": self.name, "lr": self.lr, "betas": [self.beta1, self.beta2],
                "eps": self.eps, "t": self.t}

    def state_dict(self) -> dict:
        out = {f"m/{k}": a for k, a in self.m.items()}
        out.update({f"v/{k}": a for k, a in self.v.items()})
        return out

    def load_state(self, config: dict, arrays: dict) -> None:
        self.lr, self.eps, self.t = float(config["lr"]), float(config["eps"]), int(config["t"])
        self.beta1, self.beta2 = (float(b) for b in config["betas"])
        for k in self.m:
            self.m[k][...] = arrays[f"m/{k}"]
            self.v[k][...] = arrays[f"v/{k}"]


def make_optimizer(name: str, params: dict, lr: float | None = None):
    """``SGD`` or ``Adam`` over ``params``; ``lr`` None takes :data:`DEFAULT_LR`."""
    if name not in OPTIMIZERS:
        raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {name!r}")
    lr = DEFAULT_LR[name] if lr is None else lr
    return SGD(params, lr) if name == "sgd" else Adam(params, lr)
