"""The brain-tuning engine: run a :class:`TrainConfig` and write a checkpoint.

Procedure (Schwartz, Toneva & Wehbe 2019, section 3.4):

- AdamW, learning rate 5e-5, batch 32, weight decay 0.01 except biases and LayerNorm weights;
  the learning rate rises linearly over the first 10 % of each stage's steps, then falls
  linearly to 0;
- heads-only stages train the heads on the cached features of the frozen encoder (eval mode);
  full stages train everything (or LoRA adapters + heads);
- leave-one-run-out: one fit per (group, held-out run, seed); held-out predictions are written
  for every fold;
- seeds: the data order and dropout of every epoch come from a seed derived from (seed, fit,
  stage, epoch), set inside ``torch.random.fork_rng`` so nothing outside is disturbed.

Resumable: the job works in ``<out>.partial/``. After every completed epoch it writes a state
(weights, optimizer, scheduler, RNG as safetensors + JSON); finished fits are kept there. Run
the same command again after an interruption (even ``kill -9``) and it continues from the last
completed epoch, ending with the same predictions as an uninterrupted run. When everything is
done the folder is moved to ``<out>`` in one rename.
"""

from __future__ import annotations

import copy
import dataclasses
import datetime
import json
import math
import os
import platform
import shutil
import signal
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from brainviz import paths
from brainviz._io import atomic_dir, atomic_path, content_hash, write_json
from brainviz.data.dataset import Dataset, load_dataset
from brainviz.evaluation.encoding import pearson_r
from brainviz.tuning.config import TrainConfig
from brainviz.tuning.variants import MEG_VARIANTS, FitSpec, build_plan

ProgressFn = Callable[[float, str], None]
PARTIAL_SUFFIX = ".partial"
STATE_DIR = "state"
PROGRESS = "progress.json"
KILL_ENV = "BRAINVIZ_TEST_KILL_AFTER_EPOCHS"  # test hook: SIGKILL self after N saved epochs
LORA_TARGETS = r".*\.(query|key|value)$|.*\.attention\.output\.dense$"
RIDGE_ALPHA = 1.0  # per example, on z-scored features (participant-transfer source choice)


class TrainError(ValueError):
    """A training job cannot run as configured (message says why)."""


# --------------------------------------------------------------------------------------
# small helpers
# --------------------------------------------------------------------------------------


def lr_multiplier(step: int, total_steps: int, warmup: float = 0.1) -> float:
    """Linear warm-up over the first ``warmup`` share of the steps, then linear decay to 0."""
    n_warm = int(round(warmup * total_steps))
    if step < n_warm:
        return step / n_warm
    return max(0.0, (total_steps - step) / max(1, total_steps - n_warm))


def resolve_out(out: str | os.PathLike) -> Path:
    """``models/NAME`` as given, or a bare ``NAME`` inside the checkpoint store."""
    p = Path(out)
    return p if (p.is_absolute() or len(p.parts) > 1) else paths.models_dir() / p


def _device(name: str) -> str:
    if name != "auto":
        return name
    from brainviz.backend import default_device

    return default_device()


def _derived_seed(*parts: Any) -> int:
    return int(content_hash(*parts, length=8), 16) & 0x7FFFFFFF


