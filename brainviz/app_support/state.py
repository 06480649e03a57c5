"""Session state, the shared sidebar and the query string of the app.

Shared choices (dataset, participants, models A/B) live in ``st.session_state`` under the keys
of :data:`SHARED`, are drawn in the sidebar on every page (``sidebar()``, called by
``app.py``) and mirrored in the URL (``?ds=...&p=...&a=...&b=...``) together with the
page-specific choices registered through :func:`widget_value` so a view can be shared.

Streamlit forgets the state of a widget that is not drawn on a run (a page switch), so every
page widget keeps a copy of its value under ``_keep:<key>`` and is restored from it.
"""

from __future__ import annotations

import time
from typing import Any, Callable, Sequence

import streamlit as st

# session key -> query-string name
SHARED = {"dataset": "ds", "participants": "p", "model_a": "a", "model_b": "b"}
LIST_KEYS = {"participants"}
_QP_REGISTRY = "_qp_registry"  # page keys registered this run: {session key: (qp name, kind)}
_INIT = "_qp_initialised"
_WRITTEN = "_qp_written"  # the query string this session last wrote
_FRESH = "_qp_fresh"  # values a link put in the URL since, not yet applied by widget_value
_DEFERRED = "_draw_later"  # (draw, container) pairs drawn at the end of the run (draw_later)
BADGE_CSS = (
    "display:inline-block;background:#d9480f;color:white;padding:2px 10px;border-radius:4px;"
    "font-weight:700;font-size:0.85rem;letter-spacing:0.04em"
)


# --------------------------------------------------------------------------------------
# query string
# --------------------------------------------------------------------------------------


def _qp_get(name: str, as_list: bool = False):
    qp = st.query_params
    if name not in qp:
        return None
    if as_list:
        vals = qp.get_all(name)
        out: list[str] = []
        for v in vals:
            out += [x for x in str(v).split(",") if x]
        return out
    return qp.get(name)


def init_from_query() -> None:
    """On a session's first run, copy shared choices from the URL into session state.

    On later runs, values that a link inside the app put in the URL (``st.page_link(...,
    query_params=...)``, e.g. the job link that opens Models → Jobs) and that differ from what
    the app itself last wrote are applied too: shared choices at once, page choices by
    :func:`widget_value` when the page draws them.
    """
    if st.session_state.get(_INIT):
        written = st.session_state.get(_WRITTEN)
        if written is None:
            return
        now = {k: str(v) for k, v in st.query_params.to_dict().items()}
        fresh = {k: v for k, v in now.items() if written.get(k) != v}
        if not fresh:
            return
        st.session_state[_FRESH] = {**st.session_state.get(_FRESH, {}), **fresh}
        for key, name in SHARED.items():
            if name in fresh:
                val = _qp_get(name, as_list=key in LIST_KEYS)
                st.session_state[f"_keep:{key}"] = val
                st.session_state.pop(key, None)
        return
    for key, name in SHARED.items():
        val = _qp_get(name, as_list=key in LIST_KEYS)
        if val is not None:
            st.session_state[f"_keep:{key}"] = val
    # page keys are read lazily by widget_value (their names are only known there)
    st.session_state["_qp_initial"] = dict(st.query_params.to_dict())
    st.session_state[_INIT] = True
    st.session_state[_QP_REGISTRY] = {}


def begin_run() -> None:
    st.session_state[_QP_REGISTRY] = {}
    st.session_state[_DEFERRED] = []
    st.session_state["_run_started"] = time.perf_counter()
    st.session_state["_run_started_epoch"] = time.time()


def draw_later(draw: Callable[[], Any], where: Any) -> None:
    """Run ``draw()`` (inside the container ``where``) at the end of this run, after everything
    else the page draws; ``app.py`` calls :func:`draw_deferred`, also when the page stops early.

    A new browser tab draws a run's elements in the order their messages arrive, and drawing
    widgets costs it far more than sending them: on the 2-core machine a new tab showed the
    Compare montage 1.15–1.24 s after navigation when it was sent after the page's ~30 widgets and
    metrics, 0.91–1.01 s when sent before them (medians of 8 alternating sessions). So a page can
    send its main figure first and its widgets afterwards, each in a container created where it
    belongs in the layout. Read a deferred widget's value from ``st.session_state`` (prepared by
    :func:`widget_value`), which holds it before the widget is drawn. Call :func:`draw_deferred`
    before long work (a computation with a progress bar), so that the widgets show meanwhile.
    Deferring everything, sidebar and title included, was slower (1.08–1.29 s): the browser then
    draws the montage in one go with all the rest.
    """
    st.session_state.setdefault(_DEFERRED, []).append((draw, where))


def draw_deferred() -> None:
    """Draw what :func:`draw_later` deferred in this run, in the order it was deferred."""
    while st.session_state.get(_DEFERRED):
        draw, where = st.session_state[_DEFERRED].pop(0)
        with where:
            draw()


