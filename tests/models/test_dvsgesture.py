"""``train --dataset dvsgesture``: miniature archives in the releases' exact layouts, verified by md5,
refused when truncated or damaged, downloaded from a real HTTP server on 127.0.0.1 (or not, when
nothing listens), unpacked once, and trained end to end for one epoch on a tiny model."""

from __future__ import annotations

import argparse
import functools
import hashlib
import http.server
import io
import json
import tarfile
import threading
from pathlib import Path

import numpy as np
import pytest

import models
from evstream.cli import main as cli_main
from evstream.commands import train as train_command
from evstream.errors import ConfigError
from evstream.events import SensorSize
from evstream.io.aedat3 import write_aedat3
from models import dvsgesture
from models.data import IBMGestureDataset, TonicGestureDataset
from models.dvsgesture import (
    IBM_ARCHIVE,
    MD5SUMS_ENV,
    PAPER_RECIPE,
    TONIC_ARCHIVES,
    DatasetError,
    prepare_dvsgesture,
    verify_archive,
)
from tests.helpers import free_port, random_events

SENSOR = SensorSize(128, 128)
# IBM's release: per recording, (0-based label, start µs, end µs) rows of its _labels.csv.
IBM_TRAIN = {"user01_fluorescent": [(0, 1_000_000, 1_400_000), (3, 1_500_000, 1_900_000), (7, 2_000_000, 2_400_000)]}
IBM_TEST = {"user24_led": [(2, 3_000_000, 3_400_000), (10, 3_500_000, 3_900_000)]}
# tonic's copy: per split folder, user folder -> the labels of its clips.
TONIC = {
    "ibmGestureTrain": {"user01_fluorescent": (0, 4, 9), "user02_natural": (1, 10)},
    "ibmGestureTest": {"user24_led": (2, 7)},
}
TINY = ["--model", "spikformer_tiny", "--epochs", "1", "--batch", "2", "--steps", "4", "--device", "cpu"]


def _tar_gz(path, members):
    """Write a tar.gz of ``{arcname: bytes}`` with a directory entry for every folder, as tar writes them."""
    folders = sorted({"/".join(name.split("/")[:i]) for name in members for i in range(1, name.count("/") + 1)})
    with tarfile.open(path, "w:gz") as tar:
        for folder in folders:
            info = tarfile.TarInfo(folder)
            info.type, info.mode = tarfile.DIRTYPE, 0o755
            tar.addfile(info)
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o644
            tar.addfile(info, io.BytesIO(data))
    return path


def _aedat_bytes(events, tmp_path):
    scratch = tmp_path / "scratch.aedat"
    write_aedat3(scratch, events)
    data = scratch.read_bytes()
    scratch.unlink()
    return data


def ibm_archive(folder, tmp_path):
    """A miniature ``DvsGesture.tar.gz``: ``DvsGesture/`` holding AEDAT 3.1 recordings, their
    ``_labels.csv`` (1-based classes, CRLF, IBM's header) and the two trials lists."""
    members = {}
    for seed, (split, recordings) in enumerate((("train", IBM_TRAIN), ("test", IBM_TEST))):
        members[f"DvsGesture/trials_to_{split}.txt"] = "".join(f"{n}.aedat\r\n" for n in recordings).encode()
        for name, segments in recordings.items():
            first, last = segments[0][1] - 100_000, segments[-1][2] + 100_000
            events = random_events(6_000, SENSOR, first, last - first, seed=seed)
            members[f"DvsGesture/{name}.aedat"] = _aedat_bytes(events, tmp_path)
            rows = ["class,startTime_usec,endTime_usec"] + [f"{lab + 1},{t0},{t1}" for lab, t0, t1 in segments]
            members[f"DvsGesture/{name}_labels.csv"] = ("\r\n".join(rows) + "\r\n").encode()
    folder.mkdir(parents=True, exist_ok=True)
    return _tar_gz(folder / IBM_ARCHIVE.filename, members)


