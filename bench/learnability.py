"""Which brain-specific drivers can brain-tuning learn from ~600 windows? (issue 12)

A screen run before choosing the simulator's brain-specific component: candidate drivers are
computed from the words of the simulated default reading story exactly as the simulator computes
its drivers (recency-weighted window, SPM HRF, per-run detrending, orthogonalized against the
readable drivers and the linear lexical basis, unit variance), then

* vanilla: a himalaya RidgeCV from the frozen packaged MiniLM's mean-pooled features
  (inner leave-one-run-out) predicts each candidate on the held-out run (R^2);
* tuned: the same encoder fine-tuned on the *noise-free* candidates (head warm-up on frozen
  features, then full fine-tuning with frozen word embeddings, as the quick recipe does),
  read out the same way.

A good brain-specific driver has a low vanilla R^2 (not a linear read-out of pretrained
features) and a clearly higher tuned R^2 (learnable from the window's words).

Usage: python bench/learnability.py [lr=2e-4] [epochs=3] [fold=run-1] [only=name,name]
Prints one line per candidate and appends JSON to data_cache/bench/learnability.jsonl.
"""
import json
import sys
import time
import zlib

import numpy as np
import torch

from brainviz import paths
from brainviz.data import load_dataset
from brainviz.data.preprocess import PreprocessConfig
from brainviz.data.simulate import ensure_default_dataset, load_ground_truth
from brainviz.data.simulate.config import GRID_DT, READING_TR, SimulationConfig
from brainviz.data.simulate.drivers import LEXICAL_BASIS, _hrf, _word_arrays, neural_drivers
from brainviz.data.simulate.stimulus import _detrend_kept, _kept_mask, _reading_stimulus, _run_of_tr
from brainviz.models.brain_model import pool
from brainviz.models.encoder import load_encoder
from brainviz.tuning.data import annotated, build_corpus

torch.set_num_threads(2)
A = dict(lr=2e-4, epochs=3, head_epochs=10, fold="run-1", only="", seed=0, bs=32, head_lr=1e-3)
for a in sys.argv[1:]:
    k, v = a.split("=")
    A[k] = type(A[k])(v)
t0 = time.time()
ds = annotated(load_dataset(ensure_default_dataset()["reading"]))
gt = load_ground_truth(ds)
wf = gt["word_features"]
cfg = SimulationConfig()
stim, layouts, _ = _reading_stimulus(None, READING_TR)
assert len(stim) == len(wf), "word table and stimulus differ: regenerate the default dataset"

# ---- candidate per-word values (content words unless said otherwise)
content = wf["is_content"].to_numpy(dtype=float)
zlen = wf["z_length"].to_numpy(dtype=float)
zfreq = wf["z_log_freq"].to_numpy(dtype=float)
letters = zlen * 2.5 + 4.5
cat = wf["category"].to_numpy()
form = wf["form"].astype(str).to_numpy()
pos = wf["pos"].astype(str).to_numpy()


def word_sign(words, salt):
    return np.array([1.0 if zlib.crc32(f"{salt}:{w}".encode()) % 2 else -1.0 for w in words])


CANDIDATES = {
    # XOR of two linearly encoded word properties: long-and-rare or short-and-frequent
    "xor_len_freq": content * np.sign(zlen - 0.3 + 1e-9) * np.sign(-zfreq + 0.2 + 1e-9),
    # non-monotonic functions of linearly encoded properties
    "freq_bump": content * np.exp(-0.5 * (zfreq / 0.5) ** 2),
    "len_bump": content * np.exp(-0.5 * ((letters - 6.0) / 1.0) ** 2),
    # category x length interaction (social words only)
    "social_x_len": content * np.isin(cat, ["people", "emotion", "mental"]) * zlen,
    # an idiosyncratic +-1 response to each content word form (memorisation)
    "content_form_sign": content * word_sign(form, "c"),
    # an idiosyncratic +-1 response to each function word (closed class: every form recurs)
    "function_form_sign": (1 - content) * word_sign(form, "f"),
    # nouns vs verbs (probably readable)
    "noun_minus_verb": (pos == "NOUN").astype(float) - (pos == "VERB").astype(float),
    # smooth even functions of log frequency / length (U-shapes)
    "abs_freq": content * np.abs(zfreq),
    "freq_sq": content * (zfreq ** 2),
    "len_sq": content * (zlen ** 2),
    # a sum (not max) of thresholded rarity
    "rare_sum": content / (1 + np.exp(-(-zfreq - 1.0) / 0.3)),
    "depth_sum": np.minimum(wf["depth"].to_numpy(dtype=float), 8),
    "very_rare_sum": content / (1 + np.exp(-(-zfreq - 1.5) / 0.3)),
    "common_sum": content / (1 + np.exp(-(zfreq - 1.0) / 0.3)),
    "long_sum": content / (1 + np.exp(-(letters - 8.0) / 0.5)),
    "short_sum": content / (1 + np.exp(-(4.0 - letters) / 0.5)),
    "rare_long": content / (1 + np.exp(-(-zfreq - 0.5) / 0.3)) / (1 + np.exp(-(letters - 7.0) / 0.5)),
}
arrays = _word_arrays(wf)
for k, v in CANDIDATES.items():
    arrays[k] = v.astype(float)
