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
    """Plain stochastic gradient descent: ``p -= lr * g``, in place.

    Parameters
    ----------
    params : dict of str to ndarray
        The parameters (for a constructor like :class:`Adam`'s; SGD keeps no state
        per parameter).
    lr : float, default 1.0
        Learning rate, > 0.

    Raises
    ------
    ValueError
        ``lr`` is not positive.

    Examples
    --------
    >>> from fastgates.lm import SGD
    >>> params, grads = {"w": np.ones(3)}, {"w": np.full(3, 0.5)}
    >>> SGD(params, lr=0.1).step(params, grads)
    >>> params["w"]
    array([0.95, 0.95, 0.95])
    """

    name = "sgd"

    def __init__(self, params: dict, lr: float = 1.0):
        if not lr > 0:
            raise ValueError(f"lr must be positive, got {lr!r}")
        self.lr = float(lr)
        self.t = 0

    def step(self, params: dict, grads: dict) -> None:
        """Update every array of ``params`` in place from the gradient of the same name.

        Parameters
        ----------
        params, grads : dict of str to ndarray
            The parameters and their gradients (same names, shapes and dtypes).
        """
        for name, p in params.items():
            p -= p.dtype.type(self.lr) * grads[name]
        self.t += 1

    def config(self) -> dict:
        """The settings and step count, as JSON for a checkpoint."""
        return {"name": self.name, "lr": self.lr, "t": self.t}

    def state_dict(self) -> dict:
        """The arrays of the state, by name: none for SGD."""
        return {}

    def load_state(self, config: dict, arrays: dict) -> None:
        """Restore what :meth:`config` and :meth:`state_dict` returned.

        Parameters
        ----------
        config : dict
            The output of :meth:`config`.
        arrays : dict of str to ndarray
            The output of :meth:`state_dict`.
        """
        self.lr, self.t = float(config["lr"]), int(config["t"])


class Adam:
    """Adam (Kingma and Ba, 2015) with bias correction, in place.

    Keeps the first and second moments of every parameter (arrays of its shape and
    dtype), which checkpoints save and restore.

    Parameters
    ----------
    params : dict of str to ndarray
        The parameters the moments are shaped after.
    lr : float, default 2e-3
        Learning rate, > 0.
    betas : tuple of float, default (0.9, 0.999)
        Decay rates of the first and second moments.
    eps : float, default 1e-8
        Added to the square root of the second moment.

    Raises
    ------
    ValueError
        ``lr`` is not positive.
    """

    name = "adam"

    def __init__(self, params: dict, lr: float = 2e-3, betas=(0.9, 0.999), eps: float = 1e-8):
        if not lr > 0:
            raise ValueError(f"lr must be positive, got {lr!r}")
        self.lr, self.beta1, self.beta2, self.eps = float(lr), float(betas[0]), float(betas[1]), float(eps)
        self.t = 0
        self.m = {k: np.zeros_like(p) for k, p in params.items()}
        self.v = {k: np.zeros_like(p) for k, p in params.items()}

    def step(self, params: dict, grads: dict) -> None:
        """Update every array of ``params`` in place from the gradient of the same name.

        Parameters
        ----------
        params, grads : dict of str to ndarray
            The parameters and their gradients (same names, shapes and dtypes).
        """
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
        """The settings and step count, as JSON for a checkpoint."""
        return {"name": self.name, "lr": self.lr, "betas": [self.beta1, self.beta2],
                "eps": self.eps, "t": self.t}

    def state_dict(self) -> dict:
        """The moments by name: ``m/<param>`` and ``v/<param>`` (live arrays)."""
        out = {f"m/{k}": a for k, a in self.m.items()}
        out.update({f"v/{k}": a for k, a in self.v.items()})
        return out

    def load_state(self, config: dict, arrays: dict) -> None:
        """Restore what :meth:`config` and :meth:`state_dict` returned.

        Parameters
        ----------
        config : dict
            The output of :meth:`config`.
        arrays : dict of str to ndarray
            The output of :meth:`state_dict`; copied into the existing moments.
        """
        self.lr, self.eps, self.t = float(config["lr"]), float(config["eps"]), int(config["t"])
        self.beta1, self.beta2 = (float(b) for b in config["betas"])
        for k in self.m:
            self.m[k][...] = arrays[f"m/{k}"]
            self.v[k][...] = arrays[f"v/{k}"]


def make_optimizer(name: str, params: dict, lr: float | None = None):
    """The optimizer called ``name`` over ``params``.

    Parameters
    ----------
    name : {"sgd", "adam"}
        :class:`SGD` or :class:`Adam`.
    params : dict of str to ndarray
        The parameters.
    lr : float or None, default None
        Learning rate; None takes the optimizer's default (SGD 1, Adam 2e-3).

    Returns
    -------
    SGD or Adam

    Raises
    ------
    ValueError
        An unknown ``name`` or a non-positive ``lr``.
    """
    if name not in OPTIMIZERS:
        raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {name!r}")
    lr = DEFAULT_LR[name] if lr is None else lr
    return SGD(params, lr) if name == "sgd" else Adam(params, lr)
