"""``python -m brainviz fetch {harry-potter|narratives|lebel|atlas NAME} --dest DIR``.

Downloads the official files (URLs in :data:`SOURCES`, SHA-256 where known) with resume
(HTTP ``Range`` on a ``.part`` file) and a progress bar. Without network it fails fast (one
short TCP connect to the host, ``timeout`` seconds) and prints where to put the files by hand;
files already present (and matching their checksum, when one is known) are never downloaded
again, so a hand-filled folder "fetches" offline. After download, ``import`` reads ``DIR``:

    python -m brainviz fetch harry-potter --dest hp && python -m brainviz import harry-potter-mat hp --out data/hp
    python -m brainviz fetch atlas glasser --dest atlases --roi-set late-language

``fetch atlas NAME`` also writes ``DIR/NAME/atlas.npz`` (fsaverage5 labels + names) and, for each
``--roi-set``, ``DIR/NAME/roi-<set>.npy``: the boolean (20484,) mask ``train --roi-mask`` reads.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import os
import socket
import sys
import time
from pathlib import Path
from typing import Callable, Iterable, Sequence
from urllib.error import HTTPError, URLError
from urllib.parse import quote, urlsplit
from urllib.request import Request, getproxies, urlopen

from brainviz.errors import BrainvizError

CONNECT_TIMEOUT = 5.0
CHUNK = 1 << 20
USER_AGENT = "brainviz-fetch/0.1 (+https://github.com/ brainviz)"


class FetchError(BrainvizError, RuntimeError):
    """Download failed (offline, HTTP error, checksum mismatch); message says what to do."""


@dataclasses.dataclass(frozen=True)
class Remote:
    """One file: where it comes from, where it goes under ``--dest`` and its SHA-256 if known."""

    url: str
    path: str
    sha256: str | None = None
    optional: bool = False


# --------------------------------------------------------------------------------------
# Source tables
# --------------------------------------------------------------------------------------

HP_BASE = "http://www.cs.cmu.edu/~fmri/plosone/files/"
ENIGMA = "https://raw.githubusercontent.com/MICA-MNI/ENIGMA/d66a7ef320a913f9441bf1089b44f1dad11e5724/enigmatoolbox/datasets/"
LANG = ("https://raw.githubusercontent.com/aaronwriight/extended_language_network-osf/"
        "9ed0b7cb1463d182ee336567fbb952f2b554f4fd/data/functional_language_parcels/")
NARRATIVES_BASE = "http://datasets.datalad.org/labs/hasson/narratives/"
NARRATIVES_OPENNEURO = "https://s3.amazonaws.com/openneuro.org/ds002345/"
LEBEL_BASE = "https://s3.amazonaws.com/openneuro.org/ds003020/"
LEBEL_SUBJECTS = tuple(f"UTS0{i}" for i in range(1, 9))

_ENIGMA_SHA = {
    "glasser_360_fsa5.csv": "501edd31d32e31d1f924e7d8bcadad65d9ff35b061c9ac7cb2cc6c39b4e9513f",
    "funcLabels_ctx_glasser_360.csv": "2e250ab799717d09fc2f9f77873a2bcb2a68db673e35f9313502b344495945ae",
    "schaefer_100_fsa5.csv": "60e878732437fbb1c6f8ec08650cdb90219cc839d1e1f6c22253d7ea6f9f4366",
    "schaefer_200_fsa5.csv": "049eec4ec5486683f23b8752eb655ba23077e5c4f2e2c62fd5e11c68bd98d811",
    "schaefer_300_fsa5.csv": "6207e55a0b4024ac66159461b183f4f2c9086b5bcb44ce276edc0bcec9c17124",
    "schaefer_400_fsa5.csv": "2b6f272fac9a5a35c79f1f7ae9b3dfe5f759bab2742eeb97017fc23fe712da33",
    "funcLabels_ctx_schaefer_100.csv": "27f695aec7c095e95c1b0215ebf6ab232d7e97bd2d26e0e47821b59b2ecfaaf3",
    "funcLabels_ctx_schaefer_200.csv": "dc3766a114ab914ff1d8e4981eb063157eeff45671c524023d9d634e767f88e5",
    "funcLabels_ctx_schaefer_300.csv": "81e322d183ec21e1d98b61836276b30540b6cb795f7f19dfa5349cf45d17dbf0",
    "funcLabels_ctx_schaefer_400.csv": "e110788738d34831958abf33ded83d06c2c46de18d5419d85f3bc0e9a3475c07",
}
_LANG_SHA = {
    "lh": "e363d7b5b44192748cbcee642981b9f55c7d6214624d40ebf43cc870bc65d93d",
    "rh": "6221df50b8ca29cd0d5a57ddc715714720fcf83ffcbbf41cd0705dc2271946d5",
}


def _atlas_files(name: str) -> list[Remote]:
    if name == "glasser":
        return [
            Remote(ENIGMA + "parcellations/glasser_360_fsa5.csv", "glasser/glasser_360_fsa5.csv", _ENIGMA_SHA["glasser_360_fsa5.csv"]),
            Remote(ENIGMA + "matrices/hcp_connectivity/funcLabels_ctx_glasser_360.csv", "glasser/funcLabels_ctx_glasser_360.csv",
                   _ENIGMA_SHA["funcLabels_ctx_glasser_360.csv"]),
        ]
    if name.startswith("schaefer-"):
        n = name.split("-", 1)[1]
        if n not in ("100", "200", "300", "400"):
            raise FetchError(f"schaefer parcellations available: schaefer-100/200/300/400, not {name!r}")
        return [
            Remote(ENIGMA + f"parcellations/schaefer_{n}_fsa5.csv", f"{name}/schaefer_{n}_fsa5.csv", _ENIGMA_SHA[f"schaefer_{n}_fsa5.csv"]),
            Remote(ENIGMA + f"matrices/hcp_connectivity/funcLabels_ctx_schaefer_{n}.csv", f"{name}/funcLabels_ctx_schaefer_{n}.csv",
                   _ENIGMA_SHA[f"funcLabels_ctx_schaefer_{n}.csv"]),
        ]
    if name == "language":
        sub = "symmetrical parcels/mgh (surface parcels)/"
        return [Remote(LANG + quote(sub + f"{h}_langParcels_symmetrical.mgh"), f"language/{h}_langParcels_symmetrical.mgh", _LANG_SHA[h])
                for h in ("lh", "rh")]
    raise FetchError(f"unknown atlas {name!r}; available: glasser, schaefer-100/200/300/400, language, destrieux")


ATLASES = ("glasser", "schaefer-100", "schaefer-200", "schaefer-300", "schaefer-400", "language", "destrieux")
TARGETS = ("harry-potter", "narratives", "lebel", "atlas")


def harry_potter_files(participants: Sequence[str] | None = None) -> list[Remote]:
    subs = [str(p).removeprefix("subject_") for p in participants] if participants else [str(i) for i in range(1, 9)]
    return [Remote(HP_BASE + f"subject_{s}.mat", f"subject_{s}.mat") for s in subs]


def narratives_files(stories: Sequence[str], participants: Sequence[str], derivative: str = "afni-smooth") -> list[Remote]:
    """Files for (participant, story) pairs: events + sidecar, fsaverage6 BOLD pair, transcript.

    Runs (``_run-N``) are not known before listing; the ``optional`` run-less names are tried
    first and :func:`fetch` retries ``_run-1``/``_run-2`` on 404 for them.
    """
    out = [Remote(NARRATIVES_OPENNEURO + n, n) for n in ("participants.tsv", "participants.json", "dataset_description.json")]
    for s in stories:
        out.append(Remote(NARRATIVES_BASE + f"stimuli/gentle/{s}/align.csv", f"stimuli/gentle/{s}/align.csv"))
        for p in participants:
            for suffix in ("events.tsv", "bold.json"):
                out.append(Remote(NARRATIVES_OPENNEURO + f"{p}/func/{p}_task-{s}_{suffix}", f"{p}/func/{p}_task-{s}_{suffix}", optional=True))
            for h in ("L", "R"):
                rel = f"derivatives/{derivative}/{p}/func/{p}_task-{s}_space-fsaverage6_hemi-{h}_desc-sm6.func.gii"
                out.append(Remote(NARRATIVES_BASE + rel, rel, optional=True))
    return out


def lebel_files(stories: Sequence[str], participants: Sequence[str]) -> list[Remote]:
    out = []
    for s in stories:
        out.append(Remote(LEBEL_BASE + f"derivative/TextGrids/{s}.TextGrid", f"derivative/TextGrids/{s}.TextGrid"))
    for p in participants:
        out.append(Remote(LEBEL_BASE + f"derivative/pycortex-db/{p}/transforms/{p}_auto/mask_thick.nii.gz",
                          f"derivative/pycortex-db/{p}/transforms/{p}_auto/mask_thick.nii.gz", optional=True))
        for s in stories:
            out.append(Remote(LEBEL_BASE + f"derivative/preprocessed_data/{p}/{s}.hf5", f"derivative/preprocessed_data/{p}/{s}.hf5"))
    return out


# --------------------------------------------------------------------------------------
# Download machinery
# --------------------------------------------------------------------------------------


def _connect(host: str, port: int, timeout: float) -> None:
    """Open and close one TCP connection (raises OSError when unreachable)."""
    with socket.create_connection((host, port), timeout=timeout):
        pass


def check_online(url: str, timeout: float = CONNECT_TIMEOUT) -> None:
    """Fail fast when the host of ``url`` (or the configured proxy) cannot be reached."""
    parts = urlsplit(url)
    proxy = getproxies().get(parts.scheme)
    target = urlsplit(proxy) if proxy else parts
    host = target.hostname or ""
    port = target.port or (443 if target.scheme == "https" else 80)
    try:
        _connect(host, port, timeout)
    except OSError as exc:
        raise FetchError(f"cannot reach {host}:{port} ({exc.__class__.__name__}: {exc})") from None


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(CHUNK):
            h.update(block)
    return h.hexdigest()


class _Progress:
    def __init__(self, name: str, total: int | None, initial: int, enabled: bool):
        self.bar = None
        self.enabled = enabled
        if enabled:
            try:
                from tqdm import tqdm

                self.bar = tqdm(total=total, initial=initial, unit="B", unit_scale=True, desc=name, file=sys.stderr, leave=False)
            except ImportError:
                self.bar = None
        self.name, self.total, self.done, self.last = name, total, initial, 0.0

    def update(self, n: int) -> None:
        self.done += n
        if self.bar is not None:
            self.bar.update(n)
        elif self.enabled and time.monotonic() - self.last > 1.0:
            self.last = time.monotonic()
            pct = f"{100 * self.done / self.total:5.1f}%" if self.total else f"{self.done >> 20} MB"
            print(f"\r{self.name}: {pct}", end="", file=sys.stderr)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        elif self.enabled:
            print(file=sys.stderr)


def download(url: str, target: Path, *, sha256: str | None = None, timeout: float = 60.0, progress: bool = True) -> Path:
    """Download ``url`` to ``target`` via ``target.part``, resuming a partial download.

    A server that ignores ``Range`` (status 200) restarts the file; a known SHA-256 is verified
    before the rename (a mismatch removes the partial file and raises :class:`FetchError`).
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    part = target.with_name(target.name + ".part")
    have = part.stat().st_size if part.is_file() else 0
    headers = {"User-Agent": USER_AGENT}
    if have:
        headers["Range"] = f"bytes={have}-"
    try:
        resp = urlopen(Request(url, headers=headers), timeout=timeout)
    except HTTPError as exc:
        if exc.code == 416 and have:  # nothing left to fetch: the partial file is complete
            return _finish(part, target, sha256, url)
        raise FetchError(f"{url}: HTTP {exc.code} {exc.reason}") from None
    except (URLError, OSError) as exc:
        raise FetchError(f"{url}: {getattr(exc, 'reason', exc)}") from None
    with resp:
        status = getattr(resp, "status", None) or resp.getcode()
        append = bool(have) and status == 206
        length = resp.headers.get("Content-Length")
        total = (int(length) + (have if append else 0)) if length else None
        bar = _Progress(target.name, total, have if append else 0, progress)
        try:
            with open(part, "ab" if append else "wb") as f:
                while True:
                    block = resp.read(CHUNK)
                    if not block:
                        break
                    f.write(block)
                    bar.update(len(block))
        except (URLError, OSError) as exc:
            raise FetchError(f"{url}: interrupted ({exc}); run the command again to resume") from None
        finally:
            bar.close()
    if total is not None and part.stat().st_size != total:
        raise FetchError(f"{url}: got {part.stat().st_size} of {total} bytes; run the command again to resume")
    return _finish(part, target, sha256, url)