def _versions() -> dict[str, str]:
    import importlib.metadata as md

    import brainviz

    out = {"python": platform.python_version(), "brainviz": brainviz.__version__}
    for pkg in ("torch", "transformers", "peft", "safetensors", "numpy", "tokenizers"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            pass
    return out


def dataset_hash(dataset: Dataset) -> str:
    """Content hash of a dataset folder's manifest, stimulus and arrays (memoised per file)."""
    from brainviz.cache import cached_file_hash

    if dataset.path is None:
        parts = [dataset.stimulus.to_csv(index=False)]
        parts += [np.asarray(r.data) for r in dataset.fmri.values()] + [np.asarray(r.data) for r in dataset.meg.values()]
        return content_hash(*parts)
    root = Path(dataset.path)
    files = [root / "dataset.json", root / "stimulus.tsv"]
    files += sorted((root / "fmri").glob("*.npy")) + sorted((root / "meg").glob("*.npy"))
    return content_hash([(str(f.relative_to(root)), cached_file_hash(f)) for f in files if f.is_file()])


class _Progress:
    """Fan out progress to a callback, a JSON-lines file and a tqdm bar."""

    def __init__(self, total: int, done: int, callback: ProgressFn | None, file: str | os.PathLike | None, bar: bool | None):
        from tqdm.auto import tqdm

        self.total = max(1, total)
        self.done = done
        self.callback = callback
        self.file = Path(file) if file else None
        self._last = 0.0
        self.bar = tqdm(total=self.total, initial=done, disable=(None if bar is None else not bar), unit="batch", dynamic_ncols=True)

    def step(self, n: int = 1, message: str = "", force: bool = False) -> None:
        self.done += n
        self.bar.update(n)
        if message:
            self.bar.set_description_str(message, refresh=False)
        now = time.monotonic()
        if force or now - self._last > 0.5:
            self._last = now
            self.emit(message)

    def emit(self, message: str, fraction: float | None = None) -> None:
        fraction = min(1.0, self.done / self.total) if fraction is None else fraction
        if self.callback is not None:
            self.callback(fraction, message)
        if self.file is not None:
            self.file.parent.mkdir(parents=True, exist_ok=True)
            with open(self.file, "a") as fh:
                fh.write(json.dumps({"fraction": round(fraction, 6), "message": message}) + "\n")

    def close(self) -> None:
        self.bar.close()


@dataclasses.dataclass
class _Features:
    cls: Any                 # torch tensor (n_seq, H)
    tok: Any | None          # torch tensor (n_first_pieces, H) or None


@dataclasses.dataclass
class _Batch:
    seqs: np.ndarray
    fmri: dict[str, tuple[np.ndarray, np.ndarray]]       # pid -> (batch rows, example rows)
    meg_b: np.ndarray
    meg_t: np.ndarray
    meg_flat: np.ndarray
    meg_rows: np.ndarray
    meg: dict[str, tuple[np.ndarray, np.ndarray]]        # pid -> (meg token rows, epoch rows)

    @property
    def fmri_count(self) -> int:
        return sum(len(b) for b, _ in self.fmri.values())

    @property
    def meg_count(self) -> int:
        return sum(len(m) for m, _ in self.meg.values())


# --------------------------------------------------------------------------------------
# the job
# --------------------------------------------------------------------------------------


class TrainJob:
    """One training job; :meth:`run` returns the checkpoint folder.

    Everything that can be checked is checked in the constructor, before anything is
    written: unknown participants or runs, MEG variants without MEG, an existing output.
    """

    def __init__(
        self,
        config: TrainConfig,
        progress: ProgressFn | None = None,
        progress_file: str | os.PathLike | None = None,
        bar: bool | None = None,
        dataset: Dataset | None = None,
    ):
        self.config = config
        self.out = resolve_out(config.out)
        self.partial = self.out.with_name(self.out.name + PARTIAL_SUFFIX)
        self.progress_fn = progress
        self.progress_file = progress_file
        self.bar = bar
        if self.out.exists() and not config.overwrite:
            raise FileExistsError(f"{self.out}: already exists (choose another --out or remove it)")
        self.pre = config.preprocess_config()
        self.dataset = dataset if dataset is not None else load_dataset(config.dataset, check_values=False)
        self._check_inputs()

    # -- validation ---------------------------------------------------------------------
    def _check_inputs(self) -> None:
        cfg, ds = self.config, self.dataset
        if not ds.participants:
            raise TrainError(f"{cfg.dataset}: the dataset has no fMRI participants; brain-tuning predicts fMRI")
        unknown = [p for p in cfg.participants if p not in ds.participants]
        if unknown:
            raise TrainError(f"unknown participant(s) {unknown}; fMRI participants of {ds.name!r} are {ds.participants}")
        self.participants = list(cfg.participants) or list(ds.participants)
        needs_meg = cfg.variant in MEG_VARIANTS and (cfg.variant != "joint" or cfg.meg)
        if needs_meg and not ds.meg_participants:
            raise TrainError(f"variant {cfg.variant!r} needs MEG data but dataset {ds.name!r} has no MEG participants"
                             + (" (use --no-meg for fMRI-only joint tuning)" if cfg.variant == "joint" else ""))
        self.meg_participants = list(ds.meg_participants) if needs_meg else []
        runs = ds.runs
        if cfg.folds:
            bad = [f for f in cfg.folds if f not in runs]
            if bad:
                raise TrainError(f"unknown fold(s) {bad}: folds are held-out runs, the dataset's runs are {runs}")
        self.folds = list(cfg.folds) or list(runs)
        if len(runs) < 2:
            raise TrainError(f"leave-one-run-out needs at least 2 runs; dataset {ds.name!r} has {runs}")
        self.candidates = list(self.participants)
        if cfg.variant == "participant-transfer":
            if cfg.source != "auto":
                if cfg.source not in ds.participants:
                    raise TrainError(f"unknown source participant {cfg.source!r}; fMRI participants are {ds.participants}")
                self.candidates = [cfg.source]
            else:
                self.candidates = list(ds.participants)
        self.fmri_all = list(dict.fromkeys(self.participants + self.candidates))
        n_units = {ds.fmri[p].n_units for p in self.fmri_all}
        self.units = None
        if cfg.roi_mask:
            if len(n_units) != 1:
                raise TrainError("--roi-mask needs participants with the same number of units (a shared space)")
            self.units = _load_roi_mask(cfg.roi_mask, n_units.pop())
        if cfg.head_mode == "shared" and len({ds.fmri[p].n_units for p in self.participants}) != 1:
            raise TrainError("--head-mode shared needs participants in one space (equal unit counts)")
        for pid in self.fmri_all:
            rec_runs = [r.name for r in ds.fmri[pid].runs]
            missing = [f for f in self.folds if f not in rec_runs]
            if missing:
                raise TrainError(f"participant {pid!r} has no fMRI in held-out run(s) {missing}")
        self.job_key = cfg.job_key()

    # -- main ---------------------------------------------------------------------------
    def run(self) -> Path:
        from brainviz.models.encoder import load_encoder

        cfg = self.config
        self.device = _device(cfg.device)
        progress_path = self.partial / PROGRESS
        progress = json.loads(progress_path.read_text()) if progress_path.is_file() else None
        if progress is not None and progress.get("job_key") != self.job_key:
            raise TrainError(f"{self.partial}: left by a job with a different configuration; remove it to start over")
        if progress is None and self.partial.exists():
            raise TrainError(f"{self.partial}: exists but has no {PROGRESS}; remove it to start over")

        base_model, self.tokenizer = load_encoder(cfg.base, device="cpu")
        self.base_encoder = base_model
        ds = self.dataset
        if self.meg_participants:
            from brainviz.tuning.data import annotated

            ds = annotated(ds)
        from brainviz.tuning.data import build_corpus

        self.corpus = build_corpus(
            ds, self.fmri_all, self.meg_participants, self.tokenizer, self.pre, int(cfg.setting("max_length")),
            units=self.units, shuffle_seed=0 if cfg.shuffle_targets else None,
        )
        for pid in self.fmri_all:
            for fold in self.folds:
                t = self.corpus.fmri[pid]
                if not np.any(t.runs == fold):
                    raise TrainError(f"participant {pid!r} has no examples left in held-out run {fold!r} after preprocessing")
                if not np.any(t.runs != fold):
                    raise TrainError(f"participant {pid!r} has no training examples outside run {fold!r}")
        self._feature_cache: dict[str, _Features] = {}

        self.progress = _Progress(0, 0, self.progress_fn, self.progress_file, False)
        sources = progress.get("sources") if progress else None
        if cfg.variant == "participant-transfer" and sources is None:
            sources = self._choose_sources()
        if progress is None:  # everything checked: from here on the job leaves a resumable folder
            progress = {"job_key": self.job_key, "done": [], "config": cfg.resolved(), "sources": sources}
            self.partial.mkdir(parents=True)
            write_json(progress_path, progress)
        self.plan = build_plan(cfg.variant, cfg.stage_epochs(), self.participants, self.meg_participants,
                               self.folds, list(cfg.seeds), sources, joint_meg=cfg.meg)
        self.fits = {f.id: f for f in self.plan}
        self._meg_allowed: dict[str, np.ndarray] = {}

        totals = {f.id: sum(s.epochs for s in f.stages) * self._n_batches(f) for f in self.plan}
        done_units = sum(totals[i] for i in progress["done"])
        self.progress.close()
        self.progress = _Progress(sum(totals.values()), done_units, self.progress_fn, self.progress_file, self.bar)
        self._saved_epochs = 0
        try:
            self.progress.emit(f"training {cfg.variant} ({len(self.plan)} fits)")
            for fit in self.plan:
                if fit.id in progress["done"]:
                    continue
                self._run_fit(fit)
                progress["done"].append(fit.id)
                write_json(progress_path, progress)
                shutil.rmtree(self.partial / STATE_DIR, ignore_errors=True)
            self.progress.emit("writing checkpoint", fraction=1.0)
            self._finish(progress)
        finally:
            self.progress.close()
        self.progress.emit("done", fraction=1.0)
        return self.out

    # -- plan helpers -------------------------------------------------------------------
    def _train_sequences(self, fit: FitSpec) -> np.ndarray:
        c = self.corpus
        train_run = c.runs != fit.fold
        seqs = set()
        for pid in fit.fmri:
            seqs.update(np.flatnonzero((c.fmri[pid].row_of_seq >= 0) & train_run).tolist())
        if fit.meg:
            meg_seqs = c.meg_seq[train_run[c.meg_seq]]
            if not fit.fmri:
                meg_seqs = meg_seqs[:: int(self.config.setting("meg_stride"))]
            seqs.update(meg_seqs.tolist())
        return np.array(sorted(seqs), dtype=np.int64)

    def _n_batches(self, fit: FitSpec) -> int:
        return math.ceil(len(self._train_sequences(fit)) / self.config.batch_size)

    def _meg_allowed_rows(self, fold: str) -> np.ndarray:
        """Stimulus rows usable as MEG targets when ``fold`` is held out."""
        if fold not in self._meg_allowed:
            c, ds = self.corpus, self.dataset
            n = len(ds.stimulus)
            ok = np.zeros(n, dtype=bool)
            for t in c.meg.values():
                ok |= t.row_of_word >= 0
            ok &= ds.stimulus["run"].astype(str).to_numpy() != fold
            frac = float(self.config.setting("meg_fraction"))
            if frac < 1:
                rng = np.random.default_rng(_derived_seed("meg-words", fold))
                ok &= rng.random(n) < frac
            self._meg_allowed[fold] = ok
        return self._meg_allowed[fold]

    def _encoder_ref(self, fit: FitSpec) -> str | None:
        """Fit id whose saved encoder ``fit`` ends with (None: the base encoder)."""
        if fit.tunes_encoder:
            return fit.id
        return self._encoder_ref(self.fits[fit.init]) if fit.init else None

    # -- participant-transfer source ------------------------------------------------------
    def _choose_sources(self) -> dict[str, str]:
        """Most predictable candidate per fold: ridge on frozen features, inner leave-one-run-out."""
        if len(self.candidates) == 1:
            return {f: self.candidates[0] for f in self.folds}
        feats = self._features("init:base", self.base_encoder, need_tokens=False).cls.float().cpu().numpy()
        out = {}
        for fold in self.folds:
            scores = {}
            for pid in self.candidates:
                t = self.corpus.fmri[pid]
                keep = t.runs != fold
                scores[pid] = _inner_ridge_score(feats[t.seq[keep]], t.data[keep], t.runs[keep])
            out[fold] = max(scores, key=lambda p: (scores[p], p))
            self.progress.emit(f"fold {fold}: source participant {out[fold]} (inner ridge r = {scores[out[fold]]:.3f})")
        return out

    # -- features of a frozen encoder -----------------------------------------------------
    def _features(self, key: str, encoder, need_tokens: bool) -> _Features:
        import torch

        cached = self._feature_cache.get(key)
        if cached is not None and (cached.tok is not None or not need_tokens):
            return cached
        c = self.corpus
        encoder.to(self.device)
        was_training = encoder.training
        encoder.eval()
        cls_chunks, tok_chunks = [], []
        with torch.no_grad(), self._autocast():
            for start in range(0, len(c), 64):
                idx = np.arange(start, min(start + 64, len(c)))
                hidden = encoder(**c.tokens.batch(idx, self.device)).last_hidden_state.float()
                cls_chunks.append(hidden[:, 0])
                if need_tokens:
                    for b, s in enumerate(idx):
                        tok_chunks.append(hidden[b, torch.as_tensor(c.fp_pos[s], device=hidden.device)])
        encoder.train(was_training)
        feats = _Features(torch.cat(cls_chunks), torch.cat(tok_chunks) if need_tokens else None)
        if len(self._feature_cache) >= 2:
            self._feature_cache.pop(next(iter(self._feature_cache)))
        self._feature_cache[key] = feats
        return feats

    def _autocast(self):
        import contextlib

        import torch

        if self.device.startswith("cuda"):
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    # -- building a model ---------------------------------------------------------------
    def _heads_for(self, fit: FitSpec):
        from brainviz.models.heads import BrainHeads, FMRIHead, MEGHead

        hidden = int(self.base_encoder.config.hidden_size)
        c = self.corpus
        fmri = meg = None
        if fit.fmri:
            fmri = FMRIHead(hidden, list(fit.fmri), [c.fmri[p].n_units for p in fit.fmri],
                            mode=self.config.head_mode if len(fit.fmri) > 1 else "split", dropout=self.config.dropout)
        if fit.meg:
            meg = MEGHead(hidden, list(fit.meg), [c.meg[p].n_sensors for p in fit.meg], [c.meg[p].n_bins for p in fit.meg])
        return BrainHeads(fmri, meg)

    def _start_encoder(self, fit: FitSpec):
        from safetensors.torch import load_model

        encoder = copy.deepcopy(self.base_encoder)
        ref = self._encoder_ref(self.fits[fit.init]) if fit.init else None
        if ref is not None:
            load_model(encoder, str(self.partial / "fits" / ref / "encoder" / "model.safetensors"), strict=True)
        return encoder

    def _wrap_lora(self, model) -> None:
        from peft import LoraConfig, get_peft_model

        cfg = self.config
        lora = LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout, target_modules=LORA_TARGETS, bias="none")
        model.encoder = get_peft_model(model.encoder, lora)

    def _optimizer(self, model, heads_only: bool):
        import torch

        cfg = self.config
        head_lr = float(cfg.setting("head_lr") or cfg.lr)
        groups: dict[tuple[str, bool], list] = {}
        named = list(model.heads.named_parameters(prefix="heads"))
        if not heads_only:
            named += list(model.encoder.named_parameters(prefix="encoder"))
        for name, p in named:
            if not p.requires_grad:
                continue
            part = "heads" if name.startswith("heads") else "encoder"
            no_decay = name.endswith("bias") or "LayerNorm" in name or "layer_norm" in name or ".norm" in name
            groups.setdefault((part, no_decay), []).append(p)
        param_groups = [
            {"params": ps, "lr": head_lr if part == "heads" else cfg.lr, "weight_decay": 0.0 if nd else cfg.weight_decay}
            for (part, nd), ps in sorted(groups.items())
        ]
        fused = self.device in ("cpu",) or self.device.startswith("cuda")
        try:
            return torch.optim.AdamW(param_groups, lr=cfg.lr, fused=fused)
        except (RuntimeError, TypeError):  # pragma: no cover - old torch / odd device
            return torch.optim.AdamW(param_groups, lr=cfg.lr)

    # -- one fit ------------------------------------------------------------------------
    def _run_fit(self, fit: FitSpec) -> None:
        from brainviz.models.brain_model import BrainModel

        state = self._load_state_meta(fit)
        model = BrainModel(self._start_encoder(fit), self._heads_for(fit)).to(self.device)
        dirty = False
        first_stage, first_epoch = 0, 0
        if state is not None:
            first_stage, first_epoch, dirty = state["stage"], state["epoch"], state["encoder_dirty"]
            if state["lora_wrapped"]:
                self._wrap_lora(model)
            self._load_weights(model, state)
        self.progress.emit(f"fit {fit.id}" + (f" (resumed at stage {first_stage + 1}, epoch {first_epoch})" if state else ""))
        train_seqs = self._train_sequences(fit)
        if len(train_seqs) == 0:
            raise TrainError(f"fit {fit.id}: no training examples")
        weights = self._task_weights(fit, train_seqs)
        for si in range(first_stage, len(fit.stages)):
            start = first_epoch if si == first_stage else 0
            resume = state if (si == first_stage and start > 0) else None
            dirty = self._run_stage(fit, si, model, start, resume, train_seqs, weights, dirty)
        self._write_fit(fit, model, dirty)

    def _task_weights(self, fit: FitSpec, train_seqs: np.ndarray) -> dict[str, float]:
        from brainviz.tuning.losses import task_weights

        c = self.corpus
        counts: dict[str, int] = {}
        for pid in fit.fmri:
            counts[f"fmri:{pid}"] = int(np.sum(c.fmri[pid].row_of_seq[train_seqs] >= 0))
        if fit.meg:
            allowed = self._meg_allowed_rows(fit.fold)
            rows = np.concatenate([c.fp_row[s] for s in train_seqs])
            rows = rows[allowed[rows]]
            for pid in fit.meg:
                counts[f"meg:{pid}"] = int(np.sum(c.meg[pid].row_of_word[rows] >= 0))
        return task_weights(counts, len(train_seqs))

    def _batch(self, fit: FitSpec, seqs: np.ndarray) -> _Batch:
        c = self.corpus
        fmri = {}
        for pid in fit.fmri:
            ex = c.fmri[pid].row_of_seq[seqs]
            b = np.flatnonzero(ex >= 0)
            fmri[pid] = (b, ex[b])
        meg_b = meg_t = meg_flat = meg_rows = np.zeros(0, dtype=np.int64)
        meg = {}
        if fit.meg:
            allowed = self._meg_allowed_rows(fit.fold)
            bs, ts, fs, rs = [], [], [], []
            for b, s in enumerate(seqs):
                keep = allowed[c.fp_row[s]]
                bs.append(np.full(int(keep.sum()), b))
                ts.append(c.fp_pos[s][keep])
                fs.append(c.fp_offset[s] + np.flatnonzero(keep))
                rs.append(c.fp_row[s][keep])
            meg_b, meg_t, meg_flat, meg_rows = (np.concatenate(x).astype(np.int64) for x in (bs, ts, fs, rs))
            for pid in fit.meg:
                ep = c.meg[pid].row_of_word[meg_rows]
                m = np.flatnonzero(ep >= 0)
                meg[pid] = (m, ep[m])
        return _Batch(seqs, fmri, meg_b, meg_t, meg_flat, meg_rows, meg)

    def _loss(self, model, out: dict, batch: _Batch, weights: dict[str, float]):
        import torch

        from brainviz.tuning.losses import combine, get_loss

        loss_fn = get_loss(self.config.loss)
        c, dev = self.corpus, self.device
        per_target = {}
        for pid, (b, ex) in batch.fmri.items():
            if len(b):
                pred = model.heads.fmri.block(out["fmri"][torch.as_tensor(b, device=dev)], pid)
                per_target[f"fmri:{pid}"] = loss_fn(pred, torch.as_tensor(c.fmri[pid].data[ex], device=dev))
        for pid, (m, ep) in batch.meg.items():
            if len(m):
                pred = model.heads.meg.block(out["meg"][torch.as_tensor(m, device=dev)], pid)
                per_target[f"meg:{pid}"] = loss_fn(pred, torch.as_tensor(c.meg[pid].data[ep], device=dev))
        return combine(per_target, weights, len(batch.seqs))

    def _run_stage(self, fit, si, model, first_epoch, resume, train_seqs, weights, dirty) -> bool:
        import torch

        cfg = self.config
        stage = fit.stages[si]
        heads_only = stage.kind == "heads"
        if stage.epochs == 0:
            return dirty
        feats = None
        if heads_only:
            key = f"{fit.id}:stage{si}" if dirty else f"init:{fit.init or 'base'}"
            feats = self._features(key, model.encoder, need_tokens=bool(fit.meg))
            model.encoder.requires_grad_(False)
        elif cfg.lora:
            if resume is None or not resume["lora_wrapped"]:
                self._wrap_lora(model)
                model.to(self.device)
        else:
            model.encoder.requires_grad_(True)
            if cfg.setting("freeze_embeddings"):
                emb = model.encoder.get_input_embeddings()
                emb.weight.requires_grad_(False)
        n_batches = math.ceil(len(train_seqs) / cfg.batch_size)
        total = stage.epochs * n_batches
        optimizer = self._optimizer(model, heads_only)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_multiplier(s, total, cfg.warmup))
        if resume is not None:
            self._load_optimizer(optimizer, scheduler, resume)
        for epoch in range(first_epoch, stage.epochs):
            self._run_epoch(fit, si, epoch, model, optimizer, scheduler, train_seqs, weights, feats)
            last = epoch == stage.epochs - 1
            if last and not heads_only:
                if cfg.lora:
                    model.encoder = model.encoder.merge_and_unload()
                dirty = True
            if last:
                self._save_state(fit, si + 1, 0, model, None, None, dirty, lora_wrapped=False)
            else:
                self._save_state(fit, si, epoch + 1, model, optimizer, scheduler, dirty, lora_wrapped=(cfg.lora and not heads_only))
        model.encoder.requires_grad_(False)
        return dirty

    def _run_epoch(self, fit, si, epoch, model, optimizer, scheduler, train_seqs, weights, feats) -> None:
        import torch

        cfg = self.config
        seed = _derived_seed(fit.seed, fit.id, si, epoch)
        order = np.random.default_rng(seed).permutation(train_seqs)
        devices = [torch.cuda.current_device()] if self.device.startswith("cuda") else []
        stage = fit.stages[si]
        message = f"{fit.id} {stage.kind} epoch {epoch + 1}/{stage.epochs}"
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(seed)
            model.train()
            if feats is not None:
                model.encoder.eval()
            for start in range(0, len(order), cfg.batch_size):
                seqs = order[start : start + cfg.batch_size]
                batch = self._batch(fit, seqs)
                if not batch.fmri_count and not batch.meg_count:
                    continue  # no target in this batch (possible with sparse MEG words)
                wf = None
                if fit.meg:
                    wf = torch.as_tensor(self.corpus.word_features[batch.meg_rows], device=self.device)
                if feats is not None:
                    tok = feats.tok[torch.as_tensor(batch.meg_flat, device=self.device)] if fit.meg else None
                    out = model.heads_forward(feats.cls[torch.as_tensor(seqs, device=self.device)], tok, wf)
                else:
                    pos = torch.as_tensor(np.c_[batch.meg_b, batch.meg_t], device=self.device) if fit.meg else None
                    with self._autocast():
                        out = model(self.corpus.tokens.batch(seqs, self.device), pos, wf)
                loss = self._loss(model, out, batch, weights)
                if not torch.isfinite(loss):
                    raise TrainError(f"{message}: the loss became {loss.item()} (learning rate too high?)")
                loss.backward()
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad(set_to_none=True)
                self.progress.step(1, f"{message} loss {loss.item():.4f}")
        self.progress.step(0, message, force=True)

    # -- state (resume) -----------------------------------------------------------------
    def _state_dir(self) -> Path:
        return self.partial / STATE_DIR

    def _save_state(self, fit, stage, epoch, model, optimizer, scheduler, dirty, lora_wrapped) -> None:
        import torch
        from safetensors.torch import save_file

        with atomic_dir(self._state_dir(), overwrite=True) as tmp:
            tensors = {f"heads.{k}": v.detach().cpu().contiguous() for k, v in model.heads.state_dict().items()}
            if dirty or lora_wrapped or stage < len(fit.stages) and fit.stages[stage].kind == "full" and epoch > 0:
                tensors.update({f"encoder.{k}": v.detach().cpu().contiguous() for k, v in model.encoder.state_dict().items()})
            tensors["rng.torch"] = torch.get_rng_state()
            save_file(_dedupe(tensors), str(tmp / "model.safetensors"))
            meta = {"fit": fit.id, "stage": stage, "epoch": epoch, "encoder_dirty": dirty, "lora_wrapped": lora_wrapped,
                    "job_key": self.job_key, "scheduler": None, "param_groups": None}
            if optimizer is not None:
                sd = optimizer.state_dict()
                opt_tensors = {f"{i}.{k}": v.detach().cpu().contiguous() for i, st in sd["state"].items() for k, v in st.items()}
                save_file(opt_tensors, str(tmp / "optimizer.safetensors"))
                meta["param_groups"] = sd["param_groups"]
                meta["scheduler"] = {k: v for k, v in scheduler.state_dict().items() if k != "lr_lambdas"}
            (tmp / "state.json").write_text(json.dumps(meta, indent=1, default=list))
        self._saved_epochs += 1
        kill_after = os.environ.get(KILL_ENV)
        if kill_after and self._saved_epochs >= int(kill_after):
            os.kill(os.getpid(), signal.SIGKILL)

    def _load_state_meta(self, fit: FitSpec) -> dict | None:
        path = self._state_dir() / "state.json"
        if not path.is_file():
            return None
        meta = json.loads(path.read_text())
        if meta.get("fit") != fit.id or meta.get("job_key") != self.job_key:
            return None
        return meta

    def _load_weights(self, model, meta: dict) -> None:
        import torch
        from safetensors.torch import load_file

        tensors = load_file(str(self._state_dir() / "model.safetensors"))
        heads = {k[6:]: v for k, v in tensors.items() if k.startswith("heads.")}
        model.heads.load_state_dict(heads, strict=True)
        enc = {k[8:]: v for k, v in tensors.items() if k.startswith("encoder.")}
        if enc:
            model.encoder.load_state_dict(enc, strict=True)
        if "rng.torch" in tensors:
            torch.set_rng_state(tensors["rng.torch"])
        model.to(self.device)

    def _load_optimizer(self, optimizer, scheduler, meta: dict) -> None:
        from safetensors.torch import load_file

        tensors = load_file(str(self._state_dir() / "optimizer.safetensors"))
        state: dict[int, dict] = {}
        for key, value in tensors.items():
            i, name = key.split(".", 1)
            state.setdefault(int(i), {})[name] = value.to(self.device) if name != "step" else value
        optimizer.load_state_dict({"state": state, "param_groups": meta["param_groups"]})
        sched = dict(meta["scheduler"])
        sched["lr_lambdas"] = [None] * len(optimizer.param_groups)
        scheduler.load_state_dict(sched)

    # -- outputs ------------------------------------------------------------------------
    def _write_fit(self, fit: FitSpec, model, dirty: bool) -> None:
        from safetensors.torch import save_model

        folder = self.partial / "fits" / fit.id
        folder.mkdir(parents=True, exist_ok=True)
        if dirty:
            with atomic_path(folder / "encoder" / "model.safetensors", suffix=".safetensors.tmp") as tmp:
                save_model(model.encoder.to("cpu"), str(tmp))
            model.to(self.device)
        model.heads.save(folder / "heads.safetensors")
        for pid in fit.predicts:
            preds = self._predict(fit, model, pid, dirty)
            t = self.corpus.fmri[pid]
            test = np.flatnonzero(t.runs == fit.fold)
            target = self.corpus.fmri[pid].real[test]
            out = self.partial / "preds" / f"seed-{fit.seed}" / pid / f"fold-{fit.fold}.npz"
            with atomic_path(out, suffix=".npz.tmp") as tmp:
                with open(tmp, "wb") as fh:
                    np.savez(fh, predictions=preds.astype(np.float32), tr_index=t.tr_index[test].astype(np.int64),
                             run=t.runs[test].astype(str), r=pearson_r(preds, target).astype(np.float32))

    def _predict(self, fit: FitSpec, model, pid: str, dirty: bool) -> np.ndarray:
        import torch

        c = self.corpus
        t = c.fmri[pid]
        seqs = t.seq[t.runs == fit.fold]
        model.eval()
        key = f"init:{fit.init or 'base'}"
        with torch.no_grad():
            if not dirty and key in self._feature_cache:
                out = model.heads.fmri(self._feature_cache[key].cls[torch.as_tensor(seqs, device=self.device)])
            else:
                chunks = []
                for start in range(0, len(seqs), 64):
                    with self._autocast():
                        hidden = model.encode(c.tokens.batch(seqs[start : start + 64], self.device))
                    chunks.append(model.heads.fmri(hidden[:, 0].float()))
                out = torch.cat(chunks)
        return model.heads.fmri.block(out, pid).float().cpu().numpy()

    def _finish(self, progress: dict) -> None:
        """Merge per-fold predictions, write the card and the top-level encoder, publish."""
        cfg = self.config
        p = self.partial
        metrics: dict[str, Any] = {"pearson_r": {}}
        table: dict[str, dict[str, str]] = {}
        all_means = []
        for seed in cfg.seeds:
            seed_key = f"seed-{seed}"
            for pid in self.participants:
                files = [p / "preds" / seed_key / pid / f"fold-{fold}.npz" for fold in self.folds]
                parts = []
                for f in files:
                    with np.load(f, allow_pickle=False) as npz:
                        parts.append({k: npz[k] for k in npz.files})
                preds = np.concatenate([x["predictions"] for x in parts])
                tr_index = np.concatenate([x["tr_index"] for x in parts])
                runs = np.concatenate([x["run"] for x in parts])
                order = np.argsort(tr_index, kind="stable")
                rel = f"predictions/{seed_key}/{pid}.npz"
                units = self.units if self.units is not None else np.arange(preds.shape[1])
                with atomic_path(p / rel, suffix=".npz.tmp") as tmp:
                    with open(tmp, "wb") as fh:
                        np.savez(fh, predictions=preds[order], tr_index=tr_index[order], run=runs[order].astype(str),
                                 units=units.astype(np.int64))
                table.setdefault(seed_key, {})[pid] = rel
                per_fold = {fold: float(np.nanmean(x["r"])) for fold, x in zip(self.folds, parts)}
                mean = float(np.mean(list(per_fold.values())))
                all_means.append(mean)
                metrics["pearson_r"].setdefault(seed_key, {})[pid] = {"mean": mean, "folds": per_fold}
        metrics["mean_pearson_r"] = float(np.mean(all_means)) if all_means else None
        metrics["description"] = "held-out Pearson r per unit, averaged over units, then over folds"

        first = next((f for f in self.plan if f.predicts), self.plan[0])
        first_ref = self._encoder_ref(first)
        encoder_entry = cfg.base
        if first_ref is not None:
            from safetensors.torch import load_model

            encoder = copy.deepcopy(self.base_encoder)
            load_model(encoder, str(p / "fits" / first_ref / "encoder" / "model.safetensors"), strict=True)
            shutil.rmtree(p / "encoder", ignore_errors=True)
            encoder.save_pretrained(str(p / "encoder"), safe_serialization=True)
            self.tokenizer.save_pretrained(str(p / "encoder"))
            encoder_entry = "encoder"
        shutil.copyfile(p / "fits" / first.id / "heads.safetensors", p / "heads.safetensors")

        fits = []
        for f in self.plan:
            ref = self._encoder_ref(f)
            fits.append({
                "group": f.group, "fold": f.fold, "seed": f.seed, "fmri": list(f.fmri), "meg": list(f.meg),
                "stages": [dataclasses.asdict(s) for s in f.stages], "init": f.init, "predicts": list(f.predicts),
                "encoder": f"fits/{ref}/encoder" if ref else "base", "heads": f"fits/{f.id}/heads.safetensors",
            })
        ds = self.dataset
        card = {
            "format": 1,
            "name": self.out.name,
            "variant": cfg.variant,
            "base": cfg.base,
            "encoder": encoder_entry,
            "heads": "heads.safetensors",
            "dataset": {"name": ds.name, "path": str(Path(ds.path).resolve()) if ds.path else None, "hash": dataset_hash(ds)},
            "simulated": bool(ds.simulated),
            "participants": list(self.participants),
            "meg_participants": list(self.meg_participants),
            "folds": list(self.folds),
            "seeds": [int(s) for s in cfg.seeds],
            "train_config": cfg.resolved(),
            "preprocess": self.pre.to_dict(),
            "roi_mask": None if self.units is None else {"file": str(cfg.roi_mask), "n_units": int(len(self.units))},
            "shuffle_targets": bool(cfg.shuffle_targets),
            "transfer_source": progress.get("sources"),
            "fits": fits,
            "predictions": table,
            "metrics": metrics,
            "versions": _versions(),
            "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        }
        write_json(p / "card.json", card)
        # Publish: hard-link the finished files into a temporary sibling that atomic_dir renames
        # onto `out`. The partial folder stays intact until then, so a kill here loses nothing.
        with atomic_dir(self.out, overwrite=cfg.overwrite) as tmp:
            shutil.copytree(p, tmp, copy_function=_link_or_copy, dirs_exist_ok=True,
                            ignore=shutil.ignore_patterns(PROGRESS, STATE_DIR, "preds"))
        shutil.rmtree(p, ignore_errors=True)


# --------------------------------------------------------------------------------------
# module-level helpers
# --------------------------------------------------------------------------------------


def _link_or_copy(src: str, dst: str) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def _dedupe(tensors: dict) -> dict:
    """safetensors refuses shared storage: clone tensors that share memory with another."""
    seen, out = set(), {}
    for k, v in tensors.items():
        ptr = (v.untyped_storage().data_ptr(), v.storage_offset(), tuple(v.shape))
        out[k] = v.clone() if ptr in seen else v
        seen.add(ptr)
    return out


def _load_roi_mask(path: str, n_units: int) -> np.ndarray:
    try:
        mask = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise TrainError(f"{path}: cannot read the ROI mask ({exc})") from None
    if mask.dtype == bool:
        if mask.shape != (n_units,):
            raise TrainError(f"{path}: boolean ROI mask has shape {mask.shape}, expected ({n_units},)")
        units = np.flatnonzero(mask)
    elif np.issubdtype(mask.dtype, np.integer) and mask.ndim == 1:
        units = np.unique(mask)
        if units.size and (units[0] < 0 or units[-1] >= n_units):
            raise TrainError(f"{path}: ROI unit indices must lie in [0, {n_units})")
    else:
        raise TrainError(f"{path}: ROI mask must be a boolean vector or integer indices, got {mask.dtype} {mask.shape}")
    if units.size == 0:
        raise TrainError(f"{path}: the ROI mask selects no units")
    return units.astype(np.int64)


def _inner_ridge_score(x: np.ndarray, y: np.ndarray, runs: np.ndarray) -> float:
    """Mean held-out r of a ridge map x -> y, leave-one-run-out (halves when one run)."""
    labels = list(dict.fromkeys(runs))
    if len(labels) < 2:
        half = np.arange(len(x)) >= len(x) // 2
        splits = [(~half, half), (half, ~half)]
    else:
        splits = [(runs != r, runs == r) for r in labels]
    scores = []
    for tr, te in splits:
        if tr.sum() < 2 or te.sum() < 2:
            continue
        mu, sd = x[tr].mean(0), x[tr].std(0) + 1e-6
        xt, xe = (x[tr] - mu) / sd, (x[te] - mu) / sd
        ym = y[tr].mean(0)
        w = np.linalg.solve(xt.T @ xt + RIDGE_ALPHA * len(xt) * np.eye(x.shape[1]), xt.T @ (y[tr] - ym))
        scores.append(np.nanmean(pearson_r(xe @ w + ym, y[te])))
    return float(np.mean(scores)) if scores else float("-inf")


def train(
    config: TrainConfig,
    progress: ProgressFn | None = None,
    progress_file: str | os.PathLike | None = None,
    bar: bool | None = None,
    dataset: Dataset | None = None,
) -> Path:
    """Run a training job (resuming ``<out>.partial`` if present); return the checkpoint folder.

    Parameters
    ----------
    config : TrainConfig
    progress : callable ``(fraction, message)``, optional
        Called as training advances (at most twice a second, and at every epoch end).
    progress_file : path, optional
        Also append ``{"fraction": ..., "message": ...}`` JSON lines to this file.
    bar : bool or None
        Show a tqdm bar (None: only on a terminal).
    dataset : Dataset, optional
        Already loaded dataset (``config.dataset`` is still recorded in the card).
    """
    return TrainJob(config, progress, progress_file, bar, dataset).run()
