"""Downloading PASCAL VOC 2007: where from, the checksums, and a clear failure offline.

The archives are about 0.9 GB together; without a network the download fails within a
timeout and says what to fetch and where to put it. The data set itself is
:mod:`helpers.voc`.
"""

from __future__ import annotations

import time
from pathlib import Path
from urllib.parse import urlparse

from helpers.env import reachable, shown_path
from helpers.voc import find_voc

__all__ = [
    "VOC2007_TEST_MD5",
    "VOC2007_TEST_TAR",
    "VOC2007_TRAINVAL_MD5",
    "VOC2007_TRAINVAL_TAR",
    "VOC2007_URL",
    "VOCUnavailableError",
    "download_voc2007",
    "timed_download",
    "voc_archives",
]


class VOCUnavailableError(RuntimeError):
    """VOC 2007 is neither on disk nor downloadable from here."""


# Where VOC 2007 is downloaded from, and the md5 checksums of the two archives: the same
# facts torchvision's VOC loader uses (its `DATASET_YEAR_DICT`, a private table), written
# here so a torchvision change cannot move them silently (tests/test_voc.py compares).
VOC2007_URL = "https://thor.robots.ox.ac.uk/pascal/VOC/voc2007/"


VOC2007_TRAINVAL_TAR = "VOCtrainval_06-Nov-2007.tar"


VOC2007_TRAINVAL_MD5 = "c52e279531787c972589f7e41ab4ae64"


VOC2007_TEST_TAR = "VOCtest_06-Nov-2007.tar"


VOC2007_TEST_MD5 = "b6e924de25625d8de591ea690078ad9f"


def voc_archives() -> dict[str, dict]:
    """URL, file name and md5 checksum of the two VOC 2007 archives (trainval, test)."""
    return {
        split: {"url": VOC2007_URL + name, "filename": name, "md5": md5}
        for split, name, md5 in [
            ("trainval", VOC2007_TRAINVAL_TAR, VOC2007_TRAINVAL_MD5),
            ("test", VOC2007_TEST_TAR, VOC2007_TEST_MD5),
        ]
    }


def download_voc2007(root: str | Path, timeout: float = 3.0, mirror: str | None = None) -> Path:
    """VOC 2007 trainval + test under ``root/VOCdevkit/VOC2007``: found, or downloaded.

    Downloads the two tar files (about 0.9 GB together) with torchvision's downloader and
    checks their md5 checksums (:func:`voc_archives`). `mirror` replaces the start of each
    URL up to the file name (the files must be the same: the checksum is checked all the
    same). Without a network this fails within `timeout` seconds and says what to fetch
    and where to put it.
    """
    from torchvision.datasets.utils import download_and_extract_archive

    root = Path(root)
    found = find_voc(root)
    if found is not None and (found / "ImageSets/Main/test.txt").exists():
        return found
    archives = voc_archives()
    urls = {
        split: (mirror.rstrip("/") + "/" + a["filename"]) if mirror else a["url"]
        for split, a in archives.items()
    }
    host = urlparse(urls["trainval"]).hostname
    reason = reachable(host, timeout)
    if reason is not None:
        files = "; ".join(f"{urls[s]} (md5 {archives[s]['md5']})" for s in ("trainval", "test"))
        raise VOCUnavailableError(
            f"VOC 2007 is not under {shown_path(root)} and {host} cannot be reached "
            f"({reason}). Download {files} on a machine with internet, extract both into "
            f"{shown_path(root)} (they unpack to VOCdevkit/VOC2007), then run this again. "
            "Any folder in VOC layout works (Annotations/*.xml, JPEGImages/*.jpg, "
            "ImageSets/Main/{trainval,test}.txt)."
        )
    for split, a in archives.items():
        download_and_extract_archive(urls[split], str(root), filename=a["filename"], md5=a["md5"])
    return root / "VOCdevkit" / "VOC2007"


def timed_download(root: str | Path, timeout: float = 3.0) -> tuple[Path | None, str, float]:
    """Try :func:`download_voc2007`; return (folder or None, message, seconds taken)."""
    start = time.perf_counter()
    try:
        folder = download_voc2007(root, timeout)
        message = f"VOC 2007 ready in {shown_path(folder)}"
    except VOCUnavailableError as err:
        folder, message = None, str(err)
    return folder, message, time.perf_counter() - start