def _finish(part: Path, target: Path, sha256: str | None, url: str) -> Path:
    if sha256 is not None:
        got = sha256_file(part)
        if got != sha256:
            part.unlink(missing_ok=True)
            raise FetchError(f"{url}: checksum mismatch (sha256 {got}, expected {sha256}); the partial file was removed")
    os.replace(part, target)
    return target


def _present(dest: Path, r: Remote) -> bool:
    p = dest / r.path
    return p.is_file() and (r.sha256 is None or sha256_file(p) == r.sha256)


def manual_instructions(dest: Path, files: Iterable[Remote], limit: int = 12) -> str:
    files = list(files)
    lines = [f"Place the files by hand under {dest} (then re-run this command to verify, or run 'import' directly):"]
    for r in files[:limit]:
        lines.append(f"  {r.url}\n      -> {dest / r.path}" + (f"  (sha256 {r.sha256})" if r.sha256 else ""))
    if len(files) > limit:
        lines.append(f"  ... and {len(files) - limit} more (same pattern; --list prints them all)")
    return "\n".join(lines)


def fetch_files(files: Sequence[Remote], dest: Path, *, timeout: float = CONNECT_TIMEOUT, progress: bool = True,
                log: Callable[[str], None] | None = None) -> list[Path]:
    """Download every missing file (optional ones may 404); fail fast when offline."""
    dest = Path(dest)
    todo = [r for r in files if not _present(dest, r)]
    done = [dest / r.path for r in files if r not in todo]
    if not todo:
        return done
    checked: set[str] = set()
    for r in todo:
        host = urlsplit(r.url).netloc
        if host not in checked:
            try:
                check_online(r.url, timeout)
            except FetchError as exc:
                raise FetchError(f"offline: {exc}\n{manual_instructions(dest, todo)}") from None
            checked.add(host)
        if log:
            log(f"downloading {r.url}")
        try:
            done.append(download(r.url, dest / r.path, sha256=r.sha256, timeout=max(timeout, 30.0), progress=progress))
        except FetchError as exc:
            if r.optional and "HTTP 404" in str(exc):
                alt = _run_variants(r, dest, timeout, progress)
                done += alt
                continue
            raise
    return done


