"""``python -m brainviz import FORMAT SRC --out D``: real corpora -> dataset folders."""

from __future__ import annotations

import argparse
import json
import sys

_HELP = {
    "harry-potter-mat": "Wehbe et al. 2014 subject_N.mat files (a folder or one file)",
    "harry-potter-npy": "preprocessed layout: fMRI/data_subject_X.npy + time/runs/words .npy files",
    "harry-potter-meg": "MEG .npz with stimuli, blocks, data (subjects x words x sensors x bins), subjects",
    "narratives": "Narratives BIDS root (OpenNeuro ds002345) with derivatives and Gentle transcripts",
    "lebel": "LeBel et al. 2023 (OpenNeuro ds003020) root or its derivative/ folder",
    "generic": "a words TSV (or a folder with words.tsv) + one array file per participant",
}


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "import", help="import a real corpus into a brainviz dataset folder",
        description="Import a real corpus into a brainviz dataset folder (see docs/formats.md).",
    )
    fmts = p.add_subparsers(dest="format", metavar="FORMAT")
    fmts.required = True
    for fmt, text in _HELP.items():
        f = fmts.add_parser(fmt, help=text, description=text)
        f.add_argument("src", help="source file or folder")
        f.add_argument("--out", required=True, help="output folder (a dataset, or one dataset per participant)")
        f.add_argument("--overwrite", action="store_true", help="replace an existing output folder")
        f.add_argument("--name", help="dataset name (default: the format's)")
        if fmt != "generic":
            f.add_argument("--participants", nargs="+", metavar="P", help="only these participants")
        _format_options(fmt, f)
        f.set_defaults(func=run)
    return p


def _format_options(fmt: str, f: argparse.ArgumentParser) -> None:
    if fmt == "harry-potter-mat":
        f.add_argument("--layout", choices=("per-participant", "intersect"), default="per-participant",
                       help="one dataset per subject (default; each has its own voxel set) or one dataset on the common voxels")
    elif fmt == "harry-potter-npy":
        f.add_argument("--meg", help="also attach this MEG .npz (all its participants) to every dataset")
        f.add_argument("--meg-participants", nargs="+", metavar="P", help="only these MEG participants")
        f.add_argument("--bin-width", type=float, default=0.025, help="MEG time-bin width in s (default 0.025)")
    elif fmt == "harry-potter-meg":
        f.add_argument("--bin-width", type=float, default=0.025, help="time-bin width in s (default 0.025)")
        f.add_argument("--word-duration", type=float, default=0.5, help="RSVP s per token for reconstructed onsets (default 0.5)")
    elif fmt in ("narratives", "lebel"):
        f.add_argument("--stories", nargs="+", metavar="S", help="only these stories")
        stim = "SRC/stimuli/<stim_file of events.tsv>" if fmt == "narratives" else "SRC/stimuli/<story>.wav"
        f.add_argument("--no-audio", action="store_true",
                       help=f"do not attach the stimulus audio (default: attach {stim} when present, note when absent)")
        f.add_argument("--audio-dir", help="folder holding the stimulus audio (default SRC/stimuli)")
    if fmt == "narratives":
        f.add_argument("--source", choices=("auto", "fsaverage6", "MNI"), default="auto",
                       help="BOLD derivative space to read (default auto: fsaverage6 when present)")
        f.add_argument("--derivative", default="auto", choices=("auto", "afni-smooth", "afni-nosmooth", "fmriprep", "raw"),
                       help="pipeline folder under derivatives/ (default: first found)")
        f.add_argument("--word-clock", choices=("audio", "story"), default="audio",
                       help="what the transcript times count from: the audio file start (default) or the story event")
        f.add_argument("--derivatives-dir", help="derivatives root (default SRC/derivatives)")
        f.add_argument("--transcripts-dir", help="Gentle transcripts root (default SRC/stimuli/gentle)")
    elif fmt == "lebel":
        f.add_argument("--mask", help="voxel mask NIfTI (default: pycortex-db/<subject>/transforms/*/mask_thick.nii.gz); "
                                      "'none' for anonymous voxels")
        f.add_argument("--tr", type=float, default=2.0, help="TR in s (default 2.0, the dataset code's convention)")
        f.add_argument("--first-tr-time", type=float, default=10.0,
                       help="start of the first response row after the audio onset, s (default 10)")
        f.add_argument("--ignore-respdict", action="store_true", help="do not check row counts against respdict.json")
    elif fmt == "generic":
        f.add_argument("--tr", type=float, required=True, help="TR in seconds")
        f.add_argument("--fmri", nargs="+", metavar="P=FILE",
                       help="participant files (default: every data file beside the words table)")
        f.add_argument("--space", default="auto", choices=("auto", "fsaverage5", "fsaverage6", "fsaverage", "rois", "volume"))
        f.add_argument("--template", default="MNI", choices=("MNI", "native"), help="volume template (default MNI)")
        f.add_argument("--mask", help="NIfTI mask selecting voxels (volume space)")
        f.add_argument("--run-lengths", nargs="+", metavar="RUN=N", help="TRs per run when one file holds all runs")
        f.add_argument("--modality", default="reading", choices=("reading", "listening"))
        f.add_argument("--audio", nargs="+", metavar="RUN=FILE",
                       help="listening: the audio of each run (WAV/FLAC; RUN=FILE, one FILE for a single run, or a "
                            "folder of <run>.wav/.flac); resampled to 16 kHz mono when needed")
        f.add_argument("--licence", default="")
        f.add_argument("--citation", default="")


