"""The brain-tuning engine: run a :class:`TrainConfig` and write a checkpoint.

A :class:`TrainJob` checks its inputs, builds the corpus (every distinct word window once,
shared by all participants) and the plan of fits (:mod:`brainviz.tuning.variants`), then

- trains each fit with :class:`~brainviz.tuning._loop.FitTrainer` (stages, epochs, batches,
  losses; held-out predictions of every fold);
- keeps the resume state with :class:`~brainviz.tuning._state.ResumeState` (after every epoch;
  an injected ``on_epoch_saved`` callback sees each saved state);
- writes the card and publishes the checkpoint with :func:`~brainviz.tuning._card.write_checkpoint`.

Resumable: the job works in ``<out>.partial/``. Run the same command again after an
interruption (even ``kill -9``) and it continues from the last completed epoch, ending with
the same predictions as an uninterrupted run. When everything is done the folder is moved to
``<out>`` in one rename.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np

from brainviz import paths
from brainviz._io import file_lock
from brainviz.data.dataset import Dataset, load_dataset
from brainviz.errors import BrainvizError, OutputExistsError
from brainviz.evaluation.encoding import pearson_r
from brainviz.tuning._card import dataset_hash, fold_prediction_path, write_checkpoint
from brainviz.tuning._loop import LORA_TARGETS, FitTrainer, LoopError, lr_multiplier
from brainviz.tuning._progress import Progress, ProgressFn
from brainviz.tuning._state import PROGRESS, EpochHook, EpochSaved, ResumeState
from brainviz.tuning.config import TrainConfig
from brainviz.tuning.variants import MEG_VARIANTS, FitSpec, build_plan

PARTIAL_SUFFIX = ".partial"
RIDGE_ALPHA = 1.0  # per example, on z-scored features (participant-transfer source choice)

__all__ = ["TrainJob", "TrainError", "train", "resolve_out", "lr_multiplier", "dataset_hash", "EpochSaved",
           "LORA_TARGETS", "PARTIAL_SUFFIX"]


class TrainError(BrainvizError, ValueError):
    """A training job cannot run as configured (message says why)."""


def resolve_out(out: str | os.PathLike) -> Path:
    """``models/NAME`` as given, or a bare ``NAME`` inside the checkpoint store."""
    p = Path(out)
    return p if (p.is_absolute() or len(p.parts) > 1) else paths.models_dir() / p


def _device(name: str) -> str:
    if name != "auto":
        return name
    from brainviz.backend import default_device

    return default_device()


class TrainJob:
    """One training job; :meth:`run` returns the checkpoint folder.

    Everything that can be checked is checked in the constructor, before anything is
    written: unknown participants or runs, MEG variants without MEG, an existing output.

    Parameters
    ----------
    config : TrainConfig
    progress, progress_file, bar :
        See :func:`train`.
    dataset : Dataset, optional
        Already loaded dataset.
    on_epoch_saved : callable, optional
        Called with an :class:`~brainviz.tuning._state.EpochSaved` after every resume state
        written to disk.
    """

    def __init__(
        self,
        config: TrainConfig,
        progress: ProgressFn | None = None,
        progress_file: str | os.PathLike | None = None,
        bar: bool | None = None,
        dataset: Dataset | None = None,
        on_epoch_saved: EpochHook | None = None,
    ):
        self.config = config
        self.out = resolve_out(config.out)
        self.partial = self.out.with_name(self.out.name + PARTIAL_SUFFIX)
        self.progress_fn = progress
        self.progress_file = progress_file
        self.bar = bar
        self.on_epoch_saved = on_epoch_saved
        from brainviz.tuning.distributed import launched_processes

        # a multi-process launch (accelerate launch / torchrun): all processes train, the main one writes
        self.rank, self.local_rank, self.world_size = launched_processes()
        self.is_main = self.rank == 0
        if not self.is_main:
            self.progress_fn, self.progress_file, self.bar, self.on_epoch_saved = None, None, False, None
        if self.out.exists() and not config.overwrite:
            raise OutputExistsError("already exists (choose another --out or remove it)", file=self.out)
        self.pre = config.preprocess_config()
        self.dataset = dataset if dataset is not None else load_dataset(config.dataset, check_values=True)  # NaN/inf: a clear error before any work
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
            self.units = _load_roi_mask(cfg.roi_mask, next(iter(n_units)), ds)
        equal_units = len({ds.fmri[p].n_units for p in self.participants}) == 1
        self.head_mode = str(cfg.setting("head_mode"))
        if self.head_mode != "split" and not equal_units:
            if cfg.head_mode is not None:
                raise TrainError(f"--head-mode {self.head_mode} needs participants in one space (equal unit counts)")
            self.head_mode = "split"  # the preset's shared head needs one space: fall back
        self.pooling = str(cfg.setting("pooling"))
        # cross-validation folds from the shared splitter (brainviz.data.splits): leave-one-run-out
        # with >= 2 runs, contiguous blocks with buffers on a single run (PreprocessConfig.cv)
        if self.pre.cv in ("auto", "runs") and len(ds.runs) >= 2:
            self.cv_kind, self._cv, names = "runs", {}, list(ds.runs)
        else:
            from brainviz.data.preprocess import fmri_examples
            from brainviz.data.preprocess import folds as cv_folds

            ex0 = fmri_examples(ds, self.fmri_all[0], self.pre)
            self._cv = {f.name: f for f in cv_folds(ex0, self.pre)}
            self.cv_kind = next(iter(self._cv.values())).kind
            names = list(self._cv)
        if cfg.folds:
            bad = [f for f in cfg.folds if f not in names]
            if bad:
                what = "held-out runs" if self.cv_kind == "runs" else f"contiguous blocks (cv={self.pre.cv})"
                raise TrainError(f"unknown fold(s) {bad}: folds are {what}; this dataset's are {names}")
        self.folds = list(cfg.folds) or names
        if self.cv_kind != "runs" and self.meg_participants:
            raise TrainError(f"variant {cfg.variant!r} uses MEG, which needs leave-one-run-out folds (cv=runs); "
                             f"this dataset gives {self.cv_kind} folds")
        for pid in self.fmri_all if self.cv_kind == "runs" else ():
            rec_runs = [r.name for r in ds.fmri[pid].runs]
            missing = [f for f in self.folds if f not in rec_runs]
            if missing:
                raise TrainError(f"participant {pid!r} has no fMRI in held-out run(s) {missing}")
        if cfg.modality == "audio":  # issue 15: speech brain-tuning checks (brainviz/tuning/speech.py)
            from brainviz.tuning.speech import check_audio_job

            check_audio_job(self)
        self.job_key = cfg.job_key()

    # -- folds and encoders -------------------------------------------------------------
    def fold_masks(self, fold: str) -> tuple[np.ndarray, np.ndarray]:
        """Boolean masks over the corpus sequences: (training, held-out) of ``fold``."""
        if fold not in self._fold_masks:
            if self.cv_kind == "runs":
                runs = self.corpus.runs
                self._fold_masks[fold] = (runs != fold, runs == fold)
            else:  # blocks of the first participant's rows, mapped to their windows (shared by all)
                f, t0 = self._cv[fold], self.corpus.fmri[self.fmri_all[0]]
                train, test = np.zeros(len(self.corpus), bool), np.zeros(len(self.corpus), bool)
                train[t0.seq[f.train]] = True
                test[t0.seq[f.test]] = True
                self._fold_masks[fold] = (train & ~test, test)
        return self._fold_masks[fold]

    def encoder_ref(self, fit: FitSpec) -> str | None:
        """Fit id whose saved encoder ``fit`` ends with (None: the base encoder)."""
        if fit.tunes_encoder:
            return fit.id
        return self.encoder_ref(self.fits[fit.init]) if fit.init else None

    def write_fold_predictions(self, fit: FitSpec, pid: str, preds, tr_index, runs, r) -> None:
        from brainviz.models.weights import save_predictions

        save_predictions(fold_prediction_path(self.partial, fit.seed, pid, fit.fold), preds, link_cache=self._links,
                         dtype=self.config.setting("predictions_dtype"),
                         tr_index=tr_index, run=runs, r=r)

    # -- main ---------------------------------------------------------------------------
    def run(self) -> Path:
        from brainviz.models.encoder import load_encoder

        cfg = self.config
        t_start = time.monotonic()
        self.device = _device(cfg.device)
        if self.world_size > 1:
            from brainviz.tuning.distributed import barrier, init_processes

            if self.device.startswith("cuda"):
                self.device = f"cuda:{self.local_rank}"
            init_processes(cpu=not self.device.startswith("cuda"))
        self.state = ResumeState(self.partial, self.job_key, self.on_epoch_saved, writer=self.is_main)
        progress = self.state.read_progress()
        if progress is not None and progress.get("job_key") != self.job_key:
            raise TrainError(f"{self.partial}: left by a job with a different configuration; remove it to start over")
        if progress is None and self.partial.exists():
            raise TrainError(f"{self.partial}: exists but has no {PROGRESS}; remove it to start over")
        if self.world_size > 1:
            barrier()  # every process has read the resume state before the main one writes

        # stage lines before the first batch, so a progress file / the app shows what is happening
        # while the encoder loads and the windows are built (the bar itself starts with training)
        early = Progress(0, 0, self.progress_fn, self.progress_file, False, started=t_start)
        early.set_stage("loading the encoder")
        early.emit(f"loading the encoder ({cfg.base})", fraction=0.0)
        if cfg.modality == "audio":  # issue 15: a speech encoder reading the dataset's audio
            from brainviz.tuning.speech import load_speech_base

            base_model, self.tokenizer = load_speech_base(cfg), None
        else:
            base_model, self.tokenizer = load_encoder(cfg.base, device="cpu")
        self.base_encoder = base_model
        self.base_state = {k: v.detach().clone() for k, v in base_model.state_dict().items()}
        ds = self.dataset
        if self.meg_participants:
            from brainviz.tuning.data import annotated

            ds = annotated(ds)
        from brainviz.tuning.data import build_corpus

        early.set_stage("building windows and targets")
        early.emit(f"building windows and targets ({len(self.fmri_all)} fMRI, {len(self.meg_participants)} MEG participants)",
                   fraction=0.0)
        early.close()
        if cfg.modality == "audio":  # issue 15: audio windows instead of tokenised word windows
            from brainviz.tuning.speech import build_audio_corpus

            self.corpus = build_audio_corpus(ds, self.fmri_all, self.pre, int(cfg.audio_chunks), units=self.units,
                                             shuffle_seed=0 if cfg.shuffle_targets else None)
        else:
            self.corpus = build_corpus(
                ds, self.fmri_all, self.meg_participants, self.tokenizer, self.pre, int(cfg.setting("max_length")),
                units=self.units, shuffle_seed=0 if cfg.shuffle_targets else None,
            )
        self._fold_masks: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        self._links: dict[str, str] = {}
        self.stimulus_info = None
        if cfg.variant == "stimulus-tuned":  # issue 15: per-fold stimulus targets of the encoder (tuning/speech.py)
            from brainviz.tuning.speech import add_stimulus_targets

            self.stimulus_info = add_stimulus_targets(self)
        for pid in self.fmri_all:
            t = self.corpus.fmri[pid]
            for fold in self.folds:
                train_seq, test_seq = self.fold_masks(fold)
                if not np.any(test_seq[t.seq]):
                    raise TrainError(f"participant {pid!r} has no examples left in held-out fold {fold!r} after preprocessing")
                if not np.any(train_seq[t.seq]):
                    raise TrainError(f"participant {pid!r} has no training examples outside fold {fold!r}")

        self.progress = Progress(0, 0, self.progress_fn, self.progress_file, False)
        self.trainer = FitTrainer(self)
        sources = progress.get("sources") if progress else None
        if cfg.variant == "participant-transfer" and sources is None:
            sources = self._choose_sources()
        if progress is None:  # everything checked: from here on the job leaves a resumable folder
            progress = {"job_key": self.job_key, "done": [], "config": cfg.resolved(), "sources": sources,
                        "train_seconds": 0.0}
            if self.is_main:
                self.partial.mkdir(parents=True)
            self.state.write_progress(progress)
        self.plan = build_plan(cfg.variant, cfg.stage_epochs(), self.participants, self.meg_participants,
                               self.folds, list(cfg.seeds), sources, joint_meg=cfg.meg,
                               together=bool(cfg.setting("together")))
        self.fits = {f.id: f for f in self.plan}

        totals = {f.id: self.trainer.cost(f) for f in self.plan}
        done_units = sum(totals[i] for i in progress["done"])
        self.progress.close()
        self.progress = Progress(sum(totals.values()), done_units, self.progress_fn, self.progress_file, self.bar,
                                 started=t_start)
        try:
            self.progress.emit(f"training {cfg.variant} ({len(self.plan)} fits)")
            for fit in self.plan:
                if fit.id in progress["done"]:
                    continue
                t_fit = time.monotonic()
                try:
                    self.trainer.run_fit(fit)
                except LoopError as exc:
                    raise TrainError(str(exc)) from None
                progress["done"].append(fit.id)
                progress["train_seconds"] = float(progress.get("train_seconds") or 0.0) + time.monotonic() - t_fit
                self.state.write_progress(progress)
                self.state.clear()
            self.progress.set_stage("writing checkpoint")
            self.progress.emit("writing checkpoint", fraction=1.0)
            if self.is_main:
                write_checkpoint(self, progress)
            if self.world_size > 1:
                from brainviz.tuning.distributed import barrier

                barrier()  # the others return once the checkpoint exists
        finally:
            self.progress.close()
        self.progress.emit("done", fraction=1.0)
        return self.out

    # -- participant-transfer source ------------------------------------------------------
    def _choose_sources(self) -> dict[str, str]:
        """Most predictable candidate per fold: ridge on frozen features, inner leave-one-run-out."""
        if len(self.candidates) == 1:
            return {f: self.candidates[0] for f in self.folds}
        feats = self.trainer.features("init:base", self.base_encoder, need_tokens=False).cls.float().cpu().numpy()
        out = {}
        for fold in self.folds:
            scores = {}
            for pid in self.candidates:
                t = self.corpus.fmri[pid]
                keep = self.fold_masks(fold)[0][t.seq]
                scores[pid] = _inner_ridge_score(feats[t.seq[keep]], t.data[keep], t.runs[keep])
            out[fold] = max(scores, key=lambda p: (scores[p], p))
            self.progress.emit(f"fold {fold}: source participant {out[fold]} (inner ridge r = {scores[out[fold]]:.3f})")
        return out


# --------------------------------------------------------------------------------------
# module-level helpers
# --------------------------------------------------------------------------------------


def _load_roi_mask(spec: str, n_units: int, dataset: Dataset | None = None) -> np.ndarray:
    """Units selected by ``--roi-mask``: a ``.npy`` file, ``planted`` (simulated data: the
    ground truth's planted regions) or ``language:DIR`` (the language parcels atlas fetched to
    DIR with ``python -m brainviz fetch atlas language --dest DIR``)."""
    spec = str(spec)
    if spec.startswith("glasser:"):  # issue 15: glasser:PATH[:SET] (brainviz/tuning/data.py)
        from brainviz.tuning.data import glasser_roi

        return glasser_roi(spec, n_units).units
    if spec == "planted":
        root = Path(dataset.path) if dataset is not None and dataset.path else None
        path = root / "ground_truth" / "planted_mask.npy" if root else None
        if path is None or not path.is_file():
            raise TrainError("--roi-mask planted: needs a simulated dataset folder with ground_truth/planted_mask.npy")
        return _load_roi_mask(str(path), n_units)
    if spec.startswith("language"):
        from brainviz.data.atlases import load_atlas, roi_mask

        root = spec.split(":", 1)[1] if ":" in spec else None
        try:
            mask = roi_mask(load_atlas("language", root), "language-parcels")
        except (ValueError, OSError) as exc:
            raise TrainError(f"--roi-mask {spec}: {exc}") from None
        if mask.shape != (n_units,):
            raise TrainError(f"--roi-mask {spec}: the atlas has {mask.shape[0]} vertices, the data {n_units} units")
        return np.flatnonzero(mask).astype(np.int64)
    path = spec
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
    on_epoch_saved: EpochHook | None = None,
) -> Path:
    """Run a training job (resuming ``<out>.partial`` if present); return the checkpoint folder.

    Parameters
    ----------
    config : TrainConfig
    progress : callable ``(fraction, message)``, optional
        Called as training advances (at most twice a second, and at every epoch end).
    progress_file : path, optional
        Also append ``{"fraction", "message", "stage", "elapsed_s", "eta_s"}`` JSON lines.
    bar : bool or None
        Show a tqdm bar (None: only on a terminal).
    dataset : Dataset, optional
        Already loaded dataset (``config.dataset`` is still recorded in the card).
    on_epoch_saved : callable, optional
        Called with an :class:`EpochSaved` (fit id, stage, epoch, count) each time a resume
        state is on disk, e.g. to report or to test an interruption at a known point.
    """
    job = TrainJob(config, progress, progress_file, bar, dataset, on_epoch_saved=on_epoch_saved)
    if not job.is_main:  # a multi-process launch: the main process holds the lock and writes
        return job.run()
    with file_lock(job.partial, what="training into this checkpoint"):  # two jobs never share <out>.partial
        return job.run()

