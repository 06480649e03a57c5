"""Bounds for issue 12: can fine-tuning beat vanilla in planted (not null) vertices, and what
would a perfect learner gain? (numbers in docs/tuning.md, "measured bounds")

A stripped-down copy of the quick recipe (mean target of all participants = the shared head,
head warm-up, full fine-tuning with frozen word embeddings) on one fold of the simulated
default reading data; vanilla and tuned encoders are both read out by a himalaya RidgeCV from
pooled features (inner leave-one-run-out) and compared per vertex with a one-sided paired
t-test across participants + BH. Writes one JSON line per run to data_cache/bench/tuning_bounds.jsonl.

Usage: python bench/tuning_bounds.py NAME [key=value ...]
  data (reading dataset folder; default: the simulated default), lr, epochs (full), head_epochs,
  pooling (mean|cls), mask (all|reliable|planted), top (fraction for reliable), fold (run-1),
  shuffle (0|1: shuffled-target control), pcs (train on the top k principal components of the
  target), clean (1: train on the noise-free planted signal - a learnability check), oracle (1:
  also print the ridge gains of the true drivers), wd, l2sp, seed, bs, head_lr, frozen_emb, layer, train_layers (0: all; K: the top K layers)
"""
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from brainviz.data import load_dataset
from brainviz.data.preprocess import PreprocessConfig
from brainviz.data.simulate import load_ground_truth
from brainviz.models.brain_model import pool
from brainviz.models.encoder import load_encoder
from brainviz.tuning.data import annotated, build_corpus, shuffle_within_runs

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
torch.set_num_threads(2)
name = sys.argv[1]
args = dict(a.split("=") for a in sys.argv[2:])
A = dict(lr=2e-4, epochs=3, head_epochs=10, pooling="mean", mask="reliable", top=0.05, readout="ridge",
         fold="run-1", shuffle=0, wd=0.01, l2sp=0.0, seed=0, data="", bs=32, head_lr=1e-3,
         frozen_emb=1, layer=-1, pcs=0, clean=0, oracle=0, train_layers=0, fixed_head=0)
for k, v in args.items():
    A[k] = type(A[k])(v)
t0 = time.time()
from brainviz import paths  # noqa: E402

CACHE = paths.cache_dir() / "bench" / "tuning_bounds"
CACHE.mkdir(parents=True, exist_ok=True)
if not A["data"]:
    from brainviz.data.simulate import ensure_default_dataset

    A["data"] = str(ensure_default_dataset()["reading"])
ds = annotated(load_dataset(A["data"]))
gt = load_ground_truth(ds)
planted = gt["planted_mask"]
pids = list(ds.participants)
model, tok = load_encoder("pretrained")
corpus = build_corpus(ds, pids, [], tok, PreprocessConfig(), max_length=48)
n_seq = len(corpus)
test_seq = np.flatnonzero(corpus.runs == A["fold"])
train_seq = np.flatnonzero(corpus.runs != A["fold"])
units = corpus.fmri[pids[0]].n_units
# mean target over participants (shared head + MSE == fitting the mean)
ybar = np.zeros((n_seq, units), np.float32)
cnt = np.zeros(n_seq)
for pid in pids:
    t = corpus.fmri[pid]
    data = t.data
    if A["shuffle"]:
        data = shuffle_within_runs(data, t.runs, 1000 + pids.index(pid))
    ybar[t.seq] += data
    cnt[t.seq] += 1
ybar /= np.maximum(cnt, 1)[:, None]
if A["clean"]:
    # learnability check: train on the noise-free shared planted signal (z-scored within run)
    t0p = corpus.fmri[pids[0]]
    tr_of_seq = np.full(n_seq, -1); tr_of_seq[t0p.seq] = t0p.tr_index
    sig = (gt["drivers"][tr_of_seq] @ gt["spatial_weights"]).astype(np.float32)
    for run in np.unique(corpus.runs):
        m = corpus.runs == run
        sig[m] = (sig[m] - sig[m].mean(0)) / (sig[m].std(0) + 1e-6)
    ybar_real = ybar
    ybar = sig

# reliability mask from the training runs only: leave-one-out inter-participant correlation
def reliability():
    rs = []
    for pid in pids:
        t = corpus.fmri[pid]
        tr = np.isin(t.seq, train_seq)
        own = t.data[tr]
        others = (ybar[t.seq[tr]] * len(pids) - own) / (len(pids) - 1)
        a = (own - own.mean(0)) / (own.std(0) + 1e-8)
        b = (others - others.mean(0)) / (others.std(0) + 1e-8)
        rs.append((a * b).mean(0))
    return np.mean(rs, axis=0)


