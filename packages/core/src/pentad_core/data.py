"""Dataset download, verification and safe extraction helpers (no datasets live in core).

A domain package describes each downloadable dataset as a list of :class:`RemoteFile`; core
fetches them with a progress bar and retries into a temporary file that is renamed into place only
once its checksum matches, extracts archives without letting entries escape the target folder, and
verifies what is on disk. Offline, the error says which URL to fetch and where to put it.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tarfile
import tempfile
import time
import urllib.error
import urllib.request
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from pentad_core.errors import DataError, DownloadError

#: Environment variable naming the folder that holds one sub-folder per dataset.
DATA_ENV = "PENTAD_DATA"
DEFAULT_CACHE = Path("~/.cache/pentad")


def data_home() -> Path:
    """``$PENTAD_DATA`` when set, else ``~/.cache/pentad``."""
    configured = os.environ.get(DATA_ENV)
    return Path(configured).expanduser() if configured else DEFAULT_CACHE.expanduser()


def dataset_root(name: str, data_dir: str | Path | None = None) -> Path:
    """Where dataset ``name`` lives: ``data_dir`` if given, else ``data_home()/<name>``."""
    if data_dir is not None and str(data_dir) != "":
        return Path(data_dir).expanduser()
    return data_home() / name


@dataclass(frozen=True)
class RemoteFile:
    """One file of a dataset as published.

    Attributes:
        url: Official download address.
        filename: Name of the file once downloaded (inside the dataset root).
        sha256: Expected SHA-256 (hex); preferred.
        md5: Expected MD5 (hex), when that is all the publisher gives.
        extract: Unpack the archive into the dataset root after download.
        mirrors: Further addresses tried in order when the first fails.
    """

    url: str
    filename: str
    sha256: str | None = None
    md5: str | None = None
    extract: bool = False
    mirrors: tuple[str, ...] = field(default_factory=tuple)


@dataclass(frozen=True)
class DatasetInfo:
    """What the CLI knows about a registered dataset (the metadata of a dataset registry entry)."""

    #: Generated in memory by the package: it has no folder, no download, and ``--data-dir`` does not apply.
    generated: bool = False
    #: The official files, fetched by ``data download NAME`` and checked by ``data verify NAME``.
    files: tuple[RemoteFile, ...] = ()


def dataset_folder(name: str, data_dir: str | Path | None, generated: bool) -> Path | None:
    """The folder of dataset ``name``, or ``None`` for a generated dataset (which has none)."""
    return None if generated else dataset_root(name, data_dir)


def file_digest(path: str | Path, algorithm: str = "sha256", chunk_size: int = 1 << 20) -> str:
    """Hex digest of a file, read in chunks."""
    digest = hashlib.new(algorithm)
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(chunk_size), b""):
            digest.update(chunk)
    return digest.hexdigest()


def check_integrity(path: str | Path, remote: RemoteFile) -> bool:
    """Whether ``path`` exists and matches the checksum of ``remote`` (True when none is known)."""
    path = Path(path)
    if not path.is_file():
        return False
    if remote.sha256:
        return file_digest(path, "sha256") == remote.sha256.lower()
    if remote.md5:
        return file_digest(path, "md5") == remote.md5.lower()
    return True


def _progress(total: int | None, description: str):
    from rich.progress import BarColumn, DownloadColumn, Progress, TransferSpeedColumn

    progress = Progress(
        "[progress.description]{task.description}", BarColumn(), DownloadColumn(), TransferSpeedColumn(),
        transient=True,
    )  # fmt: skip
    return progress, progress.add_task(description, total=total)


def download_file(
    remote: RemoteFile,
    root: str | Path,
    *,
    retries: int = 3,
    timeout: float = 30.0,
    backoff_seconds: float = 1.0,
    show_progress: bool = True,
    opener: Callable[..., object] = urllib.request.urlopen,
) -> Path:
    """Download ``remote`` into ``root``; verify it; rename into place only when it matches.

    Args:
        remote: What to fetch and its checksum.
        root: Dataset folder (created when missing).
        retries: Attempts per address before moving to the next mirror.
        timeout: Socket timeout in seconds.
        backoff_seconds: Wait before a retry, doubled each time.
        show_progress: Show a progress bar.
        opener: ``urllib.request.urlopen`` (replaceable in tests).

    Returns:
        The path of the verified file.

    Raises:
        DownloadError: Offline / every address failed (the message names the URL and the target
            folder for a manual download), or the checksum did not match (nothing is left behind).
    """
    root = Path(root)
    target = root / remote.filename
    if check_integrity(target, remote):
        return target
    root.mkdir(parents=True, exist_ok=True)
    last_error: Exception | None = None
    for url in (remote.url, *remote.mirrors):
        for attempt in range(retries):
            descriptor, temporary = tempfile.mkstemp(prefix=f".{remote.filename}.", suffix=".part", dir=root)
            try:
                with os.fdopen(descriptor, "wb") as handle, opener(url, timeout=timeout) as response:
                    length = response.headers.get("Content-Length")
                    total = int(length) if length and length.isdigit() else None
                    progress, task = _progress(total, remote.filename)
                    with progress if show_progress else contextlib.nullcontext():
                        while chunk := response.read(1 << 16):
                            handle.write(chunk)
                            progress.update(task, advance=len(chunk))
                    handle.flush()
                    os.fsync(handle.fileno())
                if not check_integrity(temporary, remote):
                    expected = remote.sha256 or remote.md5
                    raise DownloadError(
                        f"checksum mismatch for {remote.filename} from {url} (expected {expected}); "
                        "the file was discarded. Retry later or download it by hand."
                    )
                os.replace(temporary, target)
                return target
            except DownloadError:
                raise
            except (urllib.error.URLError, OSError, TimeoutError) as error:
                last_error = error
                if attempt + 1 < retries:
                    time.sleep(backoff_seconds * 2**attempt)
            finally:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(temporary)
    reason = getattr(last_error, "reason", last_error)
    raise DownloadError(
        f"could not download {remote.url} ({reason}). Without network, fetch it by hand and put it at "
        f"{target} (then run `data verify`)."
    )


def _inside(root: Path, member_path: str) -> bool:
    resolved = (root / member_path).resolve()
    return resolved == root or root in resolved.parents


def safe_extract(archive: str | Path, destination: str | Path) -> list[Path]:
    """Extract a tar (any compression) or zip archive, refusing entries that would escape.

    Rejected before anything is written: absolute paths, ``..`` components, symbolic or hard links
    pointing outside ``destination``, and device files.

    Returns:
        The extracted paths.

    Raises:
        DataError: If the archive is unreadable or holds an unsafe entry.
    """
    archive, destination = Path(archive), Path(destination)
    destination.mkdir(parents=True, exist_ok=True)
    root = destination.resolve()

    def reject(name: str, why: str) -> DataError:
        return DataError(f"archive {archive} has an unsafe entry {name!r} ({why}); refusing to extract it.")

    try:
        if zipfile.is_zipfile(archive):
            with zipfile.ZipFile(archive) as bundle:
                names = bundle.namelist()
                for name in names:
                    if name.startswith(("/", "\\")) or Path(name).is_absolute() or ".." in Path(name).parts:
                        raise reject(name, "absolute path or '..'")
                    if not _inside(root, name):
                        raise reject(name, "leaves the target folder")
                bundle.extractall(root)
                return [root / name for name in names]
        with tarfile.open(archive) as bundle:
            members = bundle.getmembers()
            for member in members:
                name = member.name
                if name.startswith("/") or Path(name).is_absolute() or ".." in Path(name).parts:
                    raise reject(name, "absolute path or '..'")
                if not _inside(root, name):
                    raise reject(name, "leaves the target folder")
                if member.issym() or member.islnk():
                    link_base = (root / name).parent if member.issym() else root
                    target = (link_base / member.linkname).resolve()
                    if Path(member.linkname).is_absolute() or not (target == root or root in target.parents):
                        raise reject(name, f"link to {member.linkname} outside the target folder")
                if member.isdev():
                    raise reject(name, "device file")
            bundle.extractall(root, members=members, filter="data")
            return [root / member.name for member in members]
    except (tarfile.TarError, zipfile.BadZipFile, EOFError) as error:
        raise DataError(
            f"archive {archive} is corrupt or not an archive ({error}); delete it and download again."
        ) from None


def download_dataset(files: list[RemoteFile], root: str | Path, **kwargs) -> list[Path]:
    """Download, verify and (where marked) extract every file of a dataset into ``root``."""
    paths = []
    for remote in files:
        path = download_file(remote, root, **kwargs)
        if remote.extract:
            safe_extract(path, root)
        paths.append(path)
    return paths


def verify_dataset(files: list[RemoteFile], root: str | Path) -> list[str]:
    """Problems with the downloaded files of a dataset (an empty list means all verified)."""
    problems = []
    for remote in files:
        path = Path(root) / remote.filename
        if not path.is_file():
            problems.append(f"missing {path} (from {remote.url})")
        elif not check_integrity(path, remote):
            problems.append(f"checksum mismatch: {path}")
    return problems


def cached_extract(archive: str | Path, cache_folder: str | Path, marker: str = ".extracted") -> Path:
    """Extract ``archive`` into ``cache_folder`` once; later calls reuse it.

    The marker file is written last, so an interrupted extraction is redone.
    """
    cache_folder = Path(cache_folder)
    done = cache_folder / marker
    if not done.exists():
        if not Path(archive).is_file():
            raise DataError(f"archive not found: {archive}.", "Download it first with `data download`.")
        safe_extract(archive, cache_folder)
        done.write_text(str(Path(archive).resolve()), encoding="utf-8")
    return cache_folder