def write_query() -> None:
    """Mirror the shared choices and this page's registered widgets in the URL."""
    params: dict[str, Any] = {}
    for key, name in SHARED.items():
        v = st.session_state.get(key, st.session_state.get(f"_keep:{key}"))
        if v is None or v == [] or v == "":
            continue
        params[name] = ",".join(map(str, v)) if isinstance(v, (list, tuple)) else str(v)
    for key, (name, _kind) in st.session_state.get(_QP_REGISTRY, {}).items():
        v = st.session_state.get(key)
        if v is None or v == "":
            continue
        if isinstance(v, bool):
            params[name] = "1" if v else "0"
        elif isinstance(v, (list, tuple)):
            params[name] = ",".join(map(str, v))
        else:
            params[name] = str(v)
    current = st.query_params.to_dict()
    if {k: str(v) for k, v in current.items()} != params:
        st.query_params.from_dict(params)
    st.session_state[_WRITTEN] = dict(params)
    st.session_state.pop(_FRESH, None)


def _coerce(raw: Any, default: Any, options: Sequence[Any] | None):
    try:
        if isinstance(default, bool):
            val: Any = str(raw).lower() in ("1", "true", "yes")
        elif isinstance(default, int):
            val = int(raw)
        elif isinstance(default, float):
            val = float(raw)
            if val != val or val in (float("inf"), float("-inf")):
                return default
        elif isinstance(default, (list, tuple)):
            val = [x for x in str(raw).split(",") if x]
        else:
            val = str(raw)
    except (TypeError, ValueError):
        return default
    if options is not None:
        if isinstance(val, list):
            val = [v for v in val if v in options]
        elif val not in options:
            return default
    return val


def _clamp(value: Any, lo: Any, hi: Any) -> Any:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return value
    if lo is not None and value < lo:
        value = type(value)(lo)
    if hi is not None and value > hi:
        value = type(value)(hi)
    return value


def widget_value(key: str, default: Any, *, qp: str | None = None, options: Sequence[Any] | None = None,
                 min_value: float | None = None, max_value: float | None = None) -> None:
    """Prepare ``st.session_state[key]`` for a widget drawn with ``key=key``.

    Restores the value kept from an earlier run (or the URL's ``qp`` on a first visit), drops it
    when it is no longer among ``options``, clamps numbers into ``[min_value, max_value]`` (pass
    the widget's bounds: a link such as ``?w0=99999`` then lands on the bound instead of
    failing), and registers ``qp`` for :func:`write_query`.
    Call it right before drawing the widget, and do not pass ``value=``/``index=`` to it.
    """
    keep = f"_keep:{key}"
    fresh = st.session_state.get(_FRESH) or {}
    if qp is not None and qp in fresh:  # a link inside the app asked for this value
        st.session_state[key] = _coerce(fresh.pop(qp), default, options)
    elif key not in st.session_state:
        if keep in st.session_state:
            st.session_state[key] = st.session_state[keep]
        elif qp is not None and qp in st.session_state.get("_qp_initial", {}):
            st.session_state[key] = _coerce(st.session_state["_qp_initial"][qp], default, options)
        else:
            st.session_state[key] = default
    if min_value is not None or max_value is not None:
        cur = st.session_state[key]
        if isinstance(cur, float) and cur != cur:  # NaN
            cur = default
        fixed = _clamp(cur, min_value, max_value)
        if fixed is not st.session_state[key] and fixed != st.session_state[key]:
            st.session_state[key] = fixed
    if options is not None:
        cur = st.session_state[key]
        if isinstance(cur, list):
            fixed = [v for v in cur if v in options]
            if fixed != cur:
                st.session_state[key] = fixed
        elif cur not in options:
            st.session_state[key] = default if default in options else (options[0] if options else None)
    if qp is not None:
        st.session_state.setdefault(_QP_REGISTRY, {})[key] = (qp, type(default).__name__)


def run_flag(flag: str, qp: str = "run") -> bool:
    """Register the "this view was computed" flag of a page (``run=1`` in the URL) and return it.

    Call it before the page's compute gate. With :func:`auto_compute` and
    :func:`mark_computed`, a shared link reopens the computed view without a button press
    (instantly when the computation is cached on disk)::

        state.run_flag("att_done")
        if st.button("Compute") or state.auto_compute("att_done", st.session_state.get("attention"), key):
            ...  # compute, store {"key": key, ...} in st.session_state["attention"]
            state.mark_computed("att_done")
    """
    widget_value(flag, False, qp=qp)
    return bool(st.session_state.get(flag))


def auto_compute(flag: str, stored: dict[str, Any] | None, key: Any) -> bool:
    """Whether to (re)compute without a button press: the view was computed before (in this
    session, or by whoever shared the link: ``flag`` is set) and the stored result ``stored``
    (a dict with ``"key"``) is missing or for other settings than ``key``."""
    return bool(stored or st.session_state.get(flag)) and (stored or {}).get("key") != key