def tonic_archives(folder):
    """Miniature ``ibmGestureTrain.tar.gz`` / ``ibmGestureTest.tar.gz``: ``<split>/userNN_<lighting>/<label>.npy``,
    each an (N, 4) float array of x, y, p, t in ms, as tonic's copy stores its clips."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for archive in TONIC_ARCHIVES:
        members = {}
        for u, (user, labels) in enumerate(TONIC[archive.folder].items()):
            for label in labels:
                ev = random_events(1_500, SENSOR, 1_000_000 * label, 300_000, seed=10 * u + label)
                raw = np.stack([ev["x"], ev["y"], ev["p"], ev["t"] / 1000.0], axis=1).astype(np.float64)
                buffer = io.BytesIO()
                np.save(buffer, raw)
                members[f"{archive.folder}/{user}/{label}.npy"] = buffer.getvalue()
        paths.append(_tar_gz(folder / archive.filename, members))
    return paths


def md5sums(path, archives):
    """An md5sum-format file of the miniature archives, named by ``$EVSTREAM_DVSGESTURE_MD5SUMS``."""
    path.write_text("".join(f"{hashlib.md5(a.read_bytes()).hexdigest()}  {a.name}\n" for a in archives))
    return path


@pytest.fixture()
def served(tmp_path, monkeypatch):
    """tonic's two miniature archives behind a real HTTP server on 127.0.0.1; their md5s as the known ones."""
    site = tmp_path / "site"
    archives = tonic_archives(site)
    monkeypatch.setenv(MD5SUMS_ENV, str(md5sums(tmp_path / "MD5SUMS", archives)))
    handler = functools.partial(_QuietHandler, directory=str(site))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", archives
    server.shutdown()
    server.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


