"""Keep the app's server log readable.

``streamlit run`` logs ``Thread '…': missing ScriptRunContext! This warning can be ignored
when running in bare mode.`` whenever Streamlit code runs outside a script thread. In this
app that happens when a download button's *deferred* data callable (``st.download_button(
..., data=lambda: ...)``: export files are built on click) is executed by the server: the
callable reaches ``st.cache_data`` / ``st.cache_resource`` functions, which look up the
(absent) script context. The export itself is fine, so :func:`quiet` drops exactly that
message (a logging filter on Streamlit's ``script_run_context`` logger; other warnings stay).

Model loads are silenced where they happen (:func:`brainviz.models.encoder.quiet_loading`).
"""

from __future__ import annotations

import logging

SCRIPT_CTX_LOGGER = "streamlit.runtime.scriptrunner_utils.script_run_context"
MESSAGE = "missing ScriptRunContext"


class _DropMissingContext(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        try:
            return MESSAGE not in record.getMessage()
        except Exception:  # a malformed record: let logging deal with it
            return True


def quiet() -> None:
    """Install the filter once per process (called by ``app.py`` on every run; idempotent)."""
    logger = logging.getLogger(SCRIPT_CTX_LOGGER)
    if not any(isinstance(f, _DropMissingContext) for f in logger.filters):
        logger.addFilter(_DropMissingContext())
