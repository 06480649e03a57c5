"""Data: participants, runs and TRs; the stimulus aligned to TRs; a vertex's time course; the
planted ground truth of simulated data."""

from brainviz.app_support import router

router.ensure()

import numpy as np
import pandas as pd
import streamlit as st

from brainviz import surface
from brainviz.app_support import resources, state, sidebar
from brainviz.viz import cortex, flatmap, timeseries

ctx = sidebar.context()
summ = ctx["summary"]
if summ is None:
    state.page_title("Data")
state.require_dataset(summ)
sim = bool(summ["simulated"])
path = ctx["dataset_path"]
state.page_title(f"Data — {summ['name']}", simulated=sim, caption=f"`{path}`")

c = st.columns(6)
c[0].metric("fMRI participants", summ["n_fmri_participants"])
c[1].metric("MEG participants", summ["n_meg_participants"])
c[2].metric("runs", summ["n_runs"])
c[3].metric("TR (s)", summ["tr"] if summ["tr"] is not None else "varies")
c[4].metric("units", summ["n_units"])
c[5].metric("words", summ["n_words"])

tab_names = ["Runs", "Stimulus ↔ TRs", "Vertex time course"] + (["Ground truth"] if summ.get("has_ground_truth") else [])
tabs = state.lazy_tabs(tab_names, key="data_tab", qp="tab")
ds = resources.dataset(path)
all_pids = summ["participants"]
chosen = [p for p in ctx["participants"] if p in all_pids]
pids = chosen or all_pids  # the sidebar's participants (all when none is chosen)
sel = pids
gt = resources.ground_truth(path) if summ.get("has_ground_truth") else None

with tabs[0]:
    if state.tab_open(tabs[0]):
        runs_df = pd.DataFrame(summ["runs_table"])
        if chosen and "participant" in runs_df:
            runs_df = runs_df[runs_df["participant"].isin(chosen)]
        st.dataframe(runs_df, hide_index=True, width="stretch")
        st.caption(f"participants chosen in the sidebar: {', '.join(chosen)}" if chosen else
                   "no participant chosen in the sidebar: all are listed")
        st.caption(f"stories: {', '.join(summ['stories'])}; space: {summ['space']}; "
                   f"MEG participants: {', '.join(summ['meg_participants']) or 'none'}")

with tabs[1]:
    if state.tab_open(tabs[1]):
        state.widget_value("data_pid", sel[0], qp="dp", options=pids)
        cc = st.columns(3)
        pid = cc[0].selectbox("Participant", pids, key="data_pid")
        ex = resources.examples(path, pid)
        runs = list(dict.fromkeys(ex.runs.tolist()))
        state.widget_value("data_run", runs[0], qp="dr", options=runs)
        run = cc[1].selectbox("Run", runs, key="data_run")
        words = ds.stimulus["word"].astype(str).to_numpy()
        idx = np.flatnonzero(ex.runs == run)
        table = pd.DataFrame({
            "example": idx,
            "TR (row)": ex.tr_index[idx],
            "time (s)": np.round(ex.times[idx], 2),
            "n words": [len(ex.windows[i]) for i in idx],
            "words feeding this example (onset in [t − 10.1 s, t))": [" ".join(words[ex.windows[i]]) for i in idx],
        })
        cc[2].metric("examples in run", len(idx))
        st.dataframe(table, hide_index=True, width="stretch", height=420)
        track = ds.audio.get(str(run)) if ds.audio else None
        if track is not None and len(idx):  # listening data with sound: hear what an example heard
            from brainviz.data.audio import SAMPLE_RATE
            from brainviz.data.preprocess import PreprocessConfig

            window = float(PreprocessConfig().window)  # the examples above use the default preprocessing
            state.widget_value("data_ex", int(idx[0]), qp="dx", options=[int(i) for i in idx])
            ac = st.columns([1, 3])
            example = ac[0].selectbox("Play the audio of example", [int(i) for i in idx], key="data_ex",
                                      help="the sound of the example's window [t − window, t)")
            t_end = float(ex.times[example])
            samples = track.window(t_end - window, t_end)
            with ac[1]:
                st.audio(samples, sample_rate=SAMPLE_RATE)
                st.caption(f"run {run}, {t_end - window:.1f}–{t_end:.1f} s of the run clock; "
                           f"source: {track.source or 'dataset audio'}"
                           + (f"; {track.note}" if track.note else "")
                           + (" — **simulated** (synthesized speech)" if sim else ""))
        with st.expander("Word timings of this run"):
            st.dataframe(ds.stimulus[ds.stimulus["run"].astype(str) == str(run)], hide_index=True, width="stretch")

