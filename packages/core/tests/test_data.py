"""Download, verification and safe extraction against a local HTTP server on 127.0.0.1."""

from __future__ import annotations

import functools
import hashlib
import http.server
import io
import tarfile
import threading
import zipfile
from pathlib import Path

import pytest

from pentad_core.data import (
    RemoteFile,
    cached_extract,
    dataset_root,
    download_dataset,
    download_file,
    safe_extract,
    verify_dataset,
)
from pentad_core.errors import DataError, DownloadError


@pytest.fixture
def server(tmp_path):
    """Serve ``tmp_path/served`` on an ephemeral port of 127.0.0.1."""
    served = tmp_path / "served"
    served.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(served))
    handler.log_message = lambda *args: None
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield served, f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def make_tar(path: Path, entries: dict[str, bytes]) -> Path:
    with tarfile.open(path, "w:gz") as bundle:
        for name, data in entries.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            bundle.addfile(info, io.BytesIO(data))
    return path


def test_download_verify_and_extract(server, tmp_path):
    served, url = server
    archive = make_tar(served / "data.tar.gz", {"data/a.txt": b"alpha", "data/b.txt": b"beta"})
    digest = hashlib.sha256(archive.read_bytes()).hexdigest()
    remote = RemoteFile(f"{url}/data.tar.gz", "data.tar.gz", sha256=digest, extract=True)
    root = tmp_path / "dataset"
    download_dataset([remote], root, show_progress=False)
    assert (root / "data" / "a.txt").read_bytes() == b"alpha"
    assert verify_dataset([remote], root) == []
    (root / "data.tar.gz").write_bytes(b"tampered")
    assert "checksum mismatch" in verify_dataset([remote], root)[0]


def test_checksum_mismatch_leaves_no_file(server, tmp_path):
    served, url = server
    (served / "file.bin").write_bytes(b"real contents")
    remote = RemoteFile(f"{url}/file.bin", "file.bin", sha256="0" * 64)
    root = tmp_path / "dataset"
    with pytest.raises(DownloadError, match="checksum mismatch"):
        download_file(remote, root, show_progress=False)
    assert list(root.iterdir()) == []


def test_md5_is_accepted(server, tmp_path):
    served, url = server
    (served / "file.bin").write_bytes(b"abc")
    remote = RemoteFile(f"{url}/file.bin", "file.bin", md5=hashlib.md5(b"abc").hexdigest())
    assert download_file(remote, tmp_path, show_progress=False).read_bytes() == b"abc"


def test_offline_message_names_url_and_target(tmp_path):
    remote = RemoteFile("http://127.0.0.1:9/missing.zip", "missing.zip", sha256="0" * 64)
    with pytest.raises(DownloadError) as error:
        download_file(remote, tmp_path / "ds", retries=2, backoff_seconds=0.01, timeout=2, show_progress=False)
    message = str(error.value)
    assert "http://127.0.0.1:9/missing.zip" in message and str(tmp_path / "ds" / "missing.zip") in message


def test_mirror_is_tried_after_the_main_address(server, tmp_path):
    served, url = server
    (served / "file.bin").write_bytes(b"xyz")
    remote = RemoteFile(
        "http://127.0.0.1:9/file.bin",
        "file.bin",
        sha256=hashlib.sha256(b"xyz").hexdigest(),
        mirrors=(f"{url}/file.bin",),
    )
    path = download_file(remote, tmp_path, retries=1, timeout=2, show_progress=False)
    assert path.read_bytes() == b"xyz"


@pytest.mark.parametrize("name", ["../escape.txt", "/etc/absolute.txt", "good/../../escape.txt"])
def test_tar_entries_leaving_the_target_are_rejected(tmp_path, name):
    archive = make_tar(tmp_path / "bad.tar.gz", {"ok.txt": b"fine", name: b"evil"})
    target = tmp_path / "target"
    with pytest.raises(DataError, match="unsafe entry"):
        safe_extract(archive, target)
    assert not (tmp_path / "escape.txt").exists()
    assert not target.exists() or list(target.iterdir()) == []  # nothing written at all


def test_tar_link_leaving_the_target_is_rejected(tmp_path):
    archive = tmp_path / "link.tar"
    with tarfile.open(archive, "w") as bundle:
        info = tarfile.TarInfo("innocent")
        info.type = tarfile.SYMTYPE
        info.linkname = "../../etc/passwd"
        bundle.addfile(info)
    with pytest.raises(DataError, match="link to"):
        safe_extract(archive, tmp_path / "target")


def test_tar_hard_link_leaving_the_target_is_rejected(tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("outside the dataset")
    archive = tmp_path / "hardlink.tar"
    with tarfile.open(archive, "w") as bundle:
        info = tarfile.TarInfo("data.txt")
        info.type = tarfile.LNKTYPE
        info.linkname = str(secret)
        bundle.addfile(info)
    target = tmp_path / "target"
    with pytest.raises(DataError, match="link to .*secret.txt outside the target folder"):
        safe_extract(archive, target)
    assert not (target / "data.txt").exists()
    assert secret.read_text() == "outside the dataset"


@pytest.mark.parametrize("kind", [tarfile.CHRTYPE, tarfile.BLKTYPE])
def test_tar_device_files_are_rejected(tmp_path, kind):
    archive = tmp_path / "device.tar"
    with tarfile.open(archive, "w") as bundle:
        bundle.addfile(tarfile.TarInfo("ok.txt"), io.BytesIO(b""))
        info = tarfile.TarInfo("dev/sda")
        info.type = kind
        info.devmajor, info.devminor = 8, 0
        bundle.addfile(info)
    target = tmp_path / "target"
    with pytest.raises(DataError, match="'dev/sda' \\(device file\\)"):
        safe_extract(archive, target)
    assert not target.exists() or list(target.iterdir()) == []


def test_zip_with_parent_entry_is_rejected(tmp_path):
    archive = tmp_path / "bad.zip"
    with zipfile.ZipFile(archive, "w") as bundle:
        bundle.writestr("../escape.txt", "evil")
    with pytest.raises(DataError, match="unsafe entry"):
        safe_extract(archive, tmp_path / "target")
    assert not (tmp_path / "escape.txt").exists()


def test_corrupt_archive_and_cached_extract(tmp_path):
    corrupt = tmp_path / "corrupt.tar.gz"
    corrupt.write_bytes(b"not an archive")
    with pytest.raises(DataError, match="corrupt"):
        safe_extract(corrupt, tmp_path / "out")
    archive = make_tar(tmp_path / "ok.tar.gz", {"x/y.txt": b"y"})
    folder = cached_extract(archive, tmp_path / "cache")
    assert (folder / "x" / "y.txt").read_bytes() == b"y"
    (folder / "x" / "y.txt").unlink()
    cached_extract(archive, tmp_path / "cache")  # second call reuses the cache
    assert not (folder / "x" / "y.txt").exists()


def test_dataset_root_resolution(tmp_path, monkeypatch):
    monkeypatch.setenv("PENTAD_DATA", str(tmp_path / "shared"))
    assert dataset_root("drive") == tmp_path / "shared" / "drive"
    assert dataset_root("drive", tmp_path / "mine") == tmp_path / "mine"
    monkeypatch.delenv("PENTAD_DATA")
    assert dataset_root("drive") == Path("~/.cache/pentad/drive").expanduser()