def _run_variants(r: Remote, dest: Path, timeout: float, progress: bool) -> list[Path]:
    """Narratives: a story heard twice has ``_run-1``/``_run-2`` files instead of run-less ones."""
    got = []
    head, sep, tail = r.url.partition("_task-")
    if not sep or "_" not in tail:
        return got
    story, rest = tail.split("_", 1)
    for run in ("_run-1", "_run-2"):
        url = f"{head}_task-{story}{run}_{rest}"
        path = r.path.replace(f"_task-{story}_", f"_task-{story}{run}_")
        try:
            got.append(download(url, dest / path, timeout=max(timeout, 30.0), progress=progress))
        except FetchError:
            break
    return got


def fetch(target: str, dest: str | os.PathLike, *, name: str | None = None, participants: Sequence[str] | None = None,
          stories: Sequence[str] | None = None, roi_sets: Sequence[str] = (), timeout: float = CONNECT_TIMEOUT,
          progress: bool = True, log: Callable[[str], None] | None = None) -> list[Path]:
    """Fetch a dataset or atlas into ``dest``; return the local files."""
    dest = Path(dest)
    if target == "harry-potter":
        return fetch_files(harry_potter_files(participants), dest, timeout=timeout, progress=progress, log=log)
    if target == "narratives":
        if not stories:
            raise FetchError("narratives is ~hundreds of GB: choose --stories (e.g. pieman) and optionally --participants")
        meta = fetch_files([Remote(NARRATIVES_OPENNEURO + "participants.tsv", "participants.tsv")], dest, timeout=timeout,
                           progress=progress, log=log)
        if not participants:
            import pandas as pd

            df = pd.read_csv(meta[0], sep="\t", dtype=str, keep_default_na=False)
            participants = [p for p, t in zip(df["participant_id"], df["task"]) if set(stories) & set(t.split(","))]
        return fetch_files(narratives_files(stories, participants), dest, timeout=timeout, progress=progress, log=log)
    if target == "lebel":
        subs = list(participants) if participants else list(LEBEL_SUBJECTS[:3])
        if not stories:
            rd = fetch_files([Remote(LEBEL_BASE + "derivative/respdict.json", "derivative/respdict.json")], dest,
                             timeout=timeout, progress=progress, log=log)[0]
            stories = sorted(json.loads(Path(rd).read_text()))
        files = [Remote(LEBEL_BASE + "derivative/respdict.json", "derivative/respdict.json")] + lebel_files(stories, subs)
        return fetch_files(files, dest, timeout=timeout, progress=progress, log=log)
    if target == "atlas":
        if not name:
            raise FetchError(f"which atlas? one of {ATLASES}")
        return fetch_atlas(name, dest, roi_sets=roi_sets, timeout=timeout, progress=progress, log=log)
    raise FetchError(f"unknown target {target!r}; expected one of {TARGETS}")


