"""Archives of the downloaded datasets: opened completely before they are trusted, unpacked safely.

``check_archive`` reads every member (CRCs checked for zip), so a truncated download or an HTML error
page fails before anything is renamed into place; ``extract`` refuses members with an absolute path,
``..``, a drive letter or a link, so unpacking cannot write outside its folder. Every failure is a
one-line ``DataError`` naming the file.
"""
from __future__ import annotations

import lzma
import stat
import tarfile
import zipfile
import zlib
from pathlib import Path, PurePosixPath

from .imageset import DataError

ARCHIVE_SUFFIXES = (".zip", ".tar", ".tar.gz", ".tgz", ".tar.xz", ".txz", ".tar.bz2", ".tbz2")


def one_line(e) -> str:
    """An error message on one line (a server's or a library's message may hold newlines)."""
    return " ".join(str(e).split())


def check_archive(path) -> None:
    """Open a zip or tar archive completely (every member read, CRCs checked for zip), or raise a
    one-line ``DataError`` saying why not. A truncated archive fails here, not at unpacking."""
    path = Path(path)
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as z:
                bad, count = z.testzip(), len(z.infolist())
            if not count:
                raise DataError(f"archive {path} is an empty zip archive")
            if bad is not None:
                raise DataError(f"archive {path} is corrupt: member {bad!r} fails its CRC check")
            return
        if tarfile.is_tarfile(path):
            count = 0
            with tarfile.open(path, "r:*") as t:
                for member in t:  # the whole stream: a truncated or corrupt archive fails
                    count += 1
                    if member.isfile():
                        f = t.extractfile(member)
                        while f.read(1 << 20):
                            pass
            if not count:  # e.g. a file of zeros, which tarfile reads as an empty archive
                raise DataError(f"archive {path} is not a zip or tar archive, or an empty one")
            return
        with open(path, "rb") as f:
            head = f.read(64)
    except DataError:
        raise
    except (zipfile.BadZipFile, tarfile.TarError, EOFError, OSError, zlib.error, lzma.LZMAError,
            ValueError, NotImplementedError) as e:
        raise DataError(f"archive {path} is corrupt or incomplete: {one_line(e)}") from None
    if head.startswith(b"PK"):
        raise DataError(f"archive {path} is a corrupt or incomplete zip archive")
    raise DataError(f"{path} is not a zip or tar archive (it starts with {head[:32]!r})")


def _check_member(name: str, dest: Path, archive: Path) -> None:
    """Refuse archive members that would land outside ``dest`` (absolute paths, '..', drive letters)."""
    p = PurePosixPath(name.replace("\\", "/"))
    outside = not (dest / p).resolve().is_relative_to(dest.resolve())
    drive = len(name) > 1 and name[0].isalpha() and name[1] == ":" and (len(name) == 2 or name[2] in "/\\")
    if p.is_absolute() or ".." in p.parts or drive or outside:
        raise DataError(f"unsafe path {name!r} in archive {archive}: refusing to extract")


MAX_RATIO = 50                  # an archive unpacking to more than this many times its size ...
MAX_UNCHECKED = 1 << 30         # ... and to more than 1 GiB is refused as a decompression bomb


def check_unpacked_size(total: int, archive: Path) -> None:
    """DataError when the members of ``archive`` would unpack to more than MAX_RATIO times its size and
    more than 1 GiB (images barely compress: the datasets unpack to about their archive's size)."""
    size = archive.stat().st_size
    if total > MAX_UNCHECKED and total > MAX_RATIO * size:
        raise DataError(f"archive {archive} would unpack to {total / 2 ** 30:.1f} GiB from {size / 2 ** 20:.1f} MiB "
                        f"(over {MAX_RATIO}x): refusing a decompression bomb")


def extract(archive, dest) -> Path:
    """Unpack a .zip or .tar(.gz/.xz/...) archive into ``dest``, after checking every member's path."""
    archive, dest = Path(archive), Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    try:
        if zipfile.is_zipfile(archive):
            with zipfile.ZipFile(archive) as z:
                infos = z.infolist()
                for info in infos:
                    _check_member(info.filename, dest, archive)
                    if stat.S_ISLNK(info.external_attr >> 16):
                        raise DataError(f"unsafe member {info.filename!r} in archive {archive}: links are not "
                                        f"extracted")
                check_unpacked_size(sum(i.file_size for i in infos), archive)
                z.extractall(dest)
        elif tarfile.is_tarfile(archive):
            with tarfile.open(archive, "r:*") as t:
                members = t.getmembers()
                check_unpacked_size(sum(m.size for m in members), archive)
                for m in members:
                    _check_member(m.name, dest, archive)
                    if not (m.isfile() or m.isdir()):
                        raise DataError(f"unsafe member {m.name!r} in archive {archive}: links and "
                                        f"special files are not extracted")
                safe = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
                t.extractall(dest, members=members, **safe)
        else:
            raise DataError(f"{archive} is neither a zip nor a tar archive")
    except (zipfile.BadZipFile, tarfile.TarError, EOFError, OSError) as e:
        raise DataError(f"cannot extract archive {archive}: {e}") from None
    return dest