def mark_computed(flag: str) -> None:
    """Set the flag of :func:`run_flag` (the URL then says ``run=1``)."""
    st.session_state[flag] = True


def keep(*keys: str) -> None:
    """Copy widget values to their ``_keep:`` slots (called at the end of every run)."""
    for key in keys:
        if key in st.session_state:
            st.session_state[f"_keep:{key}"] = st.session_state[key]


def keep_all() -> None:
    keys = list(SHARED) + list(st.session_state.get(_QP_REGISTRY, {})) + list(st.session_state.get("_kept_keys", []))
    keep(*keys)


def remember(*keys: str) -> None:
    """Also keep these widget keys across page switches (without putting them in the URL)."""
    kept = set(st.session_state.get("_kept_keys", []))
    kept.update(keys)
    st.session_state["_kept_keys"] = sorted(kept)


# --------------------------------------------------------------------------------------
# badges and small UI helpers
# --------------------------------------------------------------------------------------


def simulated_badge(simulated: bool | None, where: Callable | None = None) -> None:
    """Draw the orange SIMULATED badge (when ``simulated``)."""
    if simulated:
        (where or st.markdown)(
            f'<span style="{BADGE_CSS}" data-testid="bv-simulated-badge">SIMULATED DATA</span>',
            unsafe_allow_html=True,
        )


def page_title(title: str, simulated: bool | None = None, caption: str | None = None) -> None:
    cols = st.columns([0.78, 0.22])
    cols[0].title(title)
    with cols[1]:
        st.write("")
        simulated_badge(simulated)
    if caption:
        st.caption(caption)


def inline_image(data: bytes, caption: str = "", *, css_class: str = "bv-montage") -> None:
    """Show PNG or JPEG bytes inline (a ``data:`` URI in a markdown element) instead of ``st.image``.

    ``st.image`` makes a fresh browser tab load the image component's script chunk and, for bytes,
    fetch the file from the media endpoint after the run's messages arrive; measured on the 2-core
    machine the image appeared 0.4–0.7 s after its element. The markdown component is loaded with
    the page, so the image is drawn with its message. The browser's markdown parser reads the
    whole ``data:`` URI, about 0.6 ms per kB: send the JPEG preview
    (:func:`brainviz.viz.montage.montage_jpeg`), not the PNG.
    """
    import base64

    mime = "image/jpeg" if data[:2] == b"\xff\xd8" else "image/png"
    uri = f"data:{mime};base64," + base64.b64encode(data).decode("ascii")
    st.markdown(f'<img class="{css_class}" src="{uri}" alt="{css_class}" '
                'style="max-width:100%;height:auto;display:block">', unsafe_allow_html=True)
    if caption:
        st.caption(caption)


def current(key: str, default: Any = None) -> Any:
    """A shared choice (from the sidebar widget or its kept copy)."""
    if key in st.session_state:
        return st.session_state[key]
    return st.session_state.get(f"_keep:{key}", default)


def run_marker() -> None:
    """An invisible element drawn last in every run: browser tests and the benchmark wait for
    ``.bv-run-done[data-run=N]`` to know that run N of the session is fully drawn."""
    n = st.session_state.get("_run_count", 0) + 1
    st.session_state["_run_count"] = n
    started = st.session_state.get("_run_started")
    ms = round((time.perf_counter() - started) * 1000) if started is not None else -1
    t0 = round(st.session_state.get("_run_started_epoch", 0) * 1000)
    st.markdown(f'<div class="bv-run-done" data-run="{n}" data-server-ms="{ms}" data-server-t0="{t0}" '
                'style="display:none"></div>',
                unsafe_allow_html=True)


class PageDone(Exception):
    """Raised by :func:`stop` to end a page early; ``app.py`` catches it and still finishes the
    run (query string, run marker), which ``st.stop()`` would skip."""


def stop() -> None:
    if st.session_state.get("_in_router"):
        raise PageDone
    st.stop()


NO_DATASET = "No dataset yet — open **Home** to build the simulated default."


def require_dataset(summary: dict[str, Any] | None) -> dict[str, Any]:
    """End the page with a pointer to Home when no dataset is chosen; else return the summary."""
    if summary is None:
        st.info(NO_DATASET)
        stop()
    return summary


def lazy_tabs(labels: Sequence[str], key: str, qp: str | None = None):
    """``st.tabs`` whose hidden tabs do not run (``on_change="rerun"``); the open tab is kept
    across page switches and, with ``qp``, in the URL. Use with :func:`tab_open`."""
    labels = list(labels)
    widget_value(key, labels[0], qp=qp, options=labels)
    return st.tabs(labels, key=key, on_change="rerun")


def tab_open(tab) -> bool:
    """Whether a tab of :func:`lazy_tabs` should draw its content (True when unknown)."""
    is_open = getattr(tab, "open", None)
    return True if is_open is None else bool(is_open)