class _ShortHandler(_QuietHandler):
    """Announces the whole file's Content-Length, sends half of it, closes."""

    def do_GET(self):
        data = (Path(self.directory) / self.path.lstrip("/")).read_bytes()
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data[: len(data) // 2])
        self.wfile.flush()
        self.close_connection = True


def one_line_error(capsys):
    err = capsys.readouterr().err
    assert err.startswith("error: ") and len(err.strip().splitlines()) == 1, err
    return err


# -- the known archives ---------------------------------------------------------------------------


def test_known_tonic_archives_are_tonics_own():
    from tonic.datasets import DVSGesture

    train, test = TONIC_ARCHIVES
    assert (train.filename, train.url, train.md5) == (DVSGesture.train_filename, DVSGesture.train_url,
                                                      DVSGesture.train_md5)
    assert (test.filename, test.url, test.md5) == (DVSGesture.test_filename, DVSGesture.test_url, DVSGesture.test_md5)
    assert (train.folder, test.folder) == ("ibmGestureTrain", "ibmGestureTest")  # tonic's folder_name


def test_md5sums_override_replaces_known_checksums_and_a_bad_line_is_named(tmp_path, monkeypatch):
    assert dvsgesture.known_checksums()[IBM_ARCHIVE.filename] == IBM_ARCHIVE.md5
    sums = tmp_path / "MD5SUMS"
    sums.write_text(f"{'ab' * 16}  *{IBM_ARCHIVE.filename}\n")
    monkeypatch.setenv(MD5SUMS_ENV, str(sums))
    table = dvsgesture.known_checksums()
    assert table[IBM_ARCHIVE.filename] == "ab" * 16 and table[TONIC_ARCHIVES[0].filename] == TONIC_ARCHIVES[0].md5
    sums.write_text("\nnot-a-checksum  x.tar.gz\n")
    with pytest.raises(DatasetError, match=r"MD5SUMS: line 2: expected"):
        dvsgesture.known_checksums()


# -- verification ---------------------------------------------------------------------------------


def test_ibm_archive_is_verified_unpacked_once_and_read_by_the_ibm_loader(tmp_path, monkeypatch, capsys):
    root = tmp_path / "gesture"
    archive = ibm_archive(root, tmp_path)
    monkeypatch.setenv(MD5SUMS_ENV, str(md5sums(tmp_path / "MD5SUMS", [archive])))
    location = prepare_dvsgesture(root)
    assert location.layout == "ibm" and location.data == root / "DvsGesture"
    assert location.archives == ((IBM_ARCHIVE.filename, hashlib.md5(archive.read_bytes()).hexdigest()),)
    printed = capsys.readouterr().out
    assert f"verified {archive}" in printed and "unpacked DvsGesture.tar.gz: 6 files" in printed
    train = IBMGestureDataset(location.data, "train", steps=4, mode="count")
    test = IBMGestureDataset(location.data, "test", steps=4, mode="count")
    assert train.labels == [0, 3, 7] and test.labels == [2, 10]
    marker = json.loads((location.data / ".evstream_unpacked.json").read_text())
    assert marker == {"archive": "DvsGesture.tar.gz", "size": archive.stat().st_size,
                      "md5": location.archives[0][1]}
    assert prepare_dvsgesture(root) == location  # marked: neither verified nor unpacked again
    assert "verified" not in capsys.readouterr().out


def test_truncated_and_damaged_archives_are_refused_in_one_line_naming_the_file(tmp_path, monkeypatch, capsys):
    root = tmp_path / "gesture"
    archive = ibm_archive(root, tmp_path)
    monkeypatch.setenv(MD5SUMS_ENV, str(md5sums(tmp_path / "MD5SUMS", [archive])))
    whole = archive.read_bytes()
    archive.write_bytes(whole[: len(whole) * 2 // 3])
    with pytest.raises(DatasetError, match=r"DvsGesture\.tar\.gz: incomplete archive \([\d,]+ bytes; its gzip stream"):
        verify_archive(archive, hashlib.md5(whole).hexdigest(), show=False)
    code = cli_main(["train", "--dataset", "dvsgesture", "--data", str(root), *TINY, "--out", str(tmp_path / "x.pt")])
    err = one_line_error(capsys)
    assert code == 2 and f"{archive}: incomplete archive" in err
    assert not (root / "DvsGesture").exists() and not (tmp_path / "x.pt").exists()

    damaged = bytearray(whole)
    damaged[len(damaged) // 2] ^= 0xFF
    archive.write_bytes(bytes(damaged))
    code = cli_main(["train", "--dataset", "dvsgesture", "--data", str(root), *TINY, "--out", str(tmp_path / "x.pt")])
    err = one_line_error(capsys)
    assert code == 2 and f"{archive}: md5 " in err and f"is not DvsGesture.tar.gz's {hashlib.md5(whole).hexdigest()}" \
        in err


def test_unpacking_writes_only_the_release_folder_and_refuses_a_member_that_climbs_out(tmp_path, capsys):
    archive = _tar_gz(tmp_path / "x.tar.gz", {"DvsGesture/a.txt": b"a", "other/b.txt": b"b"})
    target = dvsgesture.unpack_archive(archive, tmp_path / "out", IBM_ARCHIVE, "0" * 32)
    assert (target / "a.txt").read_bytes() == b"a" and not (tmp_path / "out" / "other").exists()
    assert "2 other members skipped" in capsys.readouterr().out  # other/ and other/b.txt
    hostile = _tar_gz(tmp_path / "h.tar.gz", {"DvsGesture/../../evil.txt": b"x"})
    with pytest.raises(DatasetError, match=r"h\.tar\.gz: cannot unpack"):
        dvsgesture.unpack_archive(hostile, tmp_path / "out2" / "deep", IBM_ARCHIVE, "0" * 32)
    assert not (tmp_path / "out2" / "evil.txt").exists() and not (tmp_path / "evil.txt").exists()


def test_an_empty_folder_without_download_says_what_to_put_there(tmp_path, capsys):
    code = cli_main(["train", "--dataset", "dvsgesture", "--data", str(tmp_path), *TINY])
    err = one_line_error(capsys)
    assert code == 2 and "no DVS128 Gesture here" in err and "DvsGesture.tar.gz" in err and "--download" in err


# -- download -------------------------------------------------------------------------------------


def test_no_network_is_one_line_and_leaves_nothing_behind(tmp_path, capsys):
    root = tmp_path / "gesture"
    mirror = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    code = cli_main(["train", "--dataset", "dvsgesture", "--data", str(root), "--download", "--mirror", mirror, *TINY])
    err = one_line_error(capsys)
    assert code == 2 and f"cannot fetch {mirror}/ibmGestureTrain.tar.gz" in err and "no network here?" in err
    assert "ibmGestureTrain.tar.gz, ibmGestureTest.tar.gz" in err  # both files the user must bring
    assert not root.exists()


def test_the_stream_recipe_on_tonics_copy_is_refused_before_any_download(tmp_path, capsys):
    mirror = f"http://127.0.0.1:{free_port()}"
    code = cli_main(["train", "--dataset", "dvsgesture", "--data", str(tmp_path), "--download", "--mirror", mirror,
                     "--recipe", "stream", *TINY])
    err = one_line_error(capsys)
    assert code == 2 and "--recipe stream needs whole recordings" in err and "cannot fetch" not in err


def test_download_from_a_local_server_is_verified_and_unpacked_into_tonics_layout(served, tmp_path, capsys):
    url, archives = served
    root = tmp_path / "gesture"
    code = cli_main(["train", "--dataset", "dvsgesture", "--data", str(root), "--download", "--mirror", url,
                     "--prepare-only"])
    assert code == 0
    for archive in archives:
        got = root / "DVSGesture" / archive.name
        assert got.read_bytes() == archive.read_bytes() and not got.with_name(got.name + ".part").exists()
    printed = capsys.readouterr().out
    assert f"download: {url}/ibmGestureTrain.tar.gz" in printed and "download ibmGestureTest.tar.gz: 100%" in printed
    train = TonicGestureDataset(root, "train", steps=4, mode="count")
    assert sorted(train.labels) == [0, 1, 4, 9, 10] and len(TonicGestureDataset(root, "test", steps=4)) > 0


def test_a_transfer_that_ends_short_is_refused_and_no_archive_is_kept(served, tmp_path, capsys):
    url, archives = served
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(_ShortHandler, directory=str(archives[0].parent))
    )
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        short = f"http://127.0.0.1:{server.server_address[1]}"
        code = cli_main(["train", "--dataset", "dvsgesture", "--data", str(tmp_path / "g"), "--download",
                         "--mirror", short, "--prepare-only"])
    finally:
        server.shutdown()
        server.server_close()
    err = one_line_error(capsys)
    size = archives[0].stat().st_size
    assert code == 2 and f"{short}/ibmGestureTrain.tar.gz: incomplete" in err and f"{size:,}" in err
    assert list((tmp_path / "g" / "DVSGesture").iterdir()) == []


def test_torchrun_processes_refuse_to_unpack_and_name_the_prepare_command(tmp_path, monkeypatch, capsys):
    root = tmp_path / "gesture"
    archive = ibm_archive(root, tmp_path)
    monkeypatch.setenv(MD5SUMS_ENV, str(md5sums(tmp_path / "MD5SUMS", [archive])))
    monkeypatch.setenv("WORLD_SIZE", "2")
    code = cli_main(["train", "--dataset", "dvsgesture", "--data", str(root), *TINY])
    err = one_line_error(capsys)
    assert code == 2 and "--prepare-only" in err and not (root / "DvsGesture").exists()


# -- the recipe ---------------------------------------------------------------------------------


def _parse(*argv):
    parser = argparse.ArgumentParser()
    train_command.add_arguments(parser)
    return parser.parse_args(["--data", "D", "--out", "o.pt", *argv])


def test_dataset_selects_the_paper_recipe_and_every_flag_still_overrides_it():
    location = dvsgesture.DatasetLocation(Path("D/DvsGesture"), "ibm", "IBM", ())
    config = train_command.build_config(_parse("--dataset", "dvsgesture"), location)
    for field, value in PAPER_RECIPE.items():
        assert getattr(config, field) == value, field
    assert config.step_ms is None and config.layout == "ibm" and config.data == "D/DvsGesture"
    assert (PAPER_RECIPE["epochs"], PAPER_RECIPE["cooldown_epochs"], PAPER_RECIPE["steps"]) == (202, 10, 16)

    flags = ["--model", "spikformer_2_64", "--epochs", "3", "--batch", "4", "--steps", "8", "--lr", "0.002",
             "--weight-decay", "0.01", "--warmup-epochs", "1", "--cooldown-epochs", "0", "--min-lr", "1e-6",
             "--mixup", "0", "--mixup-prob", "0.2", "--mixup-off-epoch", "2", "--smoothing", "0", "--seed", "7",
             "--step-ms", "40", "--no-amp", "--no-augment"]
    config = train_command.build_config(_parse("--dataset", "dvsgesture", *flags), location)
    assert (config.model, config.epochs, config.batch, config.steps, config.lr, config.weight_decay) == \
        ("spikformer_2_64", 3, 4, 8, 0.002, 0.01)
    assert (config.warmup_epochs, config.cooldown_epochs, config.min_lr, config.mixup_alpha, config.mixup_prob) == \
        (1.0, 0, 1e-6, 0.0, 0.2)
    assert (config.mixup_off_epoch, config.smoothing, config.seed, config.split_by, config.step_ms) == \
        (2, 0.0, 7, "time", 40.0)
    assert not config.amp and not config.augment

    plain = train_command.build_config(_parse())  # without --dataset: the generic defaults, as before
    assert (plain.model, plain.epochs, plain.warmup_epochs, plain.cooldown_epochs, plain.split_by, plain.step_ms) == \
        (None, 40, 2.0, 0, "time", 50.0)
    stream = train_command.build_config(_parse("--dataset", "dvsgesture", "--recipe", "stream"), location)
    assert (stream.model, stream.steps, stream.split_by, stream.step_ms, stream.epochs) == \
        ("spikformer_2_256", 16, "time", 50.0, 202)
    with pytest.raises(ConfigError, match="--layout"):
        train_command.build_config(_parse("--dataset", "dvsgesture", "--layout", "tonic"), location)


# -- end to end -----------------------------------------------------------------------------------


def _check_outputs(out, *, recipe, data_words):
    best = models.load_checkpoint(out)
    assert best.metrics["recipe"] == recipe and best.model.name == "spikformer_tiny"
    png = out.with_name(f"{out.stem}_confusion.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    card = out.with_suffix(".md").read_text()
    assert card.startswith(f"# Model card: `{out.stem}`") and f"![confusion matrix]({png.name})" in card
    assert "python main.py train --dataset dvsgesture --data " in card and "--model spikformer_tiny" in card
    assert f"**{best.metrics['top1']:.4f}** ({best.metrics['correct']} / {best.metrics['samples']})" in card
    for words in data_words:
        assert words in card
    return best, card


@pytest.mark.slow
def test_train_dataset_dvsgesture_end_to_end_on_ibms_archive(tmp_path, monkeypatch, capsys):
    root = tmp_path / "gesture"
    archive = ibm_archive(root, tmp_path)
    monkeypatch.setenv(MD5SUMS_ENV, str(md5sums(tmp_path / "MD5SUMS", [archive])))
    out = tmp_path / "runs" / "paper.pt"
    assert cli_main(["train", "--dataset", "dvsgesture", "--data", str(root), *TINY, "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "clip recipe: train 3 gesture clips" in printed and "test 2 clips" in printed and "epoch 1/1 " in printed
    best, card = _check_outputs(out, recipe="clip", data_words=["IBM DvsGesture release", "DvsGesture.tar.gz` md5 "])
    assert best.preprocessing["mode"] == "count" and best.preprocessing["steps"] == 4  # equal-count frames, T given
    args = best.train_args
    assert (args["warmup_epochs"], args["cooldown_epochs"], args["mixup_off_epoch"], args["epochs"]) == (10.0, 10, 75, 1)
    assert "98.3 % top-1 on IBM's split" in card and best.metrics["samples"] == 2
    last = out.with_name("paper_last.pt")  # an equal-count checkpoint loads and resumes
    argv = ["train", "--dataset", "dvsgesture", "--data", str(root), *TINY, "--out", str(out), "--resume", str(last)]
    assert cli_main([*argv, "--epochs", "2"]) == 0
    assert "epoch 2/2 " in capsys.readouterr().out and models.load_checkpoint(last).train_state["epoch"] == 1
    assert "epochs run: 1 of 2" in out.with_suffix(".md").read_text()

    stream_out = tmp_path / "runs" / "stream.pt"
    argv = ["train", "--dataset", "dvsgesture", "--data", str(root), "--recipe", "stream", *TINY, "--steps", "2",
            "--burn-in", "1", "--step-ms", "100", "--samples-per-epoch", "4", "--out", str(stream_out)]
    assert cli_main(argv) == 0
    best, card = _check_outputs(stream_out, recipe="stream", data_words=["--recipe stream", "rest steps undecided"])
    assert best.preprocessing["step_us"] == 100_000 and best.preprocessing["burn_in"] == 1


@pytest.mark.slow
def test_train_dataset_dvsgesture_end_to_end_after_a_download(served, tmp_path, capsys):
    url, _ = served
    root = tmp_path / "gesture"
    out = tmp_path / "runs" / "tonic.pt"
    argv = ["train", "--dataset", "dvsgesture", "--data", str(root), "--download", "--mirror", url, *TINY,
            "--out", str(out)]
    assert cli_main(argv) == 0
    printed = capsys.readouterr().out
    assert "dataset: tonic's DVSGesture copy" in printed and "test 2 clips" in printed
    best, card = _check_outputs(out, recipe="clip", data_words=["tonic layout", "another split: not comparable"])
    assert best.metrics["trained_on"] == "DVS128 Gesture (tonic layout)"