with tabs[2]:
    if state.tab_open(tabs[2]):
        n_units = int(summ["n_units"] if isinstance(summ["n_units"], int) else summ["n_units"][0])
        default_v = 0
        if gt is not None and "planted_mask" in gt and np.any(gt["planted_mask"]):
            default_v = int(np.flatnonzero(gt["planted_mask"])[0])
        state.widget_value("data_vertex", default_v, qp="v", min_value=0, max_value=n_units - 1)
        cc = st.columns([1, 1, 2])
        state.widget_value("data_pid_v", sel[0], qp="dpv", options=pids)
        pid_v = cc[0].selectbox("Participant ", pids, key="data_pid_v")
        if surface.is_fsaverage5(n_units):
            with cc[2]:
                st.caption("Or pick a vertex on the flat map (box / lasso, the first selected vertex is used).")
            background = gt["planted_mask"].astype(float) if gt is not None else np.zeros(n_units)
            fig = flatmap.flat_map(background, center=0.0, vmax=1.0, colorscale="viridis",
                                   colorbar_title="planted" if gt is not None else "", simulated=sim, height=320,
                                   marker_size=2.5, selected=[st.session_state["data_vertex"]])
            event = st.plotly_chart(fig, on_select="rerun", selection_mode=("points", "box", "lasso"), key="data_flat")
            chosen = flatmap.selected_vertices(event)
            if chosen.size and int(chosen[0]) != st.session_state.get("_data_last_pick"):
                st.session_state["_data_last_pick"] = int(chosen[0])
                st.session_state["data_vertex"] = int(chosen[0])
        vertex = cc[1].number_input("Vertex / unit", min_value=0, max_value=n_units - 1, step=1, key="data_vertex")
        rec = ds.fmri_of(pid_v)
        ex_v = resources.examples(path, pid_v)
        kept = np.isin(np.arange(rec.data.shape[0]), ex_v.tr_index)
        fig = timeseries.vertex_timecourse(np.asarray(rec.data[:, int(vertex)]), rec.run_labels, rec.tr, kept=kept,
                                           preprocessed=ex_v.data[:, int(vertex)], preprocessed_rows=ex_v.tr_index,
                                           vertex=int(vertex), simulated=sim,
                                           title=f"{pid_v}, vertex {int(vertex)}")
        st.plotly_chart(fig, key="data_tc")

if gt is not None:
    with tabs[3]:
        if state.tab_open(tabs[3]):
            st.markdown("Planted ground truth of the simulation: the regions that carry signal and, for "
                        "listening data, the planted functional networks.")
            regions = pd.DataFrame([{k: v for k, v in r.items() if k != "drivers"} | {"drivers": ", ".join(r.get("drivers", {}))}
                                    for r in gt.get("regions", [])])
            maps = {"planted mask": gt["planted_mask"].astype(float)}
            for i, net in enumerate(gt.get("networks", []) or []):
                if "network_maps" in gt:
                    maps[f"network {i}: {net.get('name', i)}"] = np.asarray(gt["network_maps"][i], dtype=float)
            cc = st.columns(4)
            state.widget_value("gt_map", "planted mask", qp="gm", options=list(maps))
            which = cc[0].selectbox("Map", list(maps), key="gt_map")
            state.widget_value("gt_hemi", "left", qp="gh", options=list(cortex.HEMI_CHOICES))
            hemi = cc[1].selectbox("Hemisphere", cortex.HEMI_CHOICES, key="gt_hemi")
            state.widget_value("gt_view", "lateral", qp="gv", options=list(cortex.VIEWS))
            view = cc[2].selectbox("View", cortex.VIEWS, key="gt_view")
            state.widget_value("gt_mesh", cortex.MESHES[0], qp="gmesh", options=list(cortex.MESHES))
            mesh = cc[3].selectbox("Mesh", cortex.MESHES, key="gt_mesh")
            vals = maps[which]
            fig = cortex.cortical_map(vals, symmetric=False, vmin=0, vmax=float(max(vals.max(), 1e-9)),
                                      threshold=1e-9, colorscale="YlOrRd", mesh=mesh, hemi=hemi, view=view,
                                      outline=gt["region_labels"], title=which, simulated=True, colorbar_title=which)
            st.plotly_chart(fig, key="gt_fig")
            st.dataframe(regions, hide_index=True, width="stretch")
            st.caption(f"drivers: {', '.join(gt.get('driver_names', []))}")
