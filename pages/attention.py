"""Attention: [CLS]→[CLS] and [CLS]→[SEP] attention per layer for a base and a tuned model
(mean ± SE, Fig. 4 of Schwartz et al. 2019), the per layer × head change, and the token-level
attention of one example window."""

from brainviz.app_support import router

router.ensure()

import numpy as np
import streamlit as st

from brainviz.app_support import compute, resources, state, sidebar
from brainviz.viz import attention as vatt

ctx = sidebar.context()
summ = ctx["summary"]
sim = bool(summ and summ.get("simulated"))
state.page_title("Attention", simulated=sim)
state.require_dataset(summ)

options = resources.encoder_models()
labels = list(options)
c = st.columns(4)
state.widget_value("att_base", "pretrained", qp="base", options=labels)
base = c[0].selectbox("Base model", labels, key="att_base")
default_tuned = ctx["model_a"] if ctx["model_a"] in labels else labels[-1]
state.widget_value("att_tuned", default_tuned, qp="tuned", options=labels)
tuned = c[1].selectbox("Tuned model", labels, key="att_tuned")
pids = summ["participants"]
sel = [p for p in ctx["participants"] if p in pids] or pids[:1]
state.widget_value("att_pid", sel[0], qp="ap", options=pids)
pid = c[2].selectbox("Windows of participant", pids, key="att_pid",
                     help="Example windows (words of the 10.1 s before each TR) of this participant")
ds = resources.dataset(ctx["dataset_path"])
ex = resources.examples(ctx["dataset_path"], pid)
state.widget_value("att_n", min(16, len(ex.windows)), qp="nw", min_value=1, max_value=len(ex.windows))
n_win = c[3].number_input("Number of windows", min_value=1, max_value=len(ex.windows), key="att_n")
state.widget_value("att_start", 0, qp="w0", min_value=0, max_value=max(0, len(ex.windows) - 1))
start = st.slider("First window", 0, max(0, len(ex.windows) - 1), key="att_start")
windows, idx = compute.example_windows(ds, ex, int(start), int(n_win))


@st.cache_data(show_spinner=False, max_entries=16)
def readouts(source: str, windows: tuple) -> np.ndarray:
    pair = None if source != "pretrained" and (resources.Path(source) / "card.json").is_file() else resources.encoder(source)
    return compute.attention_readouts(source, [list(w) for w in windows], encoder_pair=pair)


key = (options[base], options[tuned], tuple(tuple(w) for w in windows))
if st.button("Compute attention", type="primary", key="att_run") or (
        st.session_state.get("attention", {}).get("key") != key and st.session_state.get("attention")):
    with st.status("Reading [CLS] attention…", expanded=True) as status:
        bar = st.progress(0.0, text=f"base model {base}")
        att_base = readouts(options[base], key[2])
        bar.progress(0.5, text=f"tuned model {tuned}")
        att_tuned = readouts(options[tuned], key[2])
        bar.progress(1.0, text="done")
        st.session_state["attention"] = {"key": key, "base": att_base, "tuned": att_tuned, "labels": (base, tuned)}
        status.update(label="Attention ready", state="complete", expanded=False)

res = st.session_state.get("attention")
if not res or res["key"] != key:
    st.info("Press **Compute attention** to read the [CLS] attention of both models on these windows.")
    state.stop()

from brainviz.models.attention import attention_change, layer_summary, token_attention  # noqa: E402

se_opts = ["examples", "heads", "seeds"]
state.widget_value("att_se", "examples", qp="se", options=se_opts)
se_over = st.radio("Standard error across", se_opts, horizontal=True, key="att_se")
if se_over == "seeds" and (res["base"].shape[0] < 2 or res["tuned"].shape[0] < 2):
    st.caption("One seed only for at least one model: SE across seeds is undefined (shown as 0).")
b_lab, t_lab = res["labels"]
summaries = {f"base: {b_lab}": layer_summary(res["base"], se_over), f"tuned: {t_lab}": layer_summary(res["tuned"], se_over)}
st.plotly_chart(vatt.layer_attention(summaries, simulated=sim), key="att_layers")

if res["base"].shape[2:] == res["tuned"].shape[2:]:
    kind = st.radio("Change of", ["[CLS] → [CLS]", "[CLS] → [SEP]"], index=1, horizontal=True, key="att_kind")
    change = attention_change(res["base"], res["tuned"])
    st.plotly_chart(vatt.head_change_heatmap(change, kind=0 if kind.endswith("[CLS]") else 1, simulated=sim),
                    key="att_heads")
else:
    st.info("The two models have different layer/head counts: no per-head change.")

st.subheader("Token-level attention of one window")
c = st.columns(4)
w_i = c[0].selectbox("Window", list(range(len(windows))), format_func=lambda i: f"example {idx[i]}", key="att_win")
n_layers, n_heads = res["base"].shape[2], res["base"].shape[3]
layer = c[1].number_input("Layer (1-based)", 1, n_layers, n_layers, key="att_layer")
head = c[2].number_input("Head", 0, n_heads - 1, 0, key="att_head")
which = c[3].radio("Model", ["base", "tuned"], horizontal=True, key="att_which")
src = options[base] if which == "base" else options[tuned]
st.caption(" ".join(windows[w_i]))
try:
    if src != "pretrained" and (resources.Path(src) / "card.json").is_file():
        src = resources.checkpoint(src).encoder_source()
    enc = resources.encoder(src)
    tokens, mat = token_attention(enc, windows[w_i], int(layer) - 1, int(head))
    st.plotly_chart(vatt.token_attention_heatmap(tokens, mat, simulated=sim,
                                                 title=f"{which} model, layer {int(layer)}, head {int(head)}"),
                    key="att_tokens")
except Exception as exc:
    st.error(f"Token attention unavailable for this model/layer/head: {exc}")
state.remember("att_kind", "att_win", "att_layer", "att_head", "att_which")