if A["mask"] == "all":
    sel = np.arange(units)
elif A["mask"] == "planted":
    sel = np.flatnonzero(planted)
else:
    rel = reliability()
    sel = np.argsort(rel)[::-1][: int(A["top"] * units)]
print(f"selected {len(sel)} units, {planted[sel].mean():.2f} planted; {planted[sel].sum()} of {planted.sum()} planted",
      flush=True)


@torch.no_grad()
def features(m, seqs):
    m.eval()
    out = []
    for i in range(0, len(seqs), 64):
        b = corpus.tokens.batch(seqs[i:i + 64])
        o = m(**b, output_hidden_states=A["layer"] != -1)
        h = o.last_hidden_state if A["layer"] == -1 else o.hidden_states[A["layer"]]
        out.append(pool(h, b["attention_mask"], A["pooling"]).float().numpy())
    return np.concatenate(out)


def ridge_readout(f):
    from himalaya.ridge import RidgeCV
    from sklearn.model_selection import PredefinedSplit
    tr_runs = corpus.runs[train_seq]
    fold_id = np.unique(tr_runs, return_inverse=True)[1]
    X = f[train_seq]
    mu, sd = X.mean(0), X.std(0) + 1e-6
    r = RidgeCV(alphas=np.logspace(-1, 5, 13), cv=PredefinedSplit(fold_id))
    r.fit((X - mu) / sd, (ybar_real if A['clean'] else ybar)[train_seq])
    return np.asarray(r.predict((f[test_seq] - mu) / sd), np.float32)


def score(pred_test):
    """per participant x unit Pearson r on the held-out run (real data)"""
    out = []
    for pid in pids:
        t = corpus.fmri[pid]
        rows = t.row_of_seq[test_seq]
        ok = rows >= 0
        y = t.real[rows[ok]]
        p = pred_test[ok]
        y = (y - y.mean(0)) / (y.std(0) + 1e-8)
        p = (p - p.mean(0)) / (p.std(0) + 1e-8)
        out.append((y * p).mean(0))
    return np.array(out)


from brainviz._io import content_hash  # noqa: E402

ck = CACHE / f"f0_{A['pooling']}_{A['layer']}_{A['fold']}_{content_hash(str(Path(A['data']).resolve()))[:12]}.npz"
if ck.exists():
    z = np.load(ck)
    f0, base_r = z["f0"], z["base_r"]
else:
    f0 = features(model, np.arange(n_seq))
    base_r = score(ridge_readout(f0))
    np.savez(ck, f0=f0, base_r=base_r)
print(f"features+vanilla ridge {time.time() - t0:.0f}s", flush=True)

if A["oracle"]:  # upper bounds: a perfect learner of the true drivers
    from scipy import stats
    names = gt["driver_names"]
    spec = [names.index(n) for n in gt["components"]["specific"]]
    read = [names.index(n) for n in gt["components"]["readable"]]
    t0p = corpus.fmri[pids[0]]
    tr_of_seq = np.full(n_seq, -1); tr_of_seq[t0p.seq] = t0p.tr_index
    for label, cols in [("oracle_specific", spec), ("oracle_both", spec + read)]:
        D = gt["drivers"][tr_of_seq][:, cols]
        f = np.c_[f0 / f0.std(), 3 * D / D.std(0)]
        r = score(ridge_readout(f))
        d = r - base_r
        t, p = stats.ttest_1samp(d, 0, axis=0)
        p1 = np.where(t > 0, p / 2, 1 - p / 2)
        q = stats.false_discovery_control(np.nan_to_num(p1, nan=1.0))
        sig = q <= 0.05
        print(label, "planted r", r[:, planted].mean(), "vs", base_r[:, planted].mean(), "sig planted", sig[planted].sum(), "null", sig[~planted].sum(), flush=True)
