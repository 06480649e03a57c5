"""Validate the AN-BN coupling on the simulated listening experiment (known ground truth).

1. Network recovery: for ICA and VS-DBN (quick), trained on all participants' TRs (``concat``,
   the paper's choice) and on participant averages (``average``), the best spatial correlation
   of any BN map with each planted network map, and the correlation of that BN's time course
   with the planted time course.
2. Couplings to planted drivers: the AN time courses of each story are coupled (same
   permutation test, circular shifts, BH FDR) with the planted network time courses
   themselves, and with the recovered BNs; reported per planted network: best AN, r, q.
3. Null control: the story's words shuffled (timings kept) -> number of ANs significant at
   q < 0.05, to compare with the q x n expected by chance.
4. Couplings planted on purpose: a synthetic dataset whose first networks are driven by chosen
   ANs' time courses; are those AN-BN pairs found and significant after FDR?

Run:  python bench/coupling_validation.py [--preset default|small] [--sim-dir DIR]
      [--permutations 5000] [--model pretrained] [--methods ica,vsdbn] [--skip-concat] [--vsdbn-concat]
The simulation is built into ``data_cache/bench-coupling-sim-<preset>`` unless ``--sim-dir`` is given.
"""

from __future__ import annotations

import argparse
import functools
import json
import time
from pathlib import Path

import numpy as np

print = functools.partial(print, flush=True)  # noqa: A001 - progress visible when piped


def planted_truth(path: Path):
    gt_dir = path / "ground_truth"
    info = json.loads((gt_dir / "ground_truth.json").read_text())
    maps = np.load(gt_dir / "network_maps.npy")
    tcs = np.load(gt_dir / "network_timecourses.npy")
    names = [n["name"] + "/" + n["driver"] for n in info["networks"]]
    return maps, tcs, np.asarray(info["tr_runs"]), names


def story_truth(ds, story, tcs, tr_runs, trim=True):
    from brainviz.coupling.neurons import story_grid

    g = story_grid(ds, story, trim)
    parts = []
    for run, first, n in zip(g.runs, g.first_trs, g.n_trs_per_run):
        rows = np.flatnonzero(tr_runs == run)
        parts.append(tcs[rows[first:first + n]])
    return np.concatenate(parts)


def spatial_match(maps, truth):
    c = np.corrcoef(np.vstack([truth, maps]))[: len(truth), len(truth):]
    return c.argmax(1), c.max(1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="default", choices=("default", "small"))
    ap.add_argument("--sim-dir", default=None, help="folder holding listening/ (made by brainviz simulate)")
    ap.add_argument("--permutations", type=int, default=5000)
    ap.add_argument("--model", default="pretrained")
    ap.add_argument("--methods", default="ica,vsdbn")
    ap.add_argument("--n-networks", type=int, default=None, help="default: the quick preset's 32")
    ap.add_argument("--skip-concat", action="store_true", help="only participant-averaged training")
    ap.add_argument("--skip-planted-an", action="store_true", help="skip section 4 (couplings planted on purpose)")
    ap.add_argument("--only-planted-an", action="store_true", help="run section 4 only")
    ap.add_argument("--vsdbn-concat", action="store_true",
                    help="also VS-DBN on all participants' TRs (slow on CPU: ~10,000 samples x 20,484 vertices)")
    args = ap.parse_args()
    if args.only_planted_an:
        planted_an_check(args)
        return

    from brainviz import paths
    from brainviz.cache import Cache
    from brainviz.coupling import CouplingConfig, couple, run_coupling
    from brainviz.coupling.api import compute_networks, compute_neurons
    from brainviz.data import load_dataset
    from brainviz.data.simulate import SimulationConfig, simulate

    sim = Path(args.sim_dir) if args.sim_dir else paths.cache_dir() / f"bench-coupling-sim-{args.preset}"
    if not (sim / "listening" / "dataset.json").is_file():
        t = time.time()
        simulate(sim, SimulationConfig(preset=args.preset, seed=0))
        print(f"simulated {args.preset} preset into {sim} in {time.time() - t:.0f} s")
    ds = load_dataset(sim / "listening", check_values=False)
    maps_true, tcs_true, tr_runs, names = planted_truth(sim / "listening")
    print(f"dataset: {len(ds.participants)} participants, stories {ds.stories}, TR {ds.tr} s, "
          f"{len(names)} planted networks")
    cache = Cache()
    groups = ("average",) if args.skip_concat else ("concat", "average")
    methods = args.methods.split(",")

    # 1. network recovery -----------------------------------------------------------------
    print("\n1. Planted network recovery: best spatial r (BN index) | r of that BN's time course with the planted one (story 1)")
    header = f"{'method':<22}{'time':>7}  " + "".join(f"{n:>22}" for n in names)
    print(header)
    results = {}
    for method in methods:
        for group in groups:
            if method == "vsdbn" and group == "concat" and not args.vsdbn_concat:
                continue
            cfg = CouplingConfig(bn=method, group=group, n_networks=args.n_networks, permutations=args.permutations)
            t = time.time()
            bns = compute_networks(ds, cfg, cache=cache)
            dt = time.time() - t
            idx, sr = spatial_match(bns.maps, maps_true)
            s1 = ds.stories[0]
            truth_tc = story_truth(ds, s1, tcs_true, tr_runs)
            tc = bns.timecourses[s1]
            tr_ = [abs(np.corrcoef(tc[:, i], truth_tc[:, j])[0, 1]) for j, i in enumerate(idx)]
            cells = "".join(f"{f'{r:.2f} (#{i}) | {t_:.2f}':>22}" for r, i, t_ in zip(sr, idx, tr_))
            print(f"{method + ' ' + group:<22}{dt:>6.0f}s  {cells}")
            results[(method, group)] = (cfg, bns, idx, sr)

    # 2. couplings to planted drivers ----------------------------------------------------------
    print("\n2. Couplings of ANs to the planted network time courses (Eq. 2 with the planted "
          f"time courses as BNs; {args.permutations} circular-shift permutations, BH FDR over networks)")
    base = CouplingConfig(bn=methods[0], group="average", n_networks=args.n_networks, permutations=args.permutations)
    for story in ds.stories:
        ans = compute_neurons(ds, story, args.model, base, cache=cache)
        truth_tc = story_truth(ds, story, tcs_true, tr_runs)
        st = couple(ans["an_timecourses"], truth_tc, args.permutations, "circular", seed=0)
        print(f"  {story}: {ans['an_timecourses'].shape[1]} ANs x {truth_tc.shape[0]} TRs")
        for j, n in enumerate(names):
            print(f"    {n:<28} best AN {int(st.bn_best_an[j]):>5}  r = {st.bn_r[j]:.3f}  p = {st.bn_p[j]:.4f}  q = {st.bn_q[j]:.4f}"
                  f"  {'significant' if st.bn_q[j] < 0.05 else 'n.s.'}")
        print(f"    ANs whose best planted network is significant (q < 0.05, Eq. 1): {(st.an_q < 0.05).sum()} / {len(st.an_q)}")

    print("\n   ... and with the recovered BNs (run_coupling), per planted network: matched BN, its best AN (Eq. 2)")
    for (method, group), (cfg, bns, idx, sr) in results.items():
        for story in ds.stories:
            res = run_coupling(ds, story, args.model, cfg, cache=cache)
            bp = res.bn_pairs()
            pairs = res.pairs()
            n_sig = int(pairs["significant"].sum())
            cells = []
            for j, n in enumerate(names):
                row = bp.iloc[int(idx[j])]
                cells.append(f"{n.split('/')[0]}: BN#{int(idx[j])} r={row['r']:.2f} q={row['q']:.3f}")
            print(f"  {method} {group} {story}: significant ANs {n_sig}/{len(pairs)}; " + "; ".join(cells))

    # 3. null control ------------------------------------------------------------------------
    print("\n3. Null control: story words shuffled (timings kept), q < 0.05")
    print(f"{'method':<22}{'story':<14}{'significant ANs':>16}{'expected q x n':>16}{'BNs (Eq. 2)':>13}")
    for (method, group), (cfg, *_rest) in results.items():
        for story in ds.stories:
            res = run_coupling(ds, story, args.model, cfg.replace(shuffle_words=True, pos=False), cache=cache)
            pairs = res.pairs()
            bp = res.bn_pairs()
            print(f"{method + ' ' + group:<22}{story:<14}{int(pairs['significant'].sum()):>16}"
                  f"{0.05 * len(pairs):>16.0f}{int(bp['significant'].sum()):>8} / {len(bp)}")

    if not args.skip_planted_an:
        planted_an_check(args)


