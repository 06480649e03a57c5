"""Validate the AN-BN coupling on the simulated listening experiment (known ground truth).

With the default settings of :class:`brainviz.coupling.CouplingConfig` (spatial ICA on
participant averages, 32 BNs, cross-story validation with a phase-randomisation null):

1. Network recovery: for every planted network, the BN whose map matches it best, its spatial
   r, the oracle ceiling (maps regressed on the true time courses) and the ratio; the r of that
   BN's time course with the planted one.
2. Validated couplings: for each story as test story (pairs selected on the other story), each
   planted network's matched BN, its AN, r on the test story with a 95 % block-bootstrap
   interval, q (BH over BNs) and the outcome: coupled networks *found* / *missed*, controls
   *false coupling* / *none*. Other significant BNs are listed with their overlap with the
   planted language regions (which carry word-level signals ANs may carry too).
3. Shuffled words: the same analysis with every story's words shuffled (timings kept) for the
   ANs: how many BNs pass q (all are null; BH keeps P(any) <= q).
4. Oracle: the planted time courses themselves as BNs (what a perfect network recovery gives).
5. ``--planted-an``: a synthetic dataset whose networks are driven by chosen ANs.

Run:  python bench/coupling_validation.py [--preset default|small] [--sim-dir DIR] [--model pretrained]
      [--bn ica] [--group average] [--n-networks 32] [--planted-an]
The simulation is built into ``data_cache/bench-coupling-sim-<preset>`` (rebuilt when made by another
simulator version) unless ``--sim-dir`` is given.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

print = functools.partial(print, flush=True)  # noqa: A001 - progress visible when piped
RATE_R = 0.3  # |r| with the speech rate above which a BN counts as driven by it


def _load() -> str:
    try:
        return "load average " + " / ".join(f"{x:.1f}" for x in os.getloadavg())
    except OSError:  # pragma: no cover
        return "load average n/a"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="default", choices=("default", "small"))
    ap.add_argument("--sim-dir", default=None, help="folder holding listening/ (made by brainviz simulate)")
    ap.add_argument("--model", default="pretrained")
    ap.add_argument("--bn", default=None, help="BN method (default: CouplingConfig's)")
    ap.add_argument("--group", default=None, help="concat or average (default: CouplingConfig's)")
    ap.add_argument("--preset-bn", default=None, help="quick or paper (default: CouplingConfig's)")
    ap.add_argument("--n-networks", type=int, default=None)
    ap.add_argument("--skip-shuffled", action="store_true")
    ap.add_argument("--planted-an", action="store_true", help="also section 5 (couplings planted on purpose)")
    ap.add_argument("--only-planted-an", action="store_true", help="run section 5 only")
    ap.add_argument("--json", default=None, help="write the numbers to this JSON file")
    args = ap.parse_args()
    if args.only_planted_an:
        planted_an_check(args)
        return

    from brainviz import paths
    from brainviz.cache import Cache
    from brainviz.coupling import CouplingConfig, planted_networks, planted_recovery, validated_pairs
    from brainviz.coupling.api import compute_networks, compute_neurons
    from brainviz.coupling.couple import cross_story_pairs, zscore_columns
    from brainviz.coupling.truth import bn_roles
    from brainviz.data import load_dataset
    from brainviz.data.simulate import SIMULATOR_VERSION, SimulationConfig, load_ground_truth, simulate

    sim = Path(args.sim_dir) if args.sim_dir else paths.cache_dir() / f"bench-coupling-sim-{args.preset}"
    gt_file = sim / "listening" / "ground_truth" / "ground_truth.json"
    stale = gt_file.is_file() and json.loads(gt_file.read_text()).get("simulator_version") != SIMULATOR_VERSION
    if not args.sim_dir and (stale or not gt_file.is_file()):
        t = time.time()
        simulate(sim, SimulationConfig(preset=args.preset, seed=0, audio="none"), overwrite=True)
        print(f"simulated {args.preset} preset into {sim} in {time.time() - t:.0f} s ({_load()})")
    ds = load_dataset(sim / "listening", check_values=False)
    truth = planted_networks(ds)
    gt = load_ground_truth(ds)
    over = {k: v for k, v in (("bn", args.bn), ("group", args.group), ("preset", args.preset_bn),
                              ("n_networks", args.n_networks)) if v is not None}
    cfg = CouplingConfig(**over)
    cache = Cache()
    out: dict = {"settings": {**cfg.to_dict(), "cross_draws": cfg.cross_draws(cfg.networks)}, "dataset": str(sim)}
    print(f"dataset: {len(ds.participants)} participants, stories {ds.stories}, TR {ds.tr} s, "
          f"{len(truth['names'])} planted networks ({sum(r == 'coupled' for r in truth['roles'])} coupled, "
          f"{sum(r == 'control' for r in truth['roles'])} controls); simulator {gt['simulator_version']}")
    print(f"settings: bn={cfg.bn} group={cfg.group} preset={cfg.preset} BNs={cfg.networks} "
          f"cross-story null={cfg.cross_null} with {cfg.cross_draws(cfg.networks)} draws, q={cfg.alpha}; {_load()}")

    t0 = time.time()
    bns = compute_networks(ds, cfg, cache=cache)
    t_bn = time.time() - t0
    t0 = time.time()
    pairs = validated_pairs(ds, args.model, cfg, cache=cache)
    t_pairs = time.time() - t0
    rec = planted_recovery(ds, args.model, cfg, pairs=pairs, cache=cache)
    print(f"networks {t_bn:.0f} s, validated pairs (ANs, POS tags, tests) {t_pairs:.0f} s; {_load()}")

    # 1. maps ------------------------------------------------------------------------------
    print("\n1. Planted network recovery (spatial r of the best-matching BN map | oracle ceiling | ratio | "
          "|r| of its time course with the planted one, story 1)")
    first = rec[rec["test_on"] == ds.stories[0]]
    for _, r in first.iterrows():
        print(f"   {r['network']:<14}{r['role']:<9}{r['driver']:<16} BN#{r['bn']:<3} spatial r {r['spatial_r']:.2f} | "
              f"ceiling {r['ceiling']:.2f} | ratio {r['ratio']:.2f} | time course {r['tc_r']:.2f}")
    out["maps"] = first[["network", "role", "bn", "spatial_r", "ceiling", "ratio", "tc_r"]].to_dict(orient="records")

    # 2. validated couplings -------------------------------------------------------------------
    print("\n2. Cross-story validated couplings (pair selected on the other story, tested once; q over "
          f"{cfg.networks} BNs)")
    roles = bn_roles(bns.maps, truth)
    lang = gt["planted_mask"] & ~np.any(gt["network_maps"] != 0, axis=0)
    summary = {}
    for story in ds.stories:
        sub = rec[rec["test_on"] == story]
        for _, r in sub.iterrows():
            print(f"   test {story}: {r['network']:<14}BN#{r['bn']:<3} AN {r['name']:<10} r_select {r['r_select']:+.2f} "
                  f"r_test {r['r_test']:+.2f} [{r['ci_low']:+.2f}, {r['ci_high']:+.2f}] q {r['q']:.4f}  {r['outcome']}")
        coupled = sub[sub["role"] == "coupled"]
        controls = sub[sub["role"] == "control"]
        ps = pairs[pairs["test_on"] == story]
        matched = set(sub["bn"])
        other = ps[ps["significant"] & ~ps["bn"].isin(matched)]
        other_desc = []
        for _, r in other.iterrows():
            m = np.abs(bns.maps[int(r["bn"])])
            top = np.argsort(-m)[: max(1, len(m) // 100)]
            other_desc.append(f"BN#{int(r['bn'])} ({lang[top].mean():.0%} of its top 1% vertices in language regions)")
        summary[story] = {"coupled_found": int(coupled["significant"].sum()), "coupled": len(coupled),
                          "control_false": int(controls["significant"].sum()), "controls": len(controls),
                          "significant_bns": int(ps["significant"].sum()), "other_significant": other_desc}
        print(f"   -> {story}: coupled networks found {summary[story]['coupled_found']}/{len(coupled)}, "
              f"false couplings on controls {summary[story]['control_false']}/{len(controls)}, "
              f"significant BNs {summary[story]['significant_bns']}/{cfg.networks}; other significant: "
              f"{'; '.join(other_desc) or 'none'}")
    out["validated"] = summary
    out["recovery"] = rec.drop(columns=["expected"]).to_dict(orient="records")
    print("   labels of BNs (planted network matched with spatial r >= 0.3): "
          + ", ".join(f"#{i} {r}" for i, r in enumerate(roles) if r))

    # 3. shuffled words -----------------------------------------------------------------------
    if not args.skip_shuffled:
        print(f"\n3. Null control: ANs from shuffled words (timings kept), BNs passing q <= {cfg.alpha}")
        t0 = time.time()
        shuf = validated_pairs(ds, args.model, cfg.replace(shuffle_words=True, pos=False), cache=cache)
        out["shuffled"] = {}
        for story in ds.stories:
            ps = shuf[shuf["test_on"] == story]
            sig = ps[ps["significant"]]
            rate = sig[np.abs(sig["r_word_rate"]) >= RATE_R]
            false = sig[np.abs(sig["r_word_rate"]) < RATE_R]
            out["shuffled"][story] = {"significant": len(sig), "n": len(ps), "word_rate_driven": len(rate),
                                      "false": len(false), "min_q": float(ps["q"].min()),
                                      "bns": {int(b): float(r) for b, r in zip(sig["bn"], sig["r_word_rate"])}}
            print(f"   test {story}: {len(sig)} / {len(ps)} BNs pass; {len(rate)} of them follow the speech rate "
                  f"(|r| >= {RATE_R} with the HRF-convolved tokens per TR: timings are kept, so word rate is real "
                  f"signal) -> false couplings {len(false)} (BH keeps P(any) <= {cfg.alpha} when every BN is null); "
                  "significant: " + ", ".join(f"BN#{int(b)} ({roles[int(b)] or 'unmatched'}, r_rate {r:+.2f})"
                                              for b, r in zip(sig["bn"], sig["r_word_rate"])))
        print(f"   ({time.time() - t0:.0f} s; {_load()})")

    # 4. oracle ------------------------------------------------------------------------------
    print("\n4. Oracle: the planted time courses as BNs (perfect networks), same cross-story test")
    out["oracle"] = {}
    for story in ds.stories:
        other = [s for s in ds.stories if s != story]
        an_sel = np.concatenate([zscore_columns(compute_neurons(ds, s, args.model, cfg, cache=cache)["an_timecourses"])
                                 for s in other])
        bn_sel = np.concatenate([zscore_columns(truth["timecourses"][s]) for s in other])
        an_t = compute_neurons(ds, story, args.model, cfg, cache=cache)["an_timecourses"]
        cs = cross_story_pairs(an_sel, bn_sel, an_t, truth["timecourses"][story],
                               n_permutations=cfg.cross_draws(len(truth["names"])), seed=cfg.seed, null=cfg.cross_null)
        cells = [f"{n} {r:+.2f} (q {q:.3f})" for n, r, q in zip(truth["names"], cs.r_test, cs.q)]
        out["oracle"][story] = dict(zip(truth["names"], [float(x) for x in cs.r_test]))
        print(f"   test {story}: " + "; ".join(cells))
    out["load"] = _load()
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1, default=float))
    if args.planted_an:
        planted_an_check(args)


def planted_an_check(args) -> None:
    """5. End-to-end recovery of couplings planted on purpose: a synthetic listening dataset
    (packaged stories, steady speech) whose first networks are driven by chosen ANs."""
    from brainviz.coupling import CouplingConfig, run_coupling
    from brainviz.coupling._synthetic import synthetic_dataset
    from brainviz.coupling.neurons import compute_an_timecourses, story_grid
    from brainviz.coupling.truth import match_networks
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
    print(f"\n5. Planted AN couplings: synthetic dataset ({kw['n_participants']} participants, {kw['n_units']} units, "
          f"noise s.d. {kw['noise']}), networks 0-2 driven by ANs {['L%dH%dD%d' % c for c in chosen]} = {an_ids}")
    for story in ds.stories:
        res = run_coupling(ds, story, args.model, CouplingConfig(bn="ica", n_networks=8, pos=False), cache=False)
        idx, sr = match_networks(res.maps, truth["maps"])
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