names = list(CANDIDATES)
# window-level interaction of two readable dimensions (not a per-word function)
WINDOW_PRODUCTS = {"social_x_concrete": ("sem_social", "sem_concrete")}
READ = ["sem_social", "sem_concrete", "sem_action", "sem_abstract", "word_length", "log_frequency"]


def wsum_drivers(times, onsets, arr, keys):
    lo = np.searchsorted(onsets, times - cfg.window, side="left")
    hi = np.searchsorted(onsets, times, side="left")
    width = int((hi - lo).max(initial=0))
    out = np.zeros((len(times), len(keys)))
    if width == 0:
        return out
    idx = lo[:, None] + np.arange(width)[None, :]
    valid = idx < hi[:, None]
    idx = np.where(valid, idx, 0)
    r = np.where(valid, np.exp(-(times[:, None] - onsets[idx]) / cfg.recency_tau), 0.0)
    for j, k in enumerate(keys):
        out[:, j] = (r * arr[k][idx]).sum(axis=1)
    return out


h = _hrf(GRID_DT)
step = int(round(READING_TR / GRID_DT))
onsets_all = stim["onset"].to_numpy(dtype=float)
base_names = READ + LEXICAL_BASIS
parts = []
for lay in layouts:
    arr = {k: v[lay.rows] for k, v in arrays.items()}
    grid = GRID_DT * np.arange(lay.n_trs * step)
    on = onsets_all[lay.rows]
    basis = neural_drivers(grid, on, arr, base_names, cfg.window, cfg.recency_tau)
    cand = wsum_drivers(grid, on, arr, names)
    prods = [basis[:, READ.index(a)] * basis[:, READ.index(b)] for a, b in WINDOW_PRODUCTS.values()]
    neural = np.c_[basis, cand, np.stack(prods, axis=1)]
    bold = np.stack([np.convolve(neural[:, j], h)[: len(grid)] for j in range(neural.shape[1])], 1) * GRID_DT
    parts.append(bold[::step][: lay.n_trs])
bold = np.concatenate(parts)
kept, run_of_tr = _kept_mask(layouts), _run_of_tr(layouts)
xk = _detrend_kept(bold, run_of_tr, kept)
nb = len(base_names)
all_names = names + list(WINDOW_PRODUCTS)
coef = np.linalg.lstsq(xk[:, :nb], xk[:, nb:], rcond=None)[0]
share = ((xk[:, nb:] - xk[:, :nb] @ coef).std(0) / xk[:, nb:].std(0)) ** 2
cand_bold = bold[:, nb:] - bold[:, :nb] @ coef
cand_bold /= _detrend_kept(cand_bold, run_of_tr, kept).std(0)
# sanity: the readable drivers recomputed here equal the simulator's
gi = [gt["driver_names"].index(n) for n in READ]
chk = _detrend_kept(bold[:, : len(READ)], run_of_tr, kept)
ref = _detrend_kept(gt["drivers"][:, gi], run_of_tr, kept)
print("recomputed readable vs ground truth r:",
      np.round([np.corrcoef(chk[:, j], ref[:, j])[0, 1] for j in range(len(READ))], 4), flush=True)
if A["only"]:
    keep = [all_names.index(n) for n in A["only"].split(",")]
    all_names = [all_names[i] for i in keep]
    cand_bold, share = cand_bold[:, keep], share[keep]

