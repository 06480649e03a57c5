"""Attention: [CLS]→[CLS] and [CLS]→[SEP] attention per layer for a base and a tuned model
(mean ± SE, Fig. 4 of Schwartz et al. 2019), the per layer × head change, and the token-level
attention of one example window (heat maps and bertviz head views, base and tuned side by side).

Layers and heads are 1-based (L1–L6, H1–H12). A link with ``run=1`` reopens the computed view
(read-outs come from the on-disk cache, ``data_cache/attention/``)."""

from brainviz.app_support import router

router.ensure()

import numpy as np
import streamlit as st

from brainviz.app_support import compute, resources, sidebar, state
from brainviz.viz import attention as vatt

ctx = sidebar.context()
summ = ctx["summary"]
sim = bool(summ and summ.get("simulated"))
state.page_title("Attention", simulated=sim)
state.require_dataset(summ)

options = resources.encoder_models()
labels = list(options)
variants = {r["name"]: str(r.get("variant") or "") for r in resources.checkpoints()}
candidates = [n for n in labels if n != "pretrained"]


def _tuned_rank(name: str) -> tuple:
    v = variants.get(name, "")
    return (0 if v == "fine-tuned" else 1 if name == ctx.get("model_a") else 2 if "vanilla" not in v + name else 3,
            candidates.index(name))


default_tuned = min(candidates, key=_tuned_rank) if candidates else None
c = st.columns(4)
state.widget_value("att_base", "pretrained", qp="base", options=labels)
base = c[0].selectbox("Base model", labels, key="att_base", help="Usually the pretrained encoder")
if default_tuned is not None:
    state.widget_value("att_tuned", default_tuned, qp="tuned", options=labels)
    tuned = c[1].selectbox("Tuned model", labels, key="att_tuned",
                           help="A brain-tuned checkpoint (default: a fine-tuned one)")
else:
    tuned = None
    c[1].caption("**Tuned model**: none yet — brain-tune a checkpoint on the Models page (or Compare's default "
                 "pair); until then only the base model is shown.")
if tuned is not None and tuned == base:
    st.warning(f"Base and tuned are the same model (`{base}`): there is no change to show. Choose a brain-tuned "
               "checkpoint as the tuned model.")
    tuned = None

# windows of one participant, among the sidebar's participants
pids = summ["participants"]
chosen = [p for p in ctx["participants"] if p in pids]
pid_opts = chosen or pids
state.widget_value("att_pid", pid_opts[0], qp="ap", options=pid_opts)
pid = c[2].selectbox("Windows of participant", pid_opts, key="att_pid",
                     help="Example windows (words of the 10.1 s before each TR) of one of the sidebar's participants")
if not chosen:
    st.caption("No participant chosen in the sidebar: all participants are offered.")
ds = resources.dataset(ctx["dataset_path"])
ex = resources.examples(ctx["dataset_path"], pid)
state.widget_value("att_n", min(16, len(ex.windows)), qp="nw", min_value=1, max_value=len(ex.windows))
n_win = c[3].number_input("Number of windows", min_value=1, max_value=len(ex.windows), key="att_n")
state.widget_value("att_start", 0, qp="w0", min_value=0, max_value=max(0, len(ex.windows) - 1))
start = st.slider("First window", 0, max(0, len(ex.windows) - 1), key="att_start")
windows, idx = compute.example_windows(ds, ex, int(start), int(n_win))

# the result views' choices are registered before the compute gate, so a shared link keeps them
se_opts = ["examples", "heads", "seeds"]
state.widget_value("att_se", "examples", qp="se", options=se_opts)
kind_opts = list(vatt.KIND_LABELS)
state.widget_value("att_kind", kind_opts[1], qp="kind", options=kind_opts)
state.widget_value("att_win", 0, qp="win", min_value=0, max_value=len(windows) - 1)
state.widget_value("att_layer", 6, qp="layer", min_value=1)
state.widget_value("att_head", 1, qp="head", min_value=1)
state.run_flag("att_done")


@st.cache_data(show_spinner=False, max_entries=16)
def _readouts(source: str, windows: tuple, stamp: float) -> tuple[np.ndarray, bool]:
    pair = None if stamp else resources.encoder(source)
    return compute.cached_attention_readouts(source, [list(w) for w in windows], encoder_pair=pair)


def readouts(source: str, windows: tuple) -> tuple[np.ndarray, bool]:
    """[CLS] read-outs (memory cache keyed by the checkpoint's card time; then the disk cache)."""
    card = resources.Path(source) / "card.json"
    stamp = card.stat().st_mtime if source != "pretrained" and card.is_file() else 0.0
    return _readouts(source, windows, stamp)


key = (options[base], options[tuned] if tuned else None, tuple(tuple(w) for w in windows))
if st.button("Compute attention", type="primary", key="att_run") or state.auto_compute(
        "att_done", st.session_state.get("attention"), key):
    with st.status("Reading [CLS] attention…", expanded=True) as status:
        bar = st.progress(0.0, text=f"base model {base}")
        att_base, cached_b = readouts(options[base], key[2])
        att_tuned, cached_t = None, True
        if tuned is not None:
            bar.progress(0.5, text=f"tuned model {tuned}")
            att_tuned, cached_t = readouts(options[tuned], key[2])
        bar.progress(1.0, text="done")
        st.session_state["attention"] = {"key": key, "base": att_base, "tuned": att_tuned, "labels": (base, tuned)}
        state.mark_computed("att_done")
        status.update(label="Attention ready" + (" (from the cache)" if cached_b and cached_t else ""),
                      state="complete", expanded=False)

