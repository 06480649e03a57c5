"""``brainviz fetch``: offline fast failure with manual instructions; download, resume and
checksum logic against a mocked ``urlopen`` (no network is used)."""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import time
from pathlib import Path
from urllib.error import HTTPError

import numpy as np
import pytest

from brainviz.cli import main
from brainviz.data import fetch as F

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "atlases" / "ENIGMA"


class FakeResponse(io.BytesIO):
    def __init__(self, body: bytes, status: int = 200, headers: dict | None = None):
        super().__init__(body)
        self.status = status
        self.headers = {"Content-Length": str(len(body)), **(headers or {})}

    def getcode(self) -> int:
        return self.status


class FakeServer:
    """Serves ``files`` (url -> bytes), honouring Range unless ``ignore_range``; records requests."""

    def __init__(self, files: dict[str, bytes], ignore_range: bool = False, fail_after: int | None = None):
        self.files, self.ignore_range, self.requests = files, ignore_range, []

    def __call__(self, req, timeout=None):
        url = req.full_url
        rng = req.get_header("Range")
        self.requests.append((url, rng))
        if url not in self.files:
            raise HTTPError(url, 404, "Not Found", {}, None)
        body = self.files[url]
        if rng and not self.ignore_range:
            start = int(rng.split("=")[1].rstrip("-"))
            if start >= len(body):
                raise HTTPError(url, 416, "Range Not Satisfiable", {}, None)
            return FakeResponse(body[start:], 206, {"Content-Range": f"bytes {start}-{len(body) - 1}/{len(body)}"})
        return FakeResponse(body)


@pytest.fixture()
def online(monkeypatch):
    monkeypatch.setattr(F, "_connect", lambda host, port, timeout: None)


def test_offline_fails_fast_with_instructions(monkeypatch, tmp_path):
    def refuse(host, port, timeout):
        assert timeout <= 5
        raise OSError("Network is unreachable")

    monkeypatch.setattr(F, "_connect", refuse)
    monkeypatch.setattr(F, "urlopen", lambda *a, **k: pytest.fail("must not try to download when offline"))
    t0 = time.monotonic()
    with pytest.raises(F.FetchError) as err:
        F.fetch("harry-potter", tmp_path / "hp", participants=["1", "2"])
    assert time.monotonic() - t0 < 2
    msg = str(err.value)
    assert "offline" in msg and "www.cs.cmu.edu" in msg
    assert "http://www.cs.cmu.edu/~fmri/plosone/files/subject_1.mat" in msg and str(tmp_path / "hp" / "subject_2.mat") in msg
    assert not (tmp_path / "hp").exists() or not list((tmp_path / "hp").iterdir())


