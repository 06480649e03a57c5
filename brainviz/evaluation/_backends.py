"""The one place where a compute backend is chosen for the 20-vs-20 kernel.

A backend is a function ``counts(pred, targ, true_idx, distr_idx) -> (counts, finite)``:

* ``pred``: float32 or float64, C-contiguous, shape ``(n_models, n_rows, n_units)``;
* ``targ``: same dtype, C-contiguous, shape ``(n_rows, n_units)``;
* ``true_idx``, ``distr_idx``: C-contiguous int64, shape ``(n_samples, k)``, in range;
* ``counts``: int64 ``(n_models, n_units)``, 2 per draw won, 1 per tie, 0 per draw lost;
* ``finite``: bool ``(n_units,)``, whether every value of the unit is finite.

Backends are imported lazily, the first time they are asked for.
"""

from __future__ import annotations

import functools
import importlib
import warnings
from typing import Callable

import numpy as np

CountsFn = Callable[[np.ndarray, np.ndarray, np.ndarray, np.ndarray], "tuple[np.ndarray, np.ndarray]"]

#: backend name -> module implementing ``counts``
BACKENDS: dict[str, str] = {
    "numba": "brainviz.evaluation._kernel_numba",
    "numpy": "brainviz.evaluation._kernel_numpy",
    "torch": "brainviz.evaluation._kernel_torch",
}
DEFAULT_BACKEND = "numba"


def check_backend(name: str) -> str:
    """Return ``name`` if it is a known backend, else raise :class:`ValueError`."""
    if name not in BACKENDS:
        raise ValueError(f"backend: unknown {name!r}; choose one of {sorted(BACKENDS)}")
    return name


@functools.lru_cache(maxsize=None)
def get_counts(name: str = DEFAULT_BACKEND) -> CountsFn:
    """The ``counts`` function of backend ``name``.

    ``"numba"`` falls back to ``"numpy"`` with a :class:`RuntimeWarning` (once) when numba
    cannot be imported. ``"torch"`` raises :class:`ImportError` when torch is missing.
    """
    check_backend(name)
    try:
        module = importlib.import_module(BACKENDS[name])
    except ImportError as exc:
        if name != "numba":
            raise ImportError(f"backend {name!r} needs a package that failed to import: {exc}") from exc
        warnings.warn(
            f"numba could not be imported ({exc}); the 20-vs-20 test falls back to the (much "
            "slower) numpy backend", RuntimeWarning, stacklevel=2,
        )
        module = importlib.import_module(BACKENDS["numpy"])
    return module.counts

