"""``python -m brainviz train``: brain-tune an encoder (one of the five variants)."""

from __future__ import annotations

import argparse

from brainviz.tuning.losses import LOSSES
from brainviz.tuning.variants import PRESETS, STAGES, VARIANTS

EPILOG = "stages per variant (for --epochs): " + "; ".join(f"{v}: {', '.join(s)}" for v, s in STAGES.items())


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "train", help="brain-tune an encoder on fMRI (+ MEG); resumable",
        description="Brain-tune an encoder (Schwartz, Toneva & Wehbe 2019 variants). Re-running the same "
        "command after an interruption resumes from the last completed epoch.",
        epilog=EPILOG,
    )
    p.add_argument("--dataset", required=True, help="dataset folder")
    p.add_argument("--variant", required=True, choices=VARIANTS)
    p.add_argument("--out", required=True, help="checkpoint folder to create (models/NAME, or NAME in the store)")
    p.add_argument("--base", default="pretrained", help="encoder to start from (default: pretrained)")
    p.add_argument("--participants", nargs="+", default=(), metavar="ID", help="fMRI participants (default: all)")
    p.add_argument("--folds", nargs="+", default=(), metavar="RUN", help="runs to hold out, one fold each (default: all)")
    p.add_argument("--seeds", nargs="+", type=int, default=(0,), metavar="S")
    p.add_argument("--preset", choices=PRESETS, default="paper", help="paper schedules or the CPU-sized quick ones")
    p.add_argument("--loss", choices=LOSSES, default="mse")
    p.add_argument("--lora", action="store_true", help="LoRA (r 8, alpha 32, dropout 0.1) instead of full fine-tuning")
    p.add_argument("--epochs", nargs="+", type=int, default=(), metavar="N", help="override the epochs of every stage")
    p.add_argument("--lr", type=float, default=None, help="encoder learning rate (default: preset; paper 5e-5)")
    p.add_argument("--head-lr", type=float, default=None, help="learning rate of the heads (default: preset)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--max-length", type=int, default=None, help="max tokens per window (default: preset)")
    p.add_argument("--head-mode", choices=("split", "shared", "shared+split"), default=None,
                   help="several fMRI participants: one column block each (split), one shared block, or shared + "
                        "participant-specific blocks (default: preset; paper split, quick shared)")
    p.add_argument("--pooling", choices=("cls", "mean"), default=None,
                   help="head input: [CLS] hidden state (the paper) or mean over tokens (default: preset)")
    p.add_argument("--together", dest="together", action="store_true", default=None,
                   help="vanilla/fine-tuned: all participants in one fit (quick's default)")
    p.add_argument("--per-participant", dest="together", action="store_false",
                   help="vanilla/fine-tuned: one fit per participant (paper's default)")
    p.add_argument("--keep-weights", choices=("all", "first"), default=None,
                   help="keep the weights of every fit, or of each seed's first fold only (default: preset)")
    p.add_argument("--predictions-dtype", choices=("float16", "float32"), default=None,
                   help="held-out predictions on disk (default: preset; paper float32, quick float16)")
    p.add_argument("--encoder-targets", default=None, metavar="units|pcs:K",
                   help="what full stages of a shared-head fit train the encoder on: every unit ('units', paper) or "
                        "the top K principal components of the mean target over the most reliable units, heads "
                        "refitted afterwards ('pcs:K'; quick: pcs:8)")
    p.add_argument("--reliable-fraction", type=float, default=0.05, metavar="F",
                   help="pcs:K: share of units kept as the most reliable (training windows only; default 0.05)")
    p.add_argument("--no-meg", dest="meg", action="store_false", help="joint: fMRI participants only")
    p.add_argument("--source", default="auto", help="participant-transfer: participant to tune on (default: most predictable)")
    p.add_argument("--roi-mask", default=None, metavar="FILE.npy|planted|language:DIR|glasser:PATH[:SET]",
                   help="units to predict: a boolean mask / indices file, 'planted' (simulated ground truth), "
                        "'language:DIR' (language parcels atlas fetched to DIR) or 'glasser:PATH[:SET]' (a Glasser "
                        "fsaverage5 atlas file/folder; SET late-language (default) or early-auditory)")
    p.add_argument("--shuffle-targets", action="store_true", help="null control: shuffle fMRI in time within run")
    p.add_argument("--shuffle-encoder-targets", action="store_true",
                   help="null control of the encoder alone: pcs:K components permuted in time within run, heads fitted "
                        "on the real targets")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    p.add_argument("--mixed-precision", choices=("no", "bf16", "fp16"), default="no",
                   help="autocast of full fine-tuning stages through HF Accelerate (bf16 on GPUs; default no)")
    p.add_argument("--grad-accum", type=int, default=1,
                   help="split each batch into N micro-batches with the same gradient (less memory; default 1)")
    p.add_argument("--overwrite", action="store_true", help="replace --out once the new checkpoint is complete")
    # issue 15: speech brain-tuning (brainviz/tuning/speech.py)
    p.add_argument("--modality", choices=("text", "audio"), default="text",
                   help="text: word windows through a text encoder (default); audio: the dataset's audio through a "
                        "speech encoder (--base: a wav2vec2 / HuBERT / Whisper folder or hub id)")
    p.add_argument("--audio-chunks", type=int, default=5, metavar="N",
                   help="audio: TR-long chunks of audio before each TR (FIR delays on the raw audio; default 5)")
    p.add_argument("--stimulus-pcs", type=int, default=16, metavar="K",
                   help="stimulus-tuned: principal components of the MiniLM layer among the stimulus targets "
                        "(default 16; 0 = low-level bands only)")
    p.add_argument("--stimulus-layer", type=int, default=None, metavar="L",
                   help="stimulus-tuned: MiniLM hidden state of those components (default: the middle one)")
    p.add_argument("--progress-file", default=None, metavar="PATH", help="append JSON lines {fraction, message}")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    from brainviz.data._cli_preprocess import add_preprocess_arguments

    add_preprocess_arguments(p)
    p.set_defaults(func=run)


def config_from_args(args: argparse.Namespace):
    from brainviz.data._cli_preprocess import preprocess_overrides
    from brainviz.tuning.config import TrainConfig

    return TrainConfig(
        dataset=args.dataset, variant=args.variant, out=args.out, base=args.base,
        participants=tuple(args.participants), folds=tuple(args.folds), seeds=tuple(args.seeds),
        preset=args.preset, loss=args.loss, lora=args.lora, epochs=tuple(args.epochs), lr=args.lr,
        head_lr=args.head_lr, batch_size=args.batch_size, max_length=args.max_length,
        head_mode=args.head_mode, pooling=args.pooling, together=args.together, keep_weights=args.keep_weights,
        predictions_dtype=args.predictions_dtype,
        encoder_targets=args.encoder_targets, reliable_fraction=args.reliable_fraction,
        meg=args.meg, source=args.source, roi_mask=args.roi_mask,
        shuffle_targets=args.shuffle_targets, shuffle_encoder_targets=args.shuffle_encoder_targets, device=args.device, mixed_precision=args.mixed_precision,
        grad_accum=args.grad_accum, overwrite=args.overwrite,
        modality=args.modality, audio_chunks=args.audio_chunks,  # issue 15
        stimulus_pcs=args.stimulus_pcs, stimulus_layer=args.stimulus_layer,  # issue 15
        preprocess=preprocess_overrides(args),
    )


def run(args: argparse.Namespace) -> int:
    from brainviz.tuning.train import train

    config = config_from_args(args)
    if args.quiet:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
    out = train(config, progress_file=args.progress_file, bar=False if args.quiet else None)
    print(out)
    return 0