def fetch_atlas(name: str, dest: str | os.PathLike, *, roi_sets: Sequence[str] = (), timeout: float = CONNECT_TIMEOUT,
                progress: bool = True, log: Callable[[str], None] | None = None) -> list[Path]:
    """Fetch an atlas, save ``DIR/NAME/atlas.npz`` and any requested ROI masks."""
    from brainviz.data import atlases

    dest = Path(dest)
    if name == "destrieux":
        folder = dest / "destrieux"
        folder.mkdir(parents=True, exist_ok=True)
        try:
            check_online("https://www.nitrc.org/", timeout)
        except FetchError as exc:
            # nilearn may already have it cached: try without network before failing
            try:
                atlas = atlases.load_destrieux(folder)
            except Exception:
                raise FetchError(f"offline: {exc}\nDestrieux comes from nilearn.datasets.fetch_atlas_surf_destrieux; "
                                 f"run this command once with network, or place nilearn's destrieux_surface folder in {folder}") from None
        else:
            atlas = atlases.load_destrieux(folder)
        files = []
    else:
        files = fetch_files(_atlas_files(name), dest, timeout=timeout, progress=progress, log=log)
        atlas = atlases.load_atlas(name, root=dest)
    out = [*files, atlas.save(dest / name / "atlas.npz")]
    for rs in roi_sets:
        mask = atlases.roi_mask(atlas, rs)
        out.append(atlases.save_roi_mask(dest / name / f"roi-{rs}.npy", mask))
    return out


