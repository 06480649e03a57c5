"""The training loop of one fit: heads-only and full stages, epochs, batches, losses.

:class:`FitTrainer` trains the fits of a :class:`~brainviz.tuning.train.TrainJob` one at a
time (procedure of Schwartz, Toneva & Wehbe 2019, section 3.4):

- AdamW, weight decay except on biases and LayerNorm weights; per stage, a linear warm-up of
  the learning rate over the first ``warmup`` share of the steps, then a linear decay to 0;
- heads-only stages train the heads on the cached pooled features of the frozen encoder
  (computed once in eval mode); full stages train encoder and heads (or LoRA adapters + heads,
  merged at the end of the stage);
- the data order and dropout of every epoch come from a seed derived from (seed, fit, stage,
  epoch), set inside ``torch.random.fork_rng``, so runs are reproducible and resumable;
- after every epoch the resume state is written (:class:`~brainviz.tuning._state.ResumeState`).

When a fit is done its outputs go to ``<partial>/fits/<id>/`` (float16 encoder delta, float16
heads, ``fit.json`` with the encoder's relative change) and ``<partial>/preds/`` (per-fold
held-out predictions made by exactly the stored weights).
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import math
from typing import Any

import numpy as np

from brainviz._io import content_hash, write_json
from brainviz.evaluation.encoding import pearson_r
from brainviz.tuning._progress import FULL_BATCH_COST
from brainviz.tuning.variants import FitSpec

LORA_TARGETS = r".*\.(query|key|value)$|.*\.attention\.output\.dense$"
FIT_INFO = "fit.json"


class LoopError(ValueError):
    """Training diverged or a fit has nothing to train on."""


def lr_multiplier(step: int, total_steps: int, warmup: float = 0.1) -> float:
    """Linear warm-up over the first ``warmup`` share of the steps, then linear decay to 0."""
    n_warm = int(round(warmup * total_steps))
    if step < n_warm:
        return step / n_warm
    return max(0.0, (total_steps - step) / max(1, total_steps - n_warm))


def derived_seed(*parts: Any) -> int:
    return int(content_hash(*parts, length=8), 16) & 0x7FFFFFFF


@dataclasses.dataclass
class Features:
    cls: Any                 # torch tensor (n_seq, H): pooled head input ([CLS] or mean)
    tok: Any | None          # torch tensor (n_first_pieces, H) or None


@dataclasses.dataclass
class Batch:
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


class FitTrainer:
    """Trains fits of a job (its corpus, base encoder, resume state, progress).

    ``pool_shared_mse`` (class attribute, default True): with a shared head and the MSE loss,
    fit the participants' weighted mean target (same gradients, one participant's cost).

    Parameters
    ----------
    job : TrainJob
        Provides ``config``, ``corpus``, ``dataset``, ``device``, ``base_encoder``,
        ``base_state``, ``partial``, ``fits`` (id -> FitSpec), ``state`` (ResumeState),
        ``progress``, ``head_mode``, ``pooling`` and ``fold_masks(fold)``.
    """

    pool_shared_mse = True

    def __init__(self, job):
        self.job = job
        self.config = job.config
        self.corpus = job.corpus
        self.device = job.device
        self._feature_cache: dict[str, Features] = {}
        self._meg_allowed: dict[str, np.ndarray] = {}
        self._pooled: tuple[np.ndarray, np.ndarray] | None = None
        self._heldout: tuple[str, Any, np.ndarray] | None = None  # (fit id, features, seq -> row)
        self._enc_targets: tuple[Any, ...] | None = None  # full stage with pcs:K: (scores, W, mean, scale, b)

    # -- plan helpers -------------------------------------------------------------------
    def train_sequences(self, fit: FitSpec) -> np.ndarray:
        c = self.corpus
        train_run, _ = self.job.fold_masks(fit.fold)
        seqs = set()
        for pid in fit.fmri:
            seqs.update(np.flatnonzero((c.fmri[pid].row_of_seq >= 0) & train_run).tolist())
        if fit.meg:
            meg_seqs = c.meg_seq[train_run[c.meg_seq]]
            if not fit.fmri:
                meg_seqs = meg_seqs[:: int(self.config.setting("meg_stride"))]
            seqs.update(meg_seqs.tolist())
        return np.array(sorted(seqs), dtype=np.int64)

    def cost(self, fit: FitSpec) -> int:
        """Progress units of a fit (heads-only batch 1, full batch FULL_BATCH_COST)."""
        n = math.ceil(len(self.train_sequences(fit)) / self.config.batch_size)
        return sum(s.epochs * n * (1 if s.kind == "heads" else FULL_BATCH_COST) for s in fit.stages)

    def meg_allowed_rows(self, fold: str) -> np.ndarray:
        """Stimulus rows usable as MEG targets when ``fold`` is held out."""
        if fold not in self._meg_allowed:
            c, ds = self.corpus, self.job.dataset
            n = len(ds.stimulus)
            ok = np.zeros(n, dtype=bool)
            for t in c.meg.values():
                ok |= t.row_of_word >= 0
            ok &= ds.stimulus["run"].astype(str).to_numpy() != fold
            frac = float(self.config.setting("meg_fraction"))
            if frac < 1:
                rng = np.random.default_rng(derived_seed("meg-words", fold))
                ok &= rng.random(n) < frac
            self._meg_allowed[fold] = ok
        return self._meg_allowed[fold]

    # -- features of a frozen encoder -----------------------------------------------------
    def features(self, key: str, encoder, need_tokens: bool) -> Features:
        import torch

        from brainviz.models.brain_model import pool

        cached = self._feature_cache.get(key)
        if cached is not None and (cached.tok is not None or not need_tokens):
            return cached
        c = self.corpus
        encoder.to(self.device)
        was_training = encoder.training
        encoder.eval()
        cls_chunks, tok_chunks = [], []
        with torch.no_grad(), self.autocast():
            for start in range(0, len(c), 64):
                idx = np.arange(start, min(start + 64, len(c)))
                batch = c.tokens.batch(idx, self.device)
                hidden = encoder(**batch).last_hidden_state.float()
                cls_chunks.append(pool(hidden, batch["attention_mask"], self.job.pooling))
                if need_tokens:
                    for b, s in enumerate(idx):
                        tok_chunks.append(hidden[b, torch.as_tensor(c.fp_pos[s], device=hidden.device)])
        encoder.train(was_training)
        feats = Features(torch.cat(cls_chunks), torch.cat(tok_chunks) if need_tokens else None)
        if len(self._feature_cache) >= 2:
            self._feature_cache.pop(next(iter(self._feature_cache)))
        self._feature_cache[key] = feats
        return feats

    def autocast(self):
        import torch

        if self.device.startswith("cuda"):
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    # -- building a model ---------------------------------------------------------------
    def heads_for(self, fit: FitSpec):
        from brainviz.models.heads import BrainHeads, FMRIHead, MEGHead

        hidden = int(self.job.base_encoder.config.hidden_size)
        c = self.corpus
        fmri = meg = None
        if fit.fmri:
            fmri = FMRIHead(hidden, list(fit.fmri), [c.fmri[p].n_units for p in fit.fmri],
                            mode=self.job.head_mode if len(fit.fmri) > 1 else "split", dropout=self.config.dropout,
                            pooling=self.job.pooling)
        if fit.meg:
            meg = MEGHead(hidden, list(fit.meg), [c.meg[p].n_sensors for p in fit.meg], [c.meg[p].n_bins for p in fit.meg])
        return BrainHeads(fmri, meg)

    def start_encoder(self, fit: FitSpec):
        from brainviz.models.weights import load_encoder_weights

        encoder = copy.deepcopy(self.job.base_encoder)
        ref = self.job.encoder_ref(self.job.fits[fit.init]) if fit.init else None
        if ref is not None:
            load_encoder_weights(encoder, self.job.partial / "fits" / ref / "encoder" / "model.safetensors")
        return encoder

    def wrap_lora(self, model) -> None:
        from peft import LoraConfig, get_peft_model

        cfg = self.config
        targets = getattr(model.encoder, "lora_targets", LORA_TARGETS)  # issue 15: speech encoders name q/k/v/out_proj
        lora = LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout, target_modules=targets, bias="none")
        model.encoder = get_peft_model(model.encoder, lora)

    def optimizer(self, model, heads_only: bool):
        import torch

        cfg = self.config
        head_lr = float(cfg.setting("head_lr") or cfg.setting("lr"))
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
        lr = float(cfg.setting("lr"))
        param_groups = [
            {"params": ps, "lr": head_lr if part == "heads" else lr, "weight_decay": 0.0 if nd else cfg.weight_decay}
            for (part, nd), ps in sorted(groups.items())
        ]
        fused = self.device in ("cpu",) or self.device.startswith("cuda")
        try:
            return torch.optim.AdamW(param_groups, lr=lr, fused=fused)
        except (RuntimeError, TypeError):  # pragma: no cover - old torch / odd device
            return torch.optim.AdamW(param_groups, lr=lr)

    # -- one fit ------------------------------------------------------------------------
    def run_fit(self, fit: FitSpec) -> None:
        from brainviz.models.brain_model import BrainModel

        job = self.job
        state = job.state.load_meta(fit)
        model = BrainModel(self.start_encoder(fit), self.heads_for(fit)).to(self.device)
        dirty = False
        first_stage, first_epoch = 0, 0
        if state is not None:
            first_stage, first_epoch, dirty = state["stage"], state["epoch"], state["encoder_dirty"]
            if state["lora_wrapped"]:
                self.wrap_lora(model)
            job.state.load_weights(model, self.device)
        job.progress.emit(f"fit {fit.id}" + (f" (resumed at stage {first_stage + 1}, epoch {first_epoch})" if state else ""))
        train_seqs = self.train_sequences(fit)
        if len(train_seqs) == 0:
            raise LoopError(f"fit {fit.id}: no training examples")
        weights = self.task_weights(fit, train_seqs)
        self._pooled = self.pooled_targets(fit, model, weights)
        for si in range(first_stage, len(fit.stages)):
            start = first_epoch if si == first_stage else 0
            resume = state if (si == first_stage and start > 0) else None
            dirty = self.run_stage(fit, si, model, start, resume, train_seqs, weights, dirty)
        self.write_fit(fit, model, dirty)
        if job.world_size > 1:  # later fits may start from this fit's encoder, written by the main process
            from brainviz.tuning.distributed import barrier

            barrier()

    def task_weights(self, fit: FitSpec, train_seqs: np.ndarray) -> dict[str, float]:
        from brainviz.tuning.losses import task_weights

        c = self.corpus
        counts: dict[str, int] = {}
        for pid in fit.fmri:
            counts[f"fmri:{pid}"] = int(np.sum(c.fmri[pid].row_of_seq[train_seqs] >= 0))
        if fit.meg:
            allowed = self.meg_allowed_rows(fit.fold)
            rows = np.concatenate([c.fp_row[s] for s in train_seqs])
            rows = rows[allowed[rows]]
            for pid in fit.meg:
                counts[f"meg:{pid}"] = int(np.sum(c.meg[pid].row_of_word[rows] >= 0))
        return task_weights(counts, len(train_seqs))

    def pooled_targets(self, fit: FitSpec, model, weights: dict[str, float]) -> tuple[np.ndarray, np.ndarray] | None:
        """Shared head + MSE: the weighted mean target of each window over participants.

        For one shared map, ``sum_p w_p ||f - y_p||^2 = W ||f - ybar||^2 + const`` with
        ``ybar = sum_p w_p y_p / W``: fitting the weighted mean target gives exactly the same
        gradients at the cost of one participant (the logged loss omits the constant).
        Returns ``(ybar (n_seq, units), W (n_seq,))`` or None when it does not apply.
        """
        head = model.heads.fmri
        if not self.pool_shared_mse or head is None or not head.shared or self.config.loss != "mse" or len(fit.fmri) < 2:
            return None
        c = self.corpus
        n_seq, units = len(c), c.fmri[fit.fmri[0]].n_units
        total = np.zeros((n_seq, units), dtype=np.float64)
        wsum = np.zeros(n_seq, dtype=np.float64)
        for pid in fit.fmri:
            t = c.fmri[pid]
            w = weights.get(f"fmri:{pid}", 0.0)
            total[t.seq] += w * t.data
            wsum[t.seq] += w
        ok = wsum > 0
        total[ok] /= wsum[ok, None]
        return total.astype(np.float32), wsum.astype(np.float32)

    def encoder_targets(self, fit: FitSpec, train_seqs: np.ndarray, weights: dict[str, float]):
        """The ``pcs:K`` targets of a full stage (:mod:`brainviz.tuning._denoise`) as tensors, or
        None when the fit trains on every unit (``units``, or not a shared-head MSE fMRI fit)."""
        import torch

        from brainviz.tuning._denoise import encoder_targets, parse_encoder_targets

        k = parse_encoder_targets(str(self.config.setting("encoder_targets")))
        shuffle = bool(self.config.shuffle_encoder_targets)
        if shuffle and (k == 0 or self._pooled is None or fit.meg):
            raise LoopError(f"fit {fit.id}: shuffle_encoder_targets needs encoder targets pcs:K on a shared-head MSE "
                            "fit of several fMRI participants without MEG (the quick fine-tuned pair)")
        if k == 0:
            return None
        if self._pooled is None or fit.meg:
            self.job.progress.emit(f"fit {fit.id}: encoder targets pcs:{k} need a shared head, the MSE loss, several "
                                   "fMRI participants and no MEG; training on every unit instead")
            return None
        c = self.corpus
        ybar, wsum = self._pooled
        train = train_seqs[wsum[train_seqs] > 0]
        data, w = [], []
        for pid in fit.fmri:
            rows = c.fmri[pid].row_of_seq[train]
            if np.all(rows >= 0):  # participants who have every training window (same stimulus)
                data.append(c.fmri[pid].data[rows])
                w.append(weights.get(f"fmri:{pid}", 0.0))
        if len(data) < 2:
            return None
        key = f"init:{fit.init or 'base'}"
        if key not in self._feature_cache:  # resumed inside the full stage: the frozen encoder's features again
            self.features(key, self.start_encoder(fit), need_tokens=False)
        feats = self._feature_cache[key].cls.float().cpu().numpy()
        et = encoder_targets(ybar, data, w, feats, train, c.runs[train], k, float(self.config.reliable_fraction),
                             shuffle_seed=derived_seed(fit.seed, fit.id, "shuffle-encoder-targets") if shuffle else None)
        self.job.progress.emit(f"fit {fit.id}: " + et.describe())
        dev = self.device
        return tuple(torch.as_tensor(a, device=dev) for a in (et.scores, et.weight, et.mean, et.scale, et.intercept))

    def batch(self, fit: FitSpec, seqs: np.ndarray) -> Batch:
        c = self.corpus
        fmri = {}
        for pid in fit.fmri:
            ex = c.fmri[pid].row_of_seq[seqs]
            b = np.flatnonzero(ex >= 0)
            fmri[pid] = (b, ex[b])
        meg_b = meg_t = meg_flat = meg_rows = np.zeros(0, dtype=np.int64)
        meg = {}
        if fit.meg:
            allowed = self.meg_allowed_rows(fit.fold)
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
        return Batch(seqs, fmri, meg_b, meg_t, meg_flat, meg_rows, meg)

    def loss(self, model, out: dict, batch: Batch, weights: dict[str, float]):
        import torch

        from brainviz.tuning.losses import combine, get_loss

        loss_fn = get_loss(self.config.loss)
        c, dev = self.corpus, self.device
        per_target = {}
        if self._pooled is not None and batch.fmri_count:
            ybar, wsum = self._pooled
            b = np.flatnonzero(wsum[batch.seqs] > 0)
            bt = torch.as_tensor(b, device=dev)
            w = torch.as_tensor(wsum[batch.seqs[b]], device=dev)
            if self._enc_targets is not None and "cls" in out:  # pcs:K: the fixed read-out of the components
                scores, weight, mean, scale, intercept = self._enc_targets
                pred = ((out["cls"][bt].float() - mean) / scale) @ weight + intercept
                target = scores[torch.as_tensor(batch.seqs[b], device=dev)]
            else:
                pred, target = out["fmri"][bt], torch.as_tensor(ybar[batch.seqs[b]], device=dev)
            per_target["fmri:pooled"] = w * loss_fn(pred, target)
            weights = {**weights, "fmri:pooled": 1.0}
        for pid, (b, ex) in (batch.fmri.items() if self._pooled is None else ()):
            if len(b):
                pred = model.heads.fmri.block(out["fmri"][torch.as_tensor(b, device=dev)], pid)
                per_target[f"fmri:{pid}"] = loss_fn(pred, torch.as_tensor(c.fmri[pid].data[ex], device=dev))
        for pid, (m, ep) in batch.meg.items():
            if len(m):
                pred = model.heads.meg.block(out["meg"][torch.as_tensor(m, device=dev)], pid)
                per_target[f"meg:{pid}"] = loss_fn(pred, torch.as_tensor(c.meg[pid].data[ep], device=dev))
        return combine(per_target, weights, len(batch.seqs))

    def run_stage(self, fit, si, model, first_epoch, resume, train_seqs, weights, dirty) -> bool:
        import torch

        cfg, job = self.config, self.job
        stage = fit.stages[si]
        heads_only = stage.kind == "heads"
        if stage.epochs == 0:
            return dirty
        feats = None
        job.progress.set_stage(f"{fit.id}: {'head warm-up (encoder frozen)' if heads_only else 'full fine-tuning'}")
        if heads_only:
            key = f"{fit.id}:stage{si}" if dirty else f"init:{fit.init or 'base'}"
            feats = self.features(key, model.encoder, need_tokens=bool(fit.meg))
            model.encoder.requires_grad_(False)
            if stage.reset and first_epoch == 0 and model.heads.fmri is not None:
                # refit: the fMRI heads start from zero again, as vanilla's do
                with torch.no_grad():
                    for p in model.heads.fmri.parameters():
                        p.zero_()
        elif cfg.lora:
            if resume is None or not resume["lora_wrapped"]:
                self.wrap_lora(model)
                model.to(self.device)
        else:
            model.encoder.requires_grad_(True)
            if cfg.setting("freeze_embeddings"):
                emb = model.encoder.get_input_embeddings()
                emb.weight.requires_grad_(False)
        n_batches = math.ceil(len(train_seqs) / cfg.batch_size)
        total = stage.epochs * n_batches
        optimizer = self.optimizer(model, heads_only)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_multiplier(s, total, cfg.warmup))
        if resume is not None:
            job.state.load_optimizer(optimizer, scheduler, resume, self.device)
        dist = None if heads_only else self.distributed()  # Accelerate: grad_accum / mixed precision
        self._enc_targets = None if heads_only else self.encoder_targets(fit, train_seqs, weights)
        fwd = model
        if dist is not None:
            fwd, optimizer = dist.prepare(model, optimizer)
        for epoch in range(first_epoch, stage.epochs):
            self.run_epoch(fit, si, epoch, model, optimizer, scheduler, train_seqs, weights, feats, dist, fwd)
            last = epoch == stage.epochs - 1
            if last and not heads_only:
                if cfg.lora:
                    model.encoder = model.encoder.merge_and_unload()
                dirty = True
            if last:
                job.state.save(fit, si + 1, 0, model, None, None, dirty, lora_wrapped=False)
            else:
                job.state.save(fit, si, epoch + 1, model, optimizer, scheduler, dirty, lora_wrapped=(cfg.lora and not heads_only))
        if dist is not None:
            dist.unwrap(fwd)  # also removes Accelerate's autocast wrapper of the model's forward
        self._enc_targets = None
        model.encoder.requires_grad_(False)
        return dirty

    def distributed(self):
        """The Accelerate wrapper (:mod:`brainviz.tuning.distributed`) when the config asks for
        gradient accumulation or mixed precision in full stages; None: the plain loop below."""
        from brainviz.tuning.distributed import Distributed, DistributedSettings

        settings = DistributedSettings.from_config(self.config)
        if settings.grad_accum == 1 and settings.mixed_precision == "no" and self.job.world_size == 1:
            return None
        return Distributed(settings, cpu=not self.device.startswith("cuda"))

    def accumulated_step(self, fit, seqs, dist, fwd, model, optimizer, scheduler, weights, message) -> list[float]:
        """One optimizer step over the global batch ``seqs`` in ``dist.grad_accum`` micro-batches
        (the summed gradient is the global batch's mean gradient); returns the micro-batch losses."""
        import torch

        losses = []
        for rows, counted in dist.micro_batches(seqs):
            with dist.accumulate(fwd):
                batch = self.batch(fit, rows) if len(rows) else None
                if batch is not None and (batch.fmri_count or batch.meg_count):
                    wf = pos = None
                    if fit.meg:
                        wf = torch.as_tensor(self.corpus.word_features[batch.meg_rows], device=self.device)
                        pos = torch.as_tensor(np.c_[batch.meg_b, batch.meg_t], device=self.device)
                    with dist.autocast():
                        out = fwd(self.corpus.tokens.batch(rows, self.device), pos, wf)
                    loss = self.loss(model, out, batch, weights)
                    if not torch.isfinite(loss):
                        raise LoopError(f"{message}: the loss became {loss.item()} (learning rate too high?)")
                    dist.backward(loss, rows=counted, total=len(seqs))
                    losses.append(float(loss.detach()))
                if dist.sync_gradients and losses:  # no target in the whole batch: no step, as below
                    optimizer.step()
                    scheduler.step()
                optimizer.zero_grad(set_to_none=True)
        return losses

    def run_epoch(self, fit, si, epoch, model, optimizer, scheduler, train_seqs, weights, feats, dist=None,
                  fwd=None) -> None:
        import torch

        cfg, progress = self.config, self.job.progress
        # a refit stage draws vanilla's data order and dropout (vanilla's heads are stage 0)
        seed = derived_seed(fit.seed, fit.id, 0 if fit.stages[si].reset else si, epoch)
        order = np.random.default_rng(seed).permutation(train_seqs)
        devices = [torch.cuda.current_device()] if self.device.startswith("cuda") else []
        stage = fit.stages[si]
        unit = 1 if stage.kind == "heads" else FULL_BATCH_COST
        message = f"{fit.id} {stage.kind} epoch {epoch + 1}/{stage.epochs}"
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(seed)
            model.train()
            if feats is not None:
                model.encoder.eval()
            for start in range(0, len(order), cfg.batch_size):
                seqs = order[start : start + cfg.batch_size]
                if dist is not None:  # full stage through Accelerate (see accumulated_step)
                    losses = self.accumulated_step(fit, seqs, dist, fwd, model, optimizer, scheduler, weights, message)
                    progress.step(unit, f"{message} loss {np.mean(losses):.4f}" if losses else "")
                    continue
                batch = self.batch(fit, seqs)
                if not batch.fmri_count and not batch.meg_count:
                    progress.step(unit)
                    continue  # no target in this batch (possible with sparse MEG words)
                wf = None
                if fit.meg:
                    wf = torch.as_tensor(self.corpus.word_features[batch.meg_rows], device=self.device)
                if feats is not None:
                    tok = feats.tok[torch.as_tensor(batch.meg_flat, device=self.device)] if fit.meg else None
                    out = model.heads_forward(feats.cls[torch.as_tensor(seqs, device=self.device)], tok, wf)
                else:
                    pos = torch.as_tensor(np.c_[batch.meg_b, batch.meg_t], device=self.device) if fit.meg else None
                    with self.autocast():
                        out = model(self.corpus.tokens.batch(seqs, self.device), pos, wf)
                loss = self.loss(model, out, batch, weights)
                if not torch.isfinite(loss):
                    raise LoopError(f"{message}: the loss became {loss.item()} (learning rate too high?)")
                loss.backward()
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad(set_to_none=True)
                progress.step(unit, f"{message} loss {loss.item():.4f}")
        progress.step(0, message, force=True)

    # -- outputs ------------------------------------------------------------------------
    def write_fit(self, fit: FitSpec, model, dirty: bool) -> None:
        """Round the weights to their stored precision, store them, then predict held-out runs."""
        import torch

        from brainviz.models.weights import relative_change, round_encoder_delta, save_encoder_delta

        job = self.job
        if not job.is_main:  # multi-process launch: the main process stores weights and predictions
            return
        folder = job.partial / "fits" / fit.id
        folder.mkdir(parents=True, exist_ok=True)
        info: dict[str, Any] = {"fit": fit.id}
        if dirty:
            model.to("cpu")
            deltas = round_encoder_delta(model.encoder, job.base_state)
            save_encoder_delta(folder / "encoder" / "model.safetensors", deltas, job.base_state)
            info["encoder_change"] = relative_change(model.encoder, job.base_state, trainable=set(deltas))
            info["encoder_tensors_changed"] = len(deltas)
            model.to(self.device)
        model.heads.round_to(torch.float16)
        model.heads.save(folder / "heads.safetensors", dtype=torch.float16)
        for pid in fit.predicts:
            preds = self.predict(fit, model, pid, dirty)
            t = self.corpus.fmri[pid]
            _, test_seq = job.fold_masks(fit.fold)
            test = np.flatnonzero(test_seq[t.seq])
            target = t.real[test]
            r = pearson_r(preds, target).astype(np.float32)
            info.setdefault("heldout_r", {})[pid] = float(np.nanmean(r))
            job.write_fold_predictions(fit, pid, preds, t.tr_index[test].astype(np.int64), t.runs[test].astype(str), r)
        write_json(folder / FIT_INFO, info)

    def predict(self, fit: FitSpec, model, pid: str, dirty: bool) -> np.ndarray:
        import torch

        c = self.corpus
        t = c.fmri[pid]
        _, test_seq = self.job.fold_masks(fit.fold)
        seqs = t.seq[test_seq[t.seq]]
        model.eval()
        key = f"init:{fit.init or 'base'}"
        with torch.no_grad():
            if not dirty and key in self._feature_cache:
                feats = self._feature_cache[key].cls[torch.as_tensor(seqs, device=self.device)]
            else:  # the tuned encoder's features of the fold's held-out windows, once for all participants
                if self._heldout is None or self._heldout[0] != fit.id:
                    all_seqs = np.flatnonzero(test_seq)
                    chunks = []
                    for start in range(0, len(all_seqs), 64):
                        batch = c.tokens.batch(all_seqs[start : start + 64], self.device)
                        with self.autocast():
                            hidden = model.encode(batch)
                        chunks.append(model.pooled(hidden.float(), batch))
                    pos = np.full(len(c), -1, dtype=np.int64)
                    pos[all_seqs] = np.arange(len(all_seqs))
                    self._heldout = (fit.id, torch.cat(chunks), pos)
                feats = self._heldout[1][torch.as_tensor(self._heldout[2][seqs], device=self.device)]
            out = model.heads.fmri(feats)
        return model.heads.fmri.block(out, pid).float().cpu().numpy()
