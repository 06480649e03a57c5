"""brainviz app: ``streamlit run app.py`` (binds to 127.0.0.1, see .streamlit/config.toml).

This file is the router: it draws the shared sidebar, runs the chosen page from ``pages/`` and
mirrors the choices in the URL. Pages arrange widgets and call ``brainviz``; see docs/app.md.
"""

import streamlit as st

# an emoji icon becomes an inline data: SVG favicon; a ":material/…:" icon would be fetched from the internet
st.set_page_config(page_title="brainviz", page_icon="🧠", layout="wide")

from brainviz.app_support import logs, resources, sidebar, state  # noqa: E402
from brainviz.errors import BrainvizError  # noqa: E402

PAGES = [
    st.Page("pages/home.py", title="Home", icon=":material/home:", url_path="home", default=True),
    st.Page("pages/data.py", title="Data", icon=":material/dataset:", url_path="data"),
    st.Page("pages/models.py", title="Models", icon=":material/model_training:", url_path="models"),
    st.Page("pages/compare.py", title="Compare", icon=":material/compare:", url_path="compare"),
    st.Page("pages/encoding.py", title="Encoding", icon=":material/stacked_line_chart:", url_path="encoding"),
    st.Page("pages/attention.py", title="Attention", icon=":material/visibility:", url_path="attention"),
    st.Page("pages/anbn.py", title="AN–BN", icon=":material/hub:", url_path="anbn"),
    st.Page("pages/speech.py", title="Speech", icon=":material/graphic_eq:", url_path="speech"),
]

logs.quiet()
state.init_from_query()
state.begin_run()
page = st.navigation(PAGES)
ctx = st.session_state["_ctx"] = sidebar.sidebar()
st.session_state["_in_router"] = True
try:
    if page.url_path == "compare" and ctx["summary"] is not None and not sidebar.distinct_pair(ctx):
        from brainviz.app_support.first_run import require_distinct_pair

        require_distinct_pair(ctx)  # explains (one model only / A = B) and offers the default pair
    else:
        page.run()
except state.PageDone:
    pass
except BrainvizError as exc:  # bad input (a broken dataset, checkpoint, link value ...): a message, not a trace
    st.error(f"{type(exc).__name__}: {exc}")
finally:
    st.session_state["_in_router"] = False
    state.draw_deferred()  # widgets a page sent after its main figure (state.draw_later)
    state.keep_all()
    state.write_query()
    state.run_marker()
    resources.warm_up()  # once per server, after its first run: imports and look-ups the pages need
