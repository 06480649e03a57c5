"""Keep every page inside ``app.py`` (the router).

Because the pages live in ``pages/``, Streamlit runs its first request in the legacy
"pages directory" mode until some session has called ``st.navigation``: a fresh server asked
for ``/compare`` would run ``pages/compare.py`` on its own (no sidebar, no query string). Each
page therefore starts with :func:`ensure`, which hands such a run over to ``app.py``; from then
on ``st.navigation`` is in charge for every session.
"""

from __future__ import annotations

import runpy
from pathlib import Path

import streamlit as st

APP = Path(__file__).resolve().parents[2] / "app.py"


def ensure() -> None:
    if st.session_state.get("_in_router"):
        return
    runpy.run_path(str(APP), run_name="__main__")
    st.stop()