def run(args: argparse.Namespace) -> int:
    from brainviz.data.importers import ImportConfig, import_dataset
    from brainviz.errors import UsageError

    fmt = args.format
    opts: dict = {}
    if fmt == "harry-potter-mat":
        opts["layout"] = args.layout
    elif fmt == "harry-potter-npy":
        opts.update(meg=args.meg, meg_participants=tuple(args.meg_participants or ()), bin_width=args.bin_width)
    elif fmt == "harry-potter-meg":
        opts.update(bin_width=args.bin_width, word_duration=args.word_duration)
    elif fmt == "narratives":
        opts.update(source=args.source, derivative=args.derivative, word_clock=args.word_clock,
                    derivatives_dir=args.derivatives_dir, transcripts_dir=args.transcripts_dir,
                    audio=False if args.no_audio else None, audio_dir=args.audio_dir)
    elif fmt == "lebel":
        opts.update(mask=args.mask, tr=args.tr, first_tr_time=args.first_tr_time, check_respdict=not args.ignore_respdict,
                    audio=False if args.no_audio else None, audio_dir=args.audio_dir)
    elif fmt == "generic":
        lengths = None
        if args.run_lengths:
            lengths = {}
            for item in args.run_lengths:
                if "=" not in item:
                    raise UsageError(f"expected RUN=N, got {item!r}", field="--run-lengths")
                k, v = item.split("=", 1)
                try:
                    lengths[k] = int(v)
                except ValueError:
                    raise UsageError(f"{item!r}: N must be an integer", field="--run-lengths") from None
        opts.update(tr=args.tr, fmri=tuple(args.fmri or ()), space=args.space, template=args.template, mask=args.mask,
                    run_lengths=lengths, modality=args.modality, licence=args.licence, citation=args.citation,
                    audio=tuple(args.audio or ()))
    config = ImportConfig(
        format=fmt, src=args.src, out=args.out, overwrite=args.overwrite, name=args.name,
        participants=tuple(getattr(args, "participants", None) or ()), stories=tuple(getattr(args, "stories", None) or ()),
        options=opts,
    )
    result = import_dataset(config, progress=lambda m: print(m, file=sys.stderr))
    print(json.dumps(result.summary(), indent=2))
    return 0
