"""Connecting to Ray (imported only when the ray backend is used)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from brainviz.errors import BrainvizError

RAY_REQUIREMENT = "ray==2.60.0"
#: Environment passed to the workers of a local Ray (tests and offline use rely on them).
PASS_ENV = ("BRAINVIZ_CACHE", "BRAINVIZ_MODELS", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "TOKENIZERS_PARALLELISM",
            "HF_HOME")


class BackendUnavailableError(BrainvizError, RuntimeError):
    """The ray backend was asked for but the ``ray`` package is not installed."""


def import_ray():
    """``import ray``, or a :class:`BackendUnavailableError` that says how to get it."""
    try:
        import ray
    except ImportError:
        raise BackendUnavailableError(
            f"the ray backend needs the 'ray' package: pip install {RAY_REQUIREMENT} "
            "(or run the sweep in this process with --backend local)"
        ) from None
    return ray


def package_root() -> Path:
    """The folder that holds the ``brainviz`` package."""
    import brainviz

    return Path(brainviz.__file__).resolve().parents[1]


def connect(address: str | None = None, num_cpus: int | None = None) -> bool:
    """Start a local Ray (``address`` None) or connect to a cluster; True when this call did it.

    A local Ray gets ``num_cpus`` CPUs (default: all), no dashboard, and workers that import
    brainviz from this checkout. On a cluster the ``brainviz`` package is shipped to the
    workers (Ray ``runtime_env`` ``py_modules``); its dependencies must be installed there.
    """
    ray = import_ray()
    if ray.is_initialized():
        return False
    if address is None:
        env = {k: os.environ[k] for k in PASS_ENV if k in os.environ}
        path = [str(package_root())] + ([os.environ["PYTHONPATH"]] if os.environ.get("PYTHONPATH") else [])
        env["PYTHONPATH"] = os.pathsep.join(path)
        ray.init(num_cpus=num_cpus or os.cpu_count() or 1, include_dashboard=False, log_to_driver=False,
                 runtime_env={"env_vars": env})
    else:
        runtime_env: dict[str, Any] = {"py_modules": [str(package_root() / "brainviz")],
                                       "env_vars": {k: os.environ[k] for k in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
                                                    if k in os.environ}}
        try:
            ray.init(address=address, log_to_driver=False, runtime_env=runtime_env)
        except (ConnectionError, RuntimeError, ValueError, TimeoutError) as exc:
            raise BackendUnavailableError(
                f"cannot connect to the Ray cluster at {address!r} ({type(exc).__name__}: {exc}); start it with "
                "'ray start --head' (then --address auto) or leave out --address for a local Ray"
            ) from None
    return True


def remote_options(num_cpus: float, num_gpus: float, memory_gb: float | None, max_retries: int, name: str) -> dict[str, Any]:
    """``.options(...)`` of one job's Ray task."""
    opts: dict[str, Any] = {"num_cpus": num_cpus, "num_gpus": num_gpus, "max_retries": max_retries,
                            "retry_exceptions": False, "name": name}
    if memory_gb is not None:
        opts["memory"] = int(memory_gb * 1024**3)
    return opts