res = st.session_state.get("attention")
if not res or res["key"] != key:
    st.info("Press **Compute attention** to read the [CLS] attention of "
            + ("both models" if tuned else "the base model") + " on these windows.")
    state.stop()

from brainviz.models.attention import attention_change, layer_summary  # noqa: E402

b_lab, t_lab = res["labels"]
att_b, att_t = res["base"], res["tuned"]
se_over = st.radio("Standard error across", se_opts, horizontal=True, key="att_se")
if se_over == "seeds" and (att_b.shape[0] < 2 or (att_t is not None and att_t.shape[0] < 2)):
    st.caption("One seed only for at least one model: SE across seeds is undefined (no error bar).")
summaries = {f"base: {b_lab}": layer_summary(att_b, se_over)}
if att_t is not None:
    summaries[f"tuned: {t_lab}"] = layer_summary(att_t, se_over)
st.plotly_chart(vatt.layer_attention(summaries, simulated=sim), key="att_layers")

if att_t is None:
    st.info("No tuned model: the change per layer × head needs a brain-tuned checkpoint different from the base.")
elif att_b.shape[2:] != att_t.shape[2:]:
    st.info("The two models have different layer/head counts: no per-head change.")
else:
    change = attention_change(att_b, att_t)
    if float(np.nanmax(np.abs(change))) < 1e-6:
        st.info(f"`{t_lab}` attends exactly like `{b_lab}` (largest change < 1e-6): its encoder is the base one "
                "(a heads-only / vanilla or demo checkpoint), so there is no change map to draw.")
    else:
        kind = st.radio("Change of", kind_opts, horizontal=True, key="att_kind")
        st.plotly_chart(vatt.head_change_heatmap(change, kind=kind_opts.index(kind), simulated=sim), key="att_heads")

st.subheader("Token-level attention of one window")
n_layers, n_heads = att_b.shape[2], att_b.shape[3]
state.widget_value("att_layer", n_layers, qp="layer", min_value=1, max_value=n_layers)
state.widget_value("att_head", 1, qp="head", min_value=1, max_value=n_heads)
c = st.columns(3)
w_i = c[0].selectbox("Window", list(range(len(windows))), format_func=lambda i: f"example {idx[i]}", key="att_win")
layer = int(c[1].number_input(f"Layer (L1–L{n_layers})", 1, n_layers, key="att_layer"))
head = int(c[2].number_input(f"Head (H1–H{n_heads})", 1, n_heads, key="att_head"))
st.caption(" ".join(windows[w_i]))


@st.cache_data(show_spinner=False, max_entries=8)
def window_attention(source: str, words: tuple) -> tuple[list[str], np.ndarray]:
    src = source
    if src != "pretrained" and (resources.Path(src) / "card.json").is_file():
        src = resources.checkpoint(src).encoder_source()
    tokens, att = compute.window_attention(resources.encoder(src), list(words))
    return tokens, att.astype(np.float32)


@st.cache_data(show_spinner=False, max_entries=16)
def head_view(source: str, words: tuple, layer: int, head: int, title: str) -> str:
    tokens, att = window_attention(source, words)
    return vatt.head_view_html(tokens, att, layer=layer, layers=[layer], heads=[head], title=title)


models = [("base", b_lab)] + ([("tuned", t_lab)] if t_lab else [])
views = {}
for role, lab in models:
    try:
        views[role] = window_attention(options[lab], tuple(windows[w_i]))
    except Exception as exc:
        st.error(f"Token attention unavailable for {role} model `{lab}`: {exc}")
if views:
    panels = {f"{role}: {dict(models)[role]}": (tok, att[layer - 1, head - 1]) for role, (tok, att) in views.items()}
    st.plotly_chart(vatt.token_attention_pair(panels, simulated=sim,
                                              title=f"{vatt.layer_label(layer - 1)} {vatt.head_label(head - 1)}: "
                                                    "attention of each query token (row) to each key token (column)"),
                    key="att_tokens")
    st.markdown(f"**Head view** (bertviz) of {vatt.layer_label(layer - 1)}: every head's attention as lines from "
                "query tokens (left) to key tokens (right); hover a token, click the coloured squares to pick heads "
                f"({vatt.head_label(head - 1)} selected first; double-click: only that head).")
    cols = st.columns(len(views))
    for col, (role, (tok, att)) in zip(cols, views.items()):
        with col:
            try:
                html = head_view(options[dict(models)[role]], tuple(windows[w_i]), layer - 1, head - 1,
                                 f"{role}: {dict(models)[role]}")
            except Exception as exc:  # bertviz missing or a different version
                st.info(f"Head view unavailable ({exc}).")
            else:
                st.iframe(html, height=int(90 + 22.5 * len(tok)))