def test_cli_offline_exit_code(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(F, "_connect", lambda *a: (_ for _ in ()).throw(OSError("no route")))
    assert main(["fetch", "atlas", "glasser", "--dest", str(tmp_path), "--timeout", "1"]) == 2
    err = capsys.readouterr().err
    assert "offline" in err and "glasser_360_fsa5.csv" in err and "sha256 501edd31" in err


def test_download_and_resume(online, monkeypatch, tmp_path):
    body = bytes(range(256)) * 5000
    url = F.HP_BASE + "subject_1.mat"
    server = FakeServer({url: body})
    monkeypatch.setattr(F, "urlopen", server)
    target = tmp_path / "subject_1.mat"
    # a previous interrupted download left 1/3 of the file
    target.with_name("subject_1.mat.part").write_bytes(body[: len(body) // 3])
    F.download(url, target, sha256=hashlib.sha256(body).hexdigest(), progress=False)
    assert target.read_bytes() == body and not target.with_name("subject_1.mat.part").exists()
    assert server.requests == [(url, f"bytes={len(body) // 3}-")]
    # already present -> nothing downloaded
    paths = F.fetch_files([F.Remote(url, "subject_1.mat")], tmp_path, progress=False)
    assert paths == [target] and len(server.requests) == 1


def test_server_ignoring_range_restarts(online, monkeypatch, tmp_path):
    body = b"abcdef" * 1000
    url = "http://example.org/f.bin"
    monkeypatch.setattr(F, "urlopen", FakeServer({url: body}, ignore_range=True))
    (tmp_path / "f.bin.part").write_bytes(b"zzz")
    F.download(url, tmp_path / "f.bin", progress=False)
    assert (tmp_path / "f.bin").read_bytes() == body


def test_checksum_mismatch_and_http_errors(online, monkeypatch, tmp_path):
    url = "http://example.org/g.bin"
    monkeypatch.setattr(F, "urlopen", FakeServer({url: b"tampered"}))
    with pytest.raises(F.FetchError, match="checksum mismatch"):
        F.download(url, tmp_path / "g.bin", sha256="0" * 64, progress=False)
    assert not (tmp_path / "g.bin").exists() and not (tmp_path / "g.bin.part").exists()
    with pytest.raises(F.FetchError, match="HTTP 404"):
        F.download("http://example.org/missing", tmp_path / "m", progress=False)
    # a .part that is already complete (server answers 416) is finished, not re-downloaded
    (tmp_path / "g2.bin.part").write_bytes(b"tampered")
    monkeypatch.setattr(F, "urlopen", FakeServer({"http://example.org/g2.bin": b"tampered"}))
    F.download("http://example.org/g2.bin", tmp_path / "g2.bin", sha256=hashlib.sha256(b"tampered").hexdigest(), progress=False)
    assert (tmp_path / "g2.bin").read_bytes() == b"tampered"


def test_fetch_atlas_with_mocked_server(online, monkeypatch, tmp_path):
    if not (SHARED / "parcellations/glasser_360_fsa5.csv").is_file():
        pytest.skip("../shared/data/atlases/ENIGMA is absent")
    files = {
        F.ENIGMA + "parcellations/glasser_360_fsa5.csv": (SHARED / "parcellations/glasser_360_fsa5.csv").read_bytes(),
        F.ENIGMA + "matrices/hcp_connectivity/funcLabels_ctx_glasser_360.csv":
            (SHARED / "matrices/hcp_connectivity/funcLabels_ctx_glasser_360.csv").read_bytes(),
    }
    monkeypatch.setattr(F, "urlopen", FakeServer(files))
    paths = F.fetch("atlas", tmp_path, name="glasser", roi_sets=["late-language"], progress=False)
    names = {p.name for p in paths}
    assert {"glasser_360_fsa5.csv", "funcLabels_ctx_glasser_360.csv", "atlas.npz", "roi-late-language.npy"} <= names
    mask = np.load(tmp_path / "glasser" / "roi-late-language.npy")
    assert mask.dtype == bool and mask.shape == (20484,) and mask.sum() > 1000


def test_hand_placed_atlas_works_offline(monkeypatch, tmp_path, capsys):
    if not (SHARED / "parcellations/glasser_360_fsa5.csv").is_file():
        pytest.skip("../shared/data/atlases/ENIGMA is absent")
    monkeypatch.setattr(F, "_connect", lambda *a: (_ for _ in ()).throw(OSError("offline")))
    dest = tmp_path / "atlases" / "glasser"
    dest.mkdir(parents=True)
    shutil.copy(SHARED / "parcellations/glasser_360_fsa5.csv", dest)
    shutil.copy(SHARED / "matrices/hcp_connectivity/funcLabels_ctx_glasser_360.csv", dest)
    assert main(["fetch", "atlas", "glasser", "--dest", str(tmp_path / "atlases"), "--roi-set", "late-language",
                 "early-auditory", "--no-progress"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert any(p.endswith("roi-early-auditory.npy") for p in out["files"])
    # a corrupted hand-placed file is detected by its checksum (and re-downloaded, which fails offline)
    (dest / "glasser_360_fsa5.csv").write_text("0\n")
    assert main(["fetch", "atlas", "glasser", "--dest", str(tmp_path / "atlases")]) == 2
    assert "offline" in capsys.readouterr().err


def test_list_and_tables(capsys, tmp_path):
    assert main(["fetch", "lebel", "--dest", str(tmp_path), "--stories", "souls", "--participants", "UTS01", "--list"]) == 0
    out = capsys.readouterr().out
    assert "ds003020/derivative/preprocessed_data/UTS01/souls.hf5" in out and "TextGrids/souls.TextGrid" in out
    files = F.narratives_files(["pieman"], ["sub-001"])
    assert any("afni-smooth/sub-001/func/sub-001_task-pieman_space-fsaverage6_hemi-L_desc-sm6.func.gii" in r.path for r in files)
    assert any(r.path == "stimuli/gentle/pieman/align.csv" for r in files)
    lang = F._atlas_files("language")
    assert "%20" in lang[0].url and lang[0].sha256
    with pytest.raises(F.FetchError, match="unknown atlas"):
        F._atlas_files("aal")
    with pytest.raises(F.FetchError, match="choose --stories"):
        F.fetch("narratives", tmp_path)


def test_narratives_run_variants(online, monkeypatch, tmp_path):
    base = F.NARRATIVES_OPENNEURO + "sub-001/func/sub-001_task-pieman"
    files = {F.NARRATIVES_OPENNEURO + "participants.tsv": b"participant_id\ttask\nsub-001\tpieman\n",
             base + "_run-1_events.tsv": b"onset\n", base + "_run-2_events.tsv": b"onset\n"}
    monkeypatch.setattr(F, "urlopen", FakeServer(files))
    remotes = [F.Remote(base + "_events.tsv", "sub-001/func/sub-001_task-pieman_events.tsv", optional=True)]
    got = F.fetch_files(remotes, tmp_path, progress=False)
    assert sorted(p.name for p in got) == ["sub-001_task-pieman_run-1_events.tsv", "sub-001_task-pieman_run-2_events.tsv"]