# ---- training: head warm-up on frozen features, then full fine-tuning
torch.manual_seed(A["seed"])
rng = np.random.default_rng(A["seed"])
H = model.config.hidden_size
head = torch.nn.Linear(H, len(sel))
torch.nn.init.zeros_(head.weight)
torch.nn.init.zeros_(head.bias)
Ysel = ybar[:, sel]
if A["pcs"]:
    # denoise: the top principal components of the mean target over the selected units (training rows)
    mu = Ysel[train_seq].mean(0)
    U, S, Vt = np.linalg.svd(Ysel[train_seq] - mu, full_matrices=False)
    print("PC variance shares", np.round((S**2 / (S**2).sum())[:20], 3), flush=True)
    Ysel = (Ysel - mu) @ Vt[: A["pcs"]].T
    Ysel = Ysel / Ysel[train_seq].std(0)
    head = torch.nn.Linear(H, A["pcs"])
    torch.nn.init.zeros_(head.weight)
    torch.nn.init.zeros_(head.bias)
Y = torch.as_tensor(np.ascontiguousarray(Ysel, dtype=np.float32))
F0 = torch.as_tensor(f0)
opt = torch.optim.AdamW(head.parameters(), lr=A["head_lr"], weight_decay=0.01)
for ep in range(A["head_epochs"]):
    for b in np.array_split(rng.permutation(train_seq), max(1, len(train_seq) // A["bs"])):
        loss = ((head(F0[b]) - Y[b]) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
vanilla_head_pred = None
theta0 = {k: v.detach().clone() for k, v in model.named_parameters()}
def _trainable(n):
    if A["frozen_emb"] and "embeddings" in n:
        return False
    if A["train_layers"]:  # only the top K transformer layers
        n_layers = model.config.num_hidden_layers
        return any(f"layer.{i}." in n for i in range(n_layers - A["train_layers"], n_layers))
    return True


for n, p in model.named_parameters():
    p.requires_grad_(_trainable(n))
params = [p for n, p in model.named_parameters() if p.requires_grad]
if A["fixed_head"]:  # the head stays as the warm-up left it: only the encoder learns
    head.requires_grad_(False)
opt = torch.optim.AdamW([{"params": params, "lr": A["lr"]}] + ([] if A["fixed_head"] else [{"params": head.parameters(), "lr": A["head_lr"]}]),
                        weight_decay=A["wd"])
steps = A["epochs"] * max(1, len(train_seq) // A["bs"])
warm = max(1, int(0.1 * steps))
sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: s / warm if s < warm else max(0.0, (steps - s) / max(1, steps - warm)))
losses = []
for ep in range(A["epochs"]):
    model.train()
    for b in np.array_split(rng.permutation(train_seq), max(1, len(train_seq) // A["bs"])):
        batch = corpus.tokens.batch(b)
        h = model(**batch).last_hidden_state
        loss = ((head(pool(h, batch["attention_mask"], A["pooling"])) - Y[b]) ** 2).mean()
        if A["l2sp"] > 0:
            loss = loss + A["l2sp"] * sum(((p - theta0[n]) ** 2).sum() for n, p in model.named_parameters() if p.requires_grad)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        losses.append(float(loss.detach()))
    print(f"epoch {ep} loss {np.mean(losses[-20:]):.4f} {time.time() - t0:.0f}s", flush=True)
num = sum(((p.detach() - theta0[n]) ** 2).sum() for n, p in model.named_parameters())
den = sum((theta0[n] ** 2).sum() for n, _ in model.named_parameters())
change = float(torch.sqrt(num / den))
f1 = features(model, np.arange(n_seq))
ft_r = score(ridge_readout(f1))
d = ft_r - base_r   # participants x units
from scipy import stats
t, p = stats.ttest_1samp(d, 0, axis=0)
p1 = np.where(t > 0, p / 2, 1 - p / 2)
q = stats.false_discovery_control(np.nan_to_num(p1, nan=1.0))
sig = q <= 0.05
res = dict(name=name, args=A, n_sel=len(sel), sel_planted=int(planted[sel].sum()), change=change,
           van_planted=float(base_r[:, planted].mean()), ft_planted=float(ft_r[:, planted].mean()),
           van_null=float(base_r[:, ~planted].mean()), ft_null=float(ft_r[:, ~planted].mean()),
           sig_planted=int(sig[planted].sum()), sig_null=int(sig[~planted].sum()),
           frac_planted_gain=float((d.mean(0)[planted] > 0).mean()),
           specific_gain=float(d[:, gt["specific_mask"]].mean()), readable_gain=float(d[:, gt["readable_mask"]].mean()),
           secs=time.time() - t0)
print(json.dumps(res), flush=True)
with open(CACHE.parent / "tuning_bounds.jsonl", "a") as fh:
    fh.write(json.dumps(res) + "\n")