# ---- windows and targets
pids = list(ds.participants)
model, tok = load_encoder("pretrained")
corpus = build_corpus(ds, pids[:1], [], tok, PreprocessConfig(), max_length=48)
t1 = corpus.fmri[pids[0]]
seqs = t1.seq
Y = cand_bold[t1.tr_index].astype(np.float32)
runs = corpus.runs[seqs]
for run in np.unique(runs):
    m = runs == run
    Y[m] = (Y[m] - Y[m].mean(0)) / (Y[m].std(0) + 1e-8)
train = np.flatnonzero(runs != A["fold"])
test = np.flatnonzero(runs == A["fold"])


@torch.no_grad()
def features(m):
    m.eval()
    out = []
    for i in range(0, len(seqs), 64):
        b = corpus.tokens.batch(seqs[i:i + 64])
        out.append(pool(m(**b).last_hidden_state, b["attention_mask"], "mean").float().numpy())
    return np.concatenate(out)


def ridge_r2(f):
    from himalaya.ridge import RidgeCV
    from sklearn.model_selection import PredefinedSplit

    fold_id = np.unique(runs[train], return_inverse=True)[1]
    mu, sd = f[train].mean(0), f[train].std(0) + 1e-6
    r = RidgeCV(alphas=np.logspace(-2, 5, 15), cv=PredefinedSplit(fold_id))
    r.fit((f[train] - mu) / sd, Y[train])
    p = np.asarray(r.predict((f[test] - mu) / sd))
    y = Y[test]
    return 1 - ((y - p) ** 2).sum(0) / ((y - y.mean(0)) ** 2).sum(0)


f0 = features(model)
van = ridge_r2(f0)
print(f"vanilla done {time.time() - t0:.0f}s", flush=True)
torch.manual_seed(A["seed"])
rng = np.random.default_rng(A["seed"])
head = torch.nn.Linear(model.config.hidden_size, Y.shape[1])
torch.nn.init.zeros_(head.weight)
torch.nn.init.zeros_(head.bias)
Yt, F0 = torch.as_tensor(Y), torch.as_tensor(f0)
nb_batches = max(1, len(train) // A["bs"])
opt = torch.optim.AdamW(head.parameters(), lr=A["head_lr"], weight_decay=0.01)
for _ in range(A["head_epochs"]):
    for b in np.array_split(rng.permutation(train), nb_batches):
        loss = ((head(F0[b]) - Yt[b]) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
for n, p in model.named_parameters():
    p.requires_grad_("embeddings" not in n)
opt = torch.optim.AdamW([{"params": [p for p in model.parameters() if p.requires_grad], "lr": A["lr"]},
                         {"params": head.parameters(), "lr": A["head_lr"]}], weight_decay=0.01)
steps = A["epochs"] * nb_batches
warm = max(1, steps // 10)
sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: s / warm if s < warm else max(0.0, (steps - s) / max(1, steps - warm)))
for ep in range(A["epochs"]):
    model.train()
    losses = []
    for b in np.array_split(rng.permutation(train), nb_batches):
        batch = corpus.tokens.batch(seqs[b])
        loss = ((head(pool(model(**batch).last_hidden_state, batch["attention_mask"], "mean")) - Yt[b]) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        losses.append(float(loss.detach()))
    print(f"epoch {ep} loss {np.mean(losses):.3f} {time.time() - t0:.0f}s", flush=True)
f1 = features(model)
ft = ridge_r2(f1)
with torch.no_grad():
    p = head(torch.as_tensor(f1[test])).numpy()
yt = Y[test]
ft_head = 1 - ((yt - p) ** 2).sum(0) / ((yt - yt.mean(0)) ** 2).sum(0)
out = {"simulated": True, "args": A, "secs": round(time.time() - t0), "candidates": {}}
print("SIMULATED data: the default reading story of the brainviz simulator; held-out", A["fold"])
print(f"{'candidate':22s} {'nonlin share':>12s} {'vanilla R2':>10s} {'tuned R2':>9s} {'tuned head R2':>13s}")
for j, n in enumerate(all_names):
    print(f"{n:22s} {share[j]:12.2f} {van[j]:10.3f} {ft[j]:9.3f} {ft_head[j]:13.3f}")
    out["candidates"][n] = {"nonlinear_share": float(share[j]), "vanilla_r2": float(van[j]), "tuned_r2": float(ft[j]), "tuned_head_r2": float(ft_head[j])}
(paths.cache_dir() / "bench").mkdir(parents=True, exist_ok=True)
with open(paths.cache_dir() / "bench" / "learnability.jsonl", "a") as fh:
    fh.write(json.dumps(out) + "\n")
