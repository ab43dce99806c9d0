"""DVS128 Gesture from its public archives: find, verify, download and unpack; the paper's recipe; the model card.

``python main.py train --dataset dvsgesture --data DIR [--download]`` runs through here. Two
releases of the same recordings (Amir et al., CVPR 2017) are known, each archive by its file name
and md5:

- **IBM's release**, ``DvsGesture.tar.gz`` (md5 as ``fangwei123456/spikingjelly``
  ``spikingjelly/datasets/dvs128_gesture.py`` ``resource_url_md5`` lists it): AEDAT 3.1 recordings
  ``DvsGesture/userNN_<lighting>.aedat`` with ``_labels.csv`` and ``trials_to_train.txt`` /
  ``trials_to_test.txt``, the split of the paper's figures (1176 / 288 clips, read by
  :class:`models.data.IBMGestureDataset`). IBM serves it from a web page only
  (https://research.ibm.com/dvsgesture/), so no program can fetch it: put the file into ``DIR``.
  It is the release ``--recipe stream`` needs (whole recordings, rests included).
- **tonic's copy** (``neuromorphs/tonic`` ``tonic/datasets/dvsgesture.py``, ``DVSGesture``):
  ``ibmGestureTrain.tar.gz`` and ``ibmGestureTest.tar.gz`` on figshare, the clips already cut and
  stored as ``ibmGestureTrain/userNN_<lighting>/<label>.npy`` (:class:`models.data.TonicGestureDataset`;
  tonic's split, 1077 / 264 clips, not comparable with the paper's). ``--download`` fetches it
  into ``DIR/DVSGesture/``, where ``tonic.datasets.DVSGesture(save_to=DIR)`` keeps it too.

tonic knows each archive's URL and md5, not its size: an archive in ``DIR`` is checked by its md5,
and when that fails, by reading its gzip stream to the end, to tell an incomplete file from a
damaged one. A download is checked against the server's ``Content-Length`` first. The download
itself is this module's (``urllib``), not tonic's ``download_url``, which on a fault retries over
plain http and raises a bare ``RuntimeError``: here every fault is one line naming the file or URL.

After an archive is unpacked, ``<folder>/.evstream_unpacked.json`` records its name, size and md5,
so a later run neither hashes nor unpacks it again. ``EVSTREAM_DVSGESTURE_MD5SUMS`` may name a
file in ``md5sum`` format (``<md5>  <file name>`` per line) whose entries replace the known
checksums: for a repackaged copy (a lab mirror) and for tests on miniature archives.
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import http.client
import json
import os
import shlex
import sys
import tarfile
import time
import urllib.error
import urllib.request
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Literal

from evstream.errors import EvstreamError

__all__ = [
    "DatasetError",
    "Archive",
    "IBM_ARCHIVE",
    "TONIC_ARCHIVES",
    "MD5SUMS_ENV",
    "PAPER_RECIPE",
    "DatasetLocation",
    "known_checksums",
    "md5_of",
    "verify_archive",
    "download_archive",
    "unpack_archive",
    "prepare_dvsgesture",
    "recipe_defaults",
    "write_model_card",
]

MD5SUMS_ENV = "EVSTREAM_DVSGESTURE_MD5SUMS"
MARKER = ".evstream_unpacked.json"
TONIC_FOLDER = "DVSGesture"  # tonic's location_on_system = save_to / the dataset class name


class DatasetError(EvstreamError):
    """A dataset archive is missing, incomplete, damaged or cannot be fetched; names the file or URL."""


@dataclass(frozen=True)
class Archive:
    """One archive of a release: what it is called, where it comes from, what it unpacks to."""

    filename: str  # the archive's file name, e.g. "ibmGestureTrain.tar.gz"
    md5: str  # hex md5 of the whole file
    folder: str  # the one top-level folder it unpacks to
    url: str | None  # where a program can fetch it (None: a web page only)
    release: Literal["ibm", "tonic"]


IBM_ARCHIVE = Archive(
    "DvsGesture.tar.gz", "8a5c71fb11e24e5ca5b11866ca6c00a1", "DvsGesture", None, "ibm"
)
# tonic 1.7.0, tonic/datasets/dvsgesture.py: train_url / train_md5 / train_filename and the test ones
TONIC_ARCHIVES = (
    Archive("ibmGestureTrain.tar.gz", "3a8f0d4120a166bac7591f77409cb105", "ibmGestureTrain",
            "https://figshare.com/ndownloader/files/38022171", "tonic"),
    Archive("ibmGestureTest.tar.gz", "56070e45dadaa85fff82e0fbfbc06de5", "ibmGestureTest",
            "https://figshare.com/ndownloader/files/38020584", "tonic"),
)
IBM_PAGE = "https://research.ibm.com/dvsgesture/"

# The paper's clip recipe for spikformer_2_256 on DVS128 Gesture, as TrainConfig fields
# (../shared/reference/spikformer.md §3.2, reconstructed from zhouchenlin2096/Spikingformer and
# zhouchenlin2096/QKFormer dvs128-gesture/train.py, after ZK-Zhou/spikformer cifar10dvs/train.py):
# T = 16 frames of equal event count, batch 16, AdamW 1e-3 / 0.06, cosine with 10 warm-up epochs
# from 1e-5 to a 1e-5 floor, 192 + 10 cooldown epochs, mixup 0.5 (p 0.5, off from epoch 75),
# label smoothing 0.1, AMP, seed 2021. The augmentation is GestureAugment: SNNAugmentWide without
# the plain horizontal flip, which would relabel left-hand gestures as right-hand ones (§3.3).
PAPER_RECIPE: dict[str, Any] = {
    "model": "spikformer_2_256",
    "steps": 16,
    "split_by": "number",
    "epochs": 202,
    "batch": 16,
    "lr": 1e-3,
    "weight_decay": 0.06,
    "warmup_epochs": 10.0,
    "warmup_lr": 1e-5,
    "min_lr": 1e-5,
    "cooldown_epochs": 10,
    "mixup_alpha": 0.5,
    "mixup_prob": 0.5,
    "mixup_off_epoch": 75,
    "smoothing": 0.1,
    "augment": True,
    "amp": True,
    "seed": 2021,
}


def recipe_defaults(recipe: str = "clip") -> dict[str, Any]:
    """The TrainConfig defaults ``--dataset dvsgesture`` selects for a recipe.

    ``"clip"``: :data:`PAPER_RECIPE`. ``"stream"``: the same model, T and schedule, but fixed time
    steps (the stream recipe bins time, ``TrainConfig.step_ms``) and no mixup settings (the stream
    recipe never mixes).
    """
    if recipe == "clip":
        return dict(PAPER_RECIPE)
    drop = ("split_by", "mixup_alpha", "mixup_prob", "mixup_off_epoch")
    return {k: v for k, v in PAPER_RECIPE.items() if k not in drop}


def known_checksums(archives: tuple[Archive, ...] = (IBM_ARCHIVE, *TONIC_ARCHIVES)) -> dict[str, str]:
    """File name → expected md5: the known table, with ``$EVSTREAM_DVSGESTURE_MD5SUMS``'s entries on top.

    Raises:
        DatasetError: the override file cannot be read or has a malformed line (names file and line).
    """
    table = {a.filename: a.md5 for a in archives}
    override = os.environ.get(MD5SUMS_ENV)
    if not override:
        return table
    try:
        text = Path(override).read_text()
    except OSError as err:
        raise DatasetError(f"{override} (${MD5SUMS_ENV}): cannot read: {err.strerror or err}") from None
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        parts = line.split()
        if len(parts) != 2 or len(parts[0]) != 32 or any(c not in "0123456789abcdef" for c in parts[0].lower()):
            raise DatasetError(f"{override}: line {number}: expected '<32 hex md5>  <file name>' (md5sum format)")
        table[parts[1].lstrip("*")] = parts[0].lower()
    return table


# -- progress ------------------------------------------------------------------------------------


class _Progress:
    """A byte counter: a tqdm bar on a terminal (when tqdm imports), else a plain line every 10 %."""

    def __init__(self, total: int | None, desc: str) -> None:
        self.total, self.desc, self.done, self._shown = total, desc, 0, -1
        self._bar = None
        if sys.stderr.isatty():
            try:
                from tqdm import tqdm
            except ImportError:
                pass
            else:
                self._bar = tqdm(total=total, desc=desc, unit="B", unit_scale=True, leave=False)

    def update(self, n: int) -> None:
        self.done += n
        if self._bar is not None:
            self._bar.update(n)
            return
        if self.total:
            tenth = min(10, self.done * 10 // self.total)
            if tenth > self._shown:
                self._shown = tenth
                print(f"{self.desc}: {tenth * 10}% ({_mb(self.done)} of {_mb(self.total)})", flush=True)
        elif self.done // (100 << 20) > self._shown:  # unknown size: a line every 100 MB
            self._shown = self.done // (100 << 20)
            print(f"{self.desc}: {_mb(self.done)}", flush=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


def _mb(n: int) -> str:
    return f"{n / 1e6:,.1f} MB"


# -- verify, download, unpack --------------------------------------------------------------------


def md5_of(path: str | os.PathLike, desc: str | None = None) -> str:
    """Hex md5 of a file, read in 4 MiB pieces (``desc``: show progress under that name)."""
    path = Path(path)
    digest = hashlib.md5()
    progress = _Progress(path.stat().st_size, desc) if desc else None
    with open(path, "rb") as fh:
        while chunk := fh.read(4 << 20):
            digest.update(chunk)
            if progress is not None:
                progress.update(len(chunk))
    if progress is not None:
        progress.close()
    return digest.hexdigest()


def _gzip_ends_early(path: Path) -> bool:
    """True when the gzip stream of ``path`` stops before its end marker (a truncated file)."""
    try:
        with gzip.open(path, "rb") as fh:
            while fh.read(4 << 20):
                pass
    except EOFError:
        return True
    except (OSError, zlib.error):
        return False
    return False


def verify_archive(path: str | os.PathLike, md5: str, *, show: bool = True) -> None:
    """Check an archive against its expected md5.

    Raises:
        DatasetError: missing; incomplete (the gzip stream ends early: an interrupted download or
            copy); or another md5 (damaged, or a different file). One line naming the file.
    """
    path = Path(path)
    try:
        size = path.stat().st_size
        digest = md5_of(path, f"verify {path.name}" if show else None)
    except OSError as err:
        raise DatasetError(f"{path}: cannot read: {err.strerror or err}") from None
    if digest == md5:
        return
    if _gzip_ends_early(path):
        raise DatasetError(
            f"{path}: incomplete archive ({size:,} bytes; its gzip stream ends early): an interrupted download "
            "or copy; delete it and download or copy it again"
        )
    raise DatasetError(
        f"{path}: md5 {digest} is not {path.name}'s {md5} ({size:,} bytes): damaged or a different file; "
        "delete it and download or copy it again"
    )


def _source_url(archive: Archive, mirror: str | None) -> str:
    if mirror is None:
        if archive.url is None:
            raise DatasetError(f"{archive.filename}: no download address (IBM serves it from {IBM_PAGE} only)")
        return archive.url
    if "://" not in mirror:  # a folder on this machine
        return (Path(mirror).expanduser().resolve() / archive.filename).as_uri()
    return mirror.rstrip("/") + "/" + archive.filename


def download_archive(
    archive: Archive,
    folder: str | os.PathLike,
    *,
    mirror: str | None = None,
    md5: str | None = None,
    timeout: float = 60.0,
    also: tuple[str, ...] = (),
) -> Path:
    """Download ``archive`` into ``folder`` (written as ``<name>.part``, renamed once verified).

    Args:
        archive: what to fetch; from ``archive.url`` unless ``mirror`` is given.
        folder: where the archive goes.
        mirror: a base URL (``http://``, ``https://``, ``file://``) or a folder holding the archive
            under its own file name, used instead of the release's address.
        md5: expected md5 (default ``archive.md5``).
        timeout: seconds without data before the download is given up.
        also: names of further archives the user needs, for the message when there is no network.

    Returns:
        The path of the verified archive.

    Raises:
        DatasetError: the address cannot be reached (no network), answers with an HTTP error, the
            transfer ends short of its ``Content-Length``, or the file's md5 differs. One line.
    """
    folder = Path(folder)
    url = _source_url(archive, mirror)
    dest = folder / archive.filename
    part = dest.with_name(dest.name + ".part")
    total: int | None = None
    received = 0
    print(f"download: {url} -> {dest}", flush=True)
    try:
        request = urllib.request.Request(url, headers={"User-Agent": "evstream"})
        with urllib.request.urlopen(request, timeout=timeout) as response:
            folder.mkdir(parents=True, exist_ok=True)
            length = response.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
            progress = _Progress(total, f"download {archive.filename}")
            with open(part, "wb") as fh:
                while chunk := response.read(1 << 20):
                    fh.write(chunk)
                    received += len(chunk)
                    progress.update(len(chunk))
            progress.close()
    except urllib.error.HTTPError as err:
        part.unlink(missing_ok=True)
        raise DatasetError(f"download: {url}: HTTP {err.code} {err.reason}") from None
    except http.client.IncompleteRead as err:
        part.unlink(missing_ok=True)
        got = received + len(err.partial)
        raise DatasetError(
            f"download: {url}: incomplete: the connection closed after {got:,} of {total or got + err.expected:,} "
            "bytes; run again to retry"
        ) from None
    except (urllib.error.URLError, OSError, http.client.HTTPException, ValueError) as err:
        part.unlink(missing_ok=True)
        reason = getattr(err, "reason", None) or err
        if received:
            raise DatasetError(f"download: {url}: broken off after {received:,} bytes ({reason}); run again to retry") \
                from None
        names = ", ".join(dict.fromkeys((archive.filename, *also)))
        where = f"copy {names} into {folder} from a machine that has one" + (
            "" if mirror else ", or point --mirror at a copy"
        )
        raise DatasetError(f"download: cannot fetch {url} ({reason}): no network here? {where}") from None
    if total is not None and received != total:
        part.unlink(missing_ok=True)
        raise DatasetError(f"download: {url}: incomplete: {received:,} of {total:,} bytes arrived; run again to retry")
    try:
        verify_archive(part, md5 or archive.md5)
    except DatasetError as err:
        part.unlink(missing_ok=True)
        raise DatasetError(f"download: {url}: {err}") from None
    part.replace(dest)
    return dest


_HAS_FILTER = hasattr(tarfile, "data_filter")  # extraction filters: Python 3.11.4+ (PEP 706)


class _CountingReader:
    """A read-only file wrapper that reports how many bytes were read (progress of an unpack)."""

    def __init__(self, fh: Any, report: Callable[[int], None]) -> None:
        self._fh, self._report = fh, report

    def read(self, n: int = -1) -> bytes:
        data = self._fh.read(n)
        self._report(len(data))
        return data


def _marker(folder: Path) -> dict[str, Any] | None:
    try:
        return json.loads((folder / MARKER).read_text())
    except (OSError, ValueError):
        return None


def unpack_archive(path: str | os.PathLike, dest: str | os.PathLike, archive: Archive, md5: str) -> Path:
    """Unpack ``path`` into ``dest``; returns ``dest / archive.folder`` with its marker written.

    Only members inside ``archive.folder/`` are written (any other member is skipped and counted),
    through tarfile's ``data`` filter (no absolute paths, no links out of ``dest``). Files already
    there are overwritten, nothing is deleted; the marker is written last, so an interrupted unpack
    is simply redone.

    Raises:
        DatasetError: the archive is not a readable tar.gz, or holds no ``archive.folder/``.
    """
    path, dest = Path(path), Path(dest)
    target = dest / archive.folder
    size = path.stat().st_size
    progress = _Progress(size, f"unpack {path.name}")
    written = skipped = 0
    try:
        with open(path, "rb") as raw, tarfile.open(fileobj=_CountingReader(raw, progress.update), mode="r|gz") as tar:
            for member in tar:
                parts = PurePosixPath(member.name).parts
                parts = parts[1:] if parts[:1] == (".",) else parts
                if not parts or parts[0] != archive.folder:
                    skipped += 1
                    continue
                member.name = "/".join(parts)
                if _HAS_FILTER:
                    tar.extract(member, dest, filter="data")
                elif ".." not in parts and (member.isfile() or member.isdir()):  # Python < 3.11.4: no filters
                    tar.extract(member, dest)
                else:
                    skipped += 1
                    continue
                written += member.isfile()
    except (tarfile.TarError, EOFError, zlib.error, OSError) as err:
        raise DatasetError(f"{path}: cannot unpack: {err}") from None
    finally:
        progress.close()
    if not target.is_dir():
        raise DatasetError(f"{path}: holds no {archive.folder}/ folder: not the {archive.filename} of the release")
    (target / MARKER).write_text(json.dumps({"archive": archive.filename, "size": size, "md5": md5}) + "\n")
    print(f"unpacked {path.name}: {written} files into {target}" + (f" ({skipped} other members skipped)"
                                                                  if skipped else ""), flush=True)
    return target


# -- finding a release in DIR --------------------------------------------------------------------


@dataclass(frozen=True)
class DatasetLocation:
    """Where a prepared release lies and how training reads it."""

    data: Path  # TrainConfig.data
    layout: Literal["ibm", "tonic"]  # TrainConfig.layout
    release: str  # in words, for the card and the printed summary
    archives: tuple[tuple[str, str], ...]  # (archive file name, md5) behind the data; md5 "" when not verified


def _ready(target: Path, archive: Archive, md5: str) -> bool:
    marker = _marker(target)
    return marker is not None and marker.get("archive") == archive.filename and marker.get("md5") == md5


def _prepare_one(
    archive: Archive, archive_path: Path | None, dest: Path, md5: str, verified: bool = False
) -> tuple[str, str]:
    """Verify (unless ``verified``) and unpack one archive unless its folder is already marked unpacked from it."""
    target = dest / archive.folder
    if _ready(target, archive, md5):
        return archive.filename, md5
    if archive_path is None:  # an unpacked folder without its archive: used as it is
        print(f"dataset: {target} used as found (no {archive.filename} beside it to verify)", flush=True)
        return archive.filename, ""
    if not verified:
        verify_archive(archive_path, md5)
    print(f"verified {archive_path} (md5 {md5})", flush=True)
    unpack_archive(archive_path, dest, archive, md5)
    return archive.filename, md5


def prepare_dvsgesture(
    root: str | os.PathLike,
    *,
    download: bool = False,
    mirror: str | None = None,
    recipe: str = "clip",
    unpack: bool = True,
) -> DatasetLocation:
    """Find DVS128 Gesture in ``root``; verify, unpack and (with ``download``) fetch what is missing.

    Looked for, in this order: IBM's release (``root/DvsGesture.tar.gz``, or an unpacked
    ``root/DvsGesture/`` with its trials lists, or ``root`` itself being that folder), then tonic's
    copy (``ibmGestureTrain.tar.gz`` / ``ibmGestureTest.tar.gz`` in ``root/DVSGesture/`` or ``root``,
    or their unpacked folders in ``root/DVSGesture/``). With ``download``, tonic's archives that
    are missing are fetched into ``root/DVSGesture/`` (from figshare, or ``mirror``).

    Args:
        root: the ``--data`` folder.
        download: fetch tonic's copy when no release is found (needs a network, or ``mirror``).
        mirror: see :func:`download_archive`.
        recipe: ``"stream"`` needs whole recordings, i.e. IBM's release; refused before any download.
        unpack: ``False`` refuses to verify, unpack or download (several processes under ``torchrun``
            must find the data ready).

    Raises:
        DatasetError: nothing found (and no ``download``), a verification or download fault, or a
            release that does not fit ``recipe``. One line.
    """
    root = Path(root).expanduser()
    sums = known_checksums()
    if (root / "trials_to_train.txt").is_file() and (root / "trials_to_test.txt").is_file():
        return DatasetLocation(root, "ibm", "IBM DvsGesture release (unpacked folder)", ((IBM_ARCHIVE.filename, ""),))
    ibm_tar = root / IBM_ARCHIVE.filename
    ibm_dir = root / IBM_ARCHIVE.folder
    ibm_found = ibm_tar.is_file() or (ibm_dir / "trials_to_train.txt").is_file()
    if ibm_found:
        md5 = sums[IBM_ARCHIVE.filename]
        if not _ready(ibm_dir, IBM_ARCHIVE, md5) and ibm_tar.is_file() and not unpack:
            raise DatasetError(_not_ready(root, ibm_tar))
        entry = _prepare_one(IBM_ARCHIVE, ibm_tar if ibm_tar.is_file() else None, root, md5)
        return DatasetLocation(ibm_dir, "ibm", "IBM DvsGesture release (DvsGesture.tar.gz)", (entry,))

    tonic_dest = root / TONIC_FOLDER
    state = []
    for archive in TONIC_ARCHIVES:
        tar = next((p for p in (tonic_dest / archive.filename, root / archive.filename) if p.is_file()), None)
        state.append((archive, tar, (tonic_dest / archive.folder).is_dir()))
    tonic_found = any(tar is not None or unpacked for _, tar, unpacked in state)
    if recipe == "stream":
        what = "tonic's copy found here" if tonic_found else "nothing found here"
        raise DatasetError(
            f"{root}: --recipe stream needs whole recordings, i.e. IBM's {IBM_ARCHIVE.filename} ({IBM_PAGE}) in "
            f"this folder; {what}{' holds only cut clips' if tonic_found else ''} (tonic's copy serves --recipe clip)"
        )
    missing = [a for a, tar, unpacked in state if tar is None and not unpacked]
    if missing and not download:
        names = " and ".join(a.filename for a in missing)
        raise DatasetError(
            f"{root}: no DVS128 Gesture here: put IBM's {IBM_ARCHIVE.filename} ({IBM_PAGE}; the paper's split) into "
            f"this folder, or add --download to fetch tonic's copy ({names} from figshare)"
        )
    entries = []
    for archive, tar, unpacked in state:
        md5 = sums[archive.filename]
        if _ready(tonic_dest / archive.folder, archive, md5):
            entries.append((archive.filename, md5))
            continue
        if not unpack and (tar is not None or not unpacked):
            raise DatasetError(_not_ready(root, tar or tonic_dest / archive.filename))
        fetched = tar is None and not unpacked
        if fetched:
            tar = download_archive(archive, tonic_dest, mirror=mirror, md5=md5, also=tuple(a.filename for a in missing))
        entries.append(_prepare_one(archive, tar, tonic_dest, md5, verified=fetched))
    return DatasetLocation(root, "tonic", "tonic's DVSGesture copy (ibmGestureTrain/Test.tar.gz)", tuple(entries))


def _not_ready(root: Path, archive: Path) -> str:
    return (
        f"{archive}: not verified and unpacked yet, and several processes (torchrun) must not do it at once: run "
        f"'python main.py train --dataset dvsgesture --data {shlex.quote(str(root))} --prepare-only' first"
    )


# -- the model card ------------------------------------------------------------------------------


def write_model_card(
    path: str | os.PathLike,
    *,
    checkpoint: str | os.PathLike,
    best: dict[str, Any],
    config: Any,
    location: DatasetLocation,
    command: str,
    wall_s: float,
) -> Path:
    """Write a markdown model card for a training run on DVS128 Gesture beside its checkpoint.

    Args:
        path: the card (``PATH.md`` beside ``PATH.pt``).
        checkpoint: the best checkpoint (read for the architecture and its parameter count).
        best: what :func:`models.train.train` returned (best metrics, ``history``, ``confusion_png``).
        config: the :class:`models.train.TrainConfig` of the run.
        location: the prepared release.
        command: the command line that reproduces the run.
        wall_s: training wall time in seconds.
    """
    import torch

    from models.checkpoint import load_checkpoint
    from models.train import resolve_device

    path = Path(path)
    loaded = load_checkpoint(checkpoint)
    model = loaded.model
    params = sum(p.numel() for p in model.parameters())
    pre = loaded.preprocessing
    names = list(loaded.class_names)
    confusion = best.get("confusion") or []
    stream = config.recipe == "stream"
    device = resolve_device(config.device).type
    frames = f"{pre['steps']} frames of equal event count per clip" if pre.get("mode") == "count" else \
        f"{pre['steps']} steps of {pre['step_us'] / 1000:g} ms"
    train_args = dataclasses.asdict(config) if dataclasses.is_dataclass(config) else dict(config)
    rows = [
        ("file", f"`{Path(checkpoint).name}` (best epoch), `{Path(checkpoint).stem}_last.pt` (for --resume)"),
        ("architecture", f"`{loaded.arch}`, {params:,} parameters, input `[T, B, 2, {model.config.img_size[0]}, "
                         f"{model.config.img_size[1]}]`"),
        ("input", frames + ", channel 0 OFF, 1 ON"),
        ("classes", f"{len(names)}: {', '.join(names)}"),
        ("data", f"{location.release} in `{location.data}` ({location.layout} layout)"),
        ("archives", ", ".join(f"`{name}` md5 {md5 or 'not verified (unpacked folder used as found)'}"
                               for name, md5 in location.archives)),
        ("recipe", f"`{config.recipe}`" + (" (per-step TET loss, warm state)" if stream else " (the paper's)")),
        ("trained", f"epochs run: {len(best.get('history', []))} of {config.epochs}, "
                    + (f"{wall_s / 60:.1f} min" if wall_s >= 60 else f"{wall_s:.0f} s")),
        ("on", f"{device.upper()}, torch {torch.__version__}, AMP "
               + ("on" if config.amp and device == "cuda" else "off")),
    ]
    what = "gesture-step top-1" if stream else "clip top-1"
    lines = [
        f"# Model card: `{Path(checkpoint).stem}`",
        "",
        "| item | value |",
        "|---|---|",
        *(f"| {k} | {v} |" for k, v in rows),
        "",
        "## Command",
        "",
        f"    {command}",
        "",
        "Every setting, as the run used it: "
        + ", ".join(f"`{k}={train_args[k]!r}`" for k in sorted(train_args) if k not in ("data", "out")),
        "",
        "## Figures",
        "",
    ]
    if "epoch" in best:
        lines += [
            f"- best held-out epoch: {best['epoch'] + 1}; {what} **{best['top1']:.4f}** "
            f"({best['correct']} / {best['samples']}), test loss {best['test_loss']:.4f}",
        ]
        if stream:
            lines.append(f"- rest steps undecided {best['rest_undecided']:.4f}, clip top-1 {best['clip_top1']:.4f}, "
                         f"score {best['score']:.4f} (the metric that picked the epoch)")
        lines += [
            "- the test split picked the epoch (as the papers report: best test epoch, no validation set), "
            "so the figure is slightly optimistic",
        ]
    if not stream:
        reported = ("- reported: Spikformer-2-256, T = 16 equal-count frames: 98.3 % top-1 on IBM's split (288 test "
                    "clips, 1 clip = 0.347 pp; arXiv 2505.15840 Tab. 3); this run: "
                    f"`{loaded.arch}`, T = {pre['steps']}, {best.get('samples', 0)} test clips")
        if location.layout == "tonic":
            reported += "; tonic's split (264 test clips in the full copy) is another split: not comparable"
        lines.append(reported)
    if confusion:
        lines += ["", "Per class (rows of the confusion matrix: true class):", "", "| class | correct | of | top-1 |",
                  "|---|---|---|---|"]
        for i, name in enumerate(names):
            total = sum(confusion[i])
            lines.append(f"| {name} | {confusion[i][i]} | {total} | {confusion[i][i] / total:.3f} |" if total
                         else f"| {name} | 0 | 0 | – |")
    if best.get("confusion_png"):
        png = Path(best["confusion_png"])
        lines += ["", f"![confusion matrix]({png.name})"]
    history = best.get("history", [])
    if history:
        lines += ["", "## Epochs", "", "| epoch | train loss | train top-1 | test top-1 |", "|---|---|---|---|"]
        for record in history:
            test = f"{record['test_top1']:.4f}" if "test_top1" in record else "–"
            lines.append(f"| {record['epoch'] + 1} | {record['train_loss']:.4f} | {record['train_top1']:.4f} | {test} |")
    lines += ["", f"Written {time.strftime('%Y-%m-%d %H:%M')} by `python main.py train --dataset dvsgesture`.", ""]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines))
    return path
