"""Benchmark: AN activations in closed form vs the naive T_j x T_j computation.

For every TR j with token set T_j and every AN i, the activation is the mean of the m x m matrix
EP = outer(q[T_j, i], k[T_j, i]) (Liu et al. 2023, Fig. 2). The naive way builds that matrix for
every (TR, AN); the pairwise way builds the m x m x n_ans tensor per TR; the closed form is
mean_a q_a[i] * mean_b k_b[i] for all TRs and ANs at once (one sparse matrix product).

Run:  python bench/an_activations.py [--model pretrained] [--story listening_1] [--synthetic]

Uses the packaged MiniLM (6 x 12 x 32 = 2,304 ANs) on a packaged listening story timed at
2.5 words/s, TR 1.5 s; ``--synthetic`` uses random q/k of BERT-base size (9,216 ANs) instead.
Prints the results' agreement and the speed ratios.
"""

from __future__ import annotations

import argparse
import time

import numpy as np


def _time(fn, repeat: int = 1):
    best = np.inf
    out = None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    return out, best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="pretrained")
    ap.add_argument("--story", default="listening_1")
    ap.add_argument("--synthetic", action="store_true", help="random q/k of BERT-base size instead of a model")
    args = ap.parse_args()

    from brainviz.coupling import neurons

    if args.synthetic:
        rng = np.random.default_rng(0)
        n_tokens, n_ans, n_trs = 1230, 12 * 12 * 64, 282
        q = rng.standard_normal((n_tokens, n_ans)).astype(np.float32)
        k = rng.standard_normal((n_tokens, n_ans)).astype(np.float32)
        token_tr = np.sort(rng.integers(0, n_trs, size=n_tokens))
        what = f"random q/k, BERT-base size: {n_tokens} tokens, {n_ans} ANs, {n_trs} TRs"
    else:
        from brainviz.coupling._synthetic import synthetic_dataset
        from brainviz.models.encoder import load_encoder

        ds, _ = synthetic_dataset(n_participants=1, n_units=10, words_per_story=None, stories=(args.story,))
        model, tok = load_encoder(args.model)
        tr = neurons.build_transcript(ds, args.story, tok)
        (q, k), t_model = _time(lambda: neurons.extract_qk(model, tr))
        token_tr = tr.token_tr
        n_trs = tr.grid.n_trs
        shape = neurons.attention_shape(model)
        what = (f"{args.model}: {shape.n_layers} layers x {shape.n_heads} heads x {shape.head_dim} dims = "
                f"{shape.n_ans} ANs; story {args.story}: {len(tr.words)} words, {tr.n_tokens} tokens in "
                f"segments {tr.segment_lengths()}, {n_trs} TRs; model forward {t_model:.2f} s")
    print(what)
    ok = token_tr >= 0
    counts = np.bincount(token_tr[ok], minlength=n_trs)
    print(f"tokens per TR: mean {counts.mean():.2f}, max {counts.max()}, empty TRs {(counts == 0).sum()}")

    fast, t_fast = _time(lambda: neurons.an_activations(q, k, token_tr, n_trs), repeat=5)
    pair, t_pair = _time(lambda: neurons.an_activations_pairwise(q, k, token_tr, n_trs), repeat=2)
    naive, t_naive = _time(lambda: neurons.an_activations_naive(q, k, token_tr, n_trs))
    scale = np.abs(naive).max()
    print(f"max |closed form - naive| = {np.abs(fast - naive).max():.3g} (max |activation| {scale:.3g}); "
          f"allclose(rtol 1e-5): {np.allclose(fast, naive, rtol=1e-5, atol=1e-6 * scale)}")
    print(f"max |closed form - pairwise| = {np.abs(fast - pair).max():.3g}")
    print()
    print(f"{'method':<44}{'time (s)':>10}{'closed form is':>18}")
    print(f"{'closed form (sparse TR-mean product)':<44}{t_fast:>10.4f}{'':>18}")
    print(f"{'pairwise (m x m x n_ans tensor per TR)':<44}{t_pair:>10.4f}{t_pair / t_fast:>16.0f} x")
    print(f"{'naive (m x m matrix per TR and AN)':<44}{t_naive:>10.4f}{t_naive / t_fast:>16.0f} x")


if __name__ == "__main__":
    main()