# --------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "fetch", help="download a corpus or an atlas from its official source",
        description="Download a corpus or an atlas (resumable, checksummed). Offline: fails fast with manual instructions.",
    )
    p.add_argument("target", choices=TARGETS)
    p.add_argument("name", nargs="?", help=f"atlas name for 'atlas': {', '.join(ATLASES)}")
    p.add_argument("--dest", required=True, help="folder to download into")
    p.add_argument("--participants", nargs="+", metavar="P")
    p.add_argument("--stories", nargs="+", metavar="S")
    p.add_argument("--roi-set", nargs="+", default=[], metavar="SET",
                   help="atlas only: also write DEST/NAME/roi-SET.npy (e.g. late-language on glasser)")
    p.add_argument("--timeout", type=float, default=CONNECT_TIMEOUT, help="connect timeout in s (default 5)")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--list", action="store_true", help="print the URLs and local paths instead of downloading")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    dest = Path(args.dest)
    if args.list:
        if args.target == "harry-potter":
            files = harry_potter_files(args.participants)
        elif args.target == "atlas":
            files = _atlas_files(args.name or "")
        elif args.target == "lebel":
            files = lebel_files(args.stories or ["<story>"], args.participants or list(LEBEL_SUBJECTS))
        else:
            files = narratives_files(args.stories or ["<story>"], args.participants or ["sub-XXX"])
        for r in files:
            print(f"{r.url}\t{dest / r.path}\t{r.sha256 or ''}")
        return 0
    paths = fetch(args.target, dest, name=args.name, participants=args.participants, stories=args.stories,
                  roi_sets=args.roi_set, timeout=args.timeout, progress=not args.no_progress,
                  log=lambda m: print(m, file=sys.stderr))
    print(json.dumps({"dest": str(dest), "files": [str(p) for p in paths]}, indent=2))
    return 0