def planted_an_check(args) -> None:
    """4. End-to-end recovery of couplings planted on purpose: a synthetic listening dataset
    (packaged stories, steady speech) whose first networks are driven by chosen ANs."""
    from brainviz.coupling import CouplingConfig, run_coupling
    from brainviz.coupling._synthetic import synthetic_dataset
    from brainviz.coupling.neurons import compute_an_timecourses, story_grid
    from brainviz.models.encoder import load_encoder

    chosen = [(0, 3, 5), (2, 7, 11), (5, 1, 30)]  # (layer, head, dim)
    kw = dict(n_participants=8, n_units=3000, n_networks=6, words_per_story=None, noise=3.0, seed=3)
    base, _ = synthetic_dataset(**kw)
    model, tok = load_encoder(args.model)
    drivers = {}
    an_ids = []
    for story in base.stories:
        an = compute_an_timecourses(base, story, model, tok)
        sh = an.shape
        an_ids = [(la * sh.n_heads + h) * sh.head_dim + d for la, h, d in chosen]
        g = story_grid(base, story)
        full = np.zeros((base.fmri_of(base.participants[0]).runs[base.stories.index(story)].n_trs, len(chosen)))
        full[g.first_trs[0]:g.first_trs[0] + g.n_trs] = an.timecourses[:, an_ids]
        drivers[story] = full
    ds, truth = synthetic_dataset(drivers=drivers, **kw)
    print(f"\n4. Planted AN couplings: synthetic dataset ({kw['n_participants']} participants, {kw['n_units']} units, "
          f"noise s.d. {kw['noise']}), networks 0-2 driven by ANs {['L%dH%dD%d' % c for c in chosen]} = {an_ids}")
    for story in ds.stories:
        res = run_coupling(ds, story, args.model, CouplingConfig(bn="ica", n_networks=8, permutations=args.permutations,
                                                                pos=False), cache=False)
        idx, sr = spatial_match(res.maps, truth["maps"])
        pairs, bp = res.pairs(), res.bn_pairs()
        print(f"  {story}: significant ANs {int(pairs['significant'].sum())}/{len(pairs)}")
        for j, a in enumerate(an_ids):
            row = bp.iloc[int(idx[j])]
            arow = pairs.iloc[a]
            print(f"    planted network {j} (AN {a}): BN#{int(idx[j])} spatial r {sr[j]:.2f}; BN's best AN {int(row['an'])} "
                  f"r = {row['r']:.2f} q = {row['q']:.4f}; AN {a}'s best BN #{int(arow['bn'])} r = {arow['r']:.2f} "
                  f"q = {arow['q']:.4f} {'significant' if arow['q'] < 0.05 else 'n.s.'}")


if __name__ == "__main__":
    main()
