"""Shared set-up of the app tests (AppTest and headless-browser tests): the small simulated
datasets in a cache folder plus a store with the demo checkpoints, and the Chromium check."""

from __future__ import annotations

import contextlib
import os
import shutil
from pathlib import Path
from typing import Iterator, Mapping, Sequence

import pytest


def demo_app_folders(small_sim: dict, root: Path, participants: Sequence[str] = ("sub-01", "sub-02"),
                     seeds: Sequence[int] = (0, 1)) -> dict[str, str]:
    """``root/data_cache`` with the small simulated datasets (as ``simulated-small``) and
    ``root/models`` with demo-tuned / demo-vanilla; returns the environment that points there."""
    from brainviz.app_support.demo import make_demo_checkpoints

    cache, models = root / "data_cache", root / "models"
    target = cache / "datasets" / "simulated-small"
    target.mkdir(parents=True)
    for exp, path in small_sim.items():
        shutil.copytree(path, target / exp)
    make_demo_checkpoints(target / "reading", models, participants=list(participants), seeds=tuple(seeds))
    return {"BRAINVIZ_CACHE": str(cache), "BRAINVIZ_MODELS": str(models)}


@contextlib.contextmanager
def environment(env: Mapping[str, str]) -> Iterator[None]:
    """Set ``env`` in ``os.environ`` for the block, then restore the previous values."""
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def no_streamlit_exception(driver, where: str) -> None:
    """Fail when the page in ``driver`` shows a Streamlit exception."""
    from brainviz.app_support import browser as B

    exc = B.exceptions(driver)
    assert not exc, f"Streamlit exception on {where}: {exc[0][:2000]}"


def require_chromium():
    """The Chromium binary for Selenium (installed with apt-get when possible), else skip."""
    from brainviz.app_support import browser as B

    pytest.importorskip("selenium", reason="selenium is not installed (pip install selenium)")
    if not B.install_browser(log=lambda m: print(m, flush=True)):
        pytest.skip("no Chromium/chromedriver on PATH and they cannot be installed here "
                    "(needs root and apt-get: apt-get install chromium chromium-driver)")
    return B.find_browser()


def montages(app) -> list:
    """The static montages an AppTest run drew (``state.inline_image``: a markdown ``<img>``)."""
    return [m for m in app.markdown if 'class="bv-montage"' in m.value]
