"""Tests of pvqae_lib.data.downloads against a local HTTP server (never the internet)."""
import hashlib
import io
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
from conftest import QuietHandler, answer_range, serve_locally
from PIL import Image

from pvqae_lib.data import DataError, download, download_file, downloads, extract, load_mtsd, load_mvtec


class Server:
    """Serves the files of a folder on 127.0.0.1, recording every request and the bytes sent.

    ``honour_range=False`` makes it ignore Range headers (always 200 with the whole file);
    ``truncate_to`` sends only that many bytes of the body (a dropped connection).
    """

    def __init__(self, folder: Path):
        self.folder, self.honour_range, self.truncate_to = folder, True, None
        self.ranges, self.served = [], []
        server = self

        class Handler(QuietHandler):
            def do_GET(self):
                path = server.folder / self.path.lstrip("/")
                if not path.is_file():
                    self.send_error(404)
                    return
                data = path.read_bytes()
                requested = self.headers.get("Range")
                server.ranges.append(requested)
                if requested and server.honour_range:
                    body = answer_range(self, data, requested)
                    if body is None:
                        return
                else:
                    body = data
                    self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if server.truncate_to is not None:
                    body = body[: server.truncate_to]
                    self.close_connection = True
                server.served.append(len(body))   # recorded before sending: the client may finish first
                self.wfile.write(body)

        self.httpd, self.url = serve_locally(Handler)


@pytest.fixture
def server(tmp_path):
    (tmp_path / "www").mkdir()
    s = Server(tmp_path / "www")
    yield s
    s.httpd.shutdown()
    s.httpd.server_close()


@pytest.fixture
def payload(server):
    data = np.random.default_rng(0).integers(0, 256, 300_000, dtype=np.uint8).tobytes()
    (server.folder / "file.bin").write_bytes(data)
    return data, hashlib.sha256(data).hexdigest()


def test_fresh_download_with_checksum(server, payload, tmp_path):
    data, sha = payload
    dest = download_file(server.url + "file.bin", tmp_path / "dl" / "file.bin", sha, chunk_size=4096)
    assert dest.read_bytes() == data and not (tmp_path / "dl" / "file.bin.part").exists()
    assert server.ranges == [None] and server.served == [len(data)]
    # already there and verified: no second request
    download_file(server.url + "file.bin", dest, sha)
    assert len(server.ranges) == 1


def test_no_checksum_prints_the_sha256(server, payload, tmp_path, capsys):
    data, sha = payload
    download_file(server.url + "file.bin", tmp_path / "file.bin", None, progress=False)
    assert sha in capsys.readouterr().out


def test_wrong_checksum_leaves_nothing(server, payload, tmp_path):
    dest = tmp_path / "file.bin"
    with pytest.raises(DataError, match="checksum mismatch") as info:
        download_file(server.url + "file.bin", dest, "0" * 64)
    assert "\n" not in str(info.value)
    assert not dest.exists() and not (tmp_path / "file.bin.part").exists()


def test_resume_requests_a_range(server, payload, tmp_path):
    data, sha = payload
    (tmp_path / "file.bin.part").write_bytes(data[:100_000])
    dest = download_file(server.url + "file.bin", tmp_path / "file.bin", sha)
    assert server.ranges == ["bytes=100000-"] and server.served == [len(data) - 100_000]
    assert dest.read_bytes() == data and not (tmp_path / "file.bin.part").exists()


def test_server_ignoring_range_restarts(server, payload, tmp_path):
    data, sha = payload
    server.honour_range = False
    (tmp_path / "file.bin.part").write_bytes(b"garbage" * 1000)  # would corrupt the file if appended to
    dest = download_file(server.url + "file.bin", tmp_path / "file.bin", sha)
    assert server.ranges == ["bytes=7000-"] and server.served == [len(data)]
    assert dest.read_bytes() == data


def test_complete_part_is_verified_and_renamed(server, payload, tmp_path):
    data, sha = payload
    (tmp_path / "file.bin.part").write_bytes(data)
    assert download_file(server.url + "file.bin", tmp_path / "file.bin", sha).read_bytes() == data
    assert server.served == []  # the server answered 416: nothing left to send


def test_interrupted_download_keeps_part_then_resumes(server, payload, tmp_path):
    data, sha = payload
    server.truncate_to = 120_000
    dest = tmp_path / "file.bin"
    with pytest.raises(DataError, match="stopped at 120000 of 300000 bytes"):
        download_file(server.url + "file.bin", dest, sha)
    assert not dest.exists() and (tmp_path / "file.bin.part").stat().st_size == 120_000
    server.truncate_to = None
    assert download_file(server.url + "file.bin", dest, sha).read_bytes() == data
    assert server.ranges[-1] == "bytes=120000-"


def test_http_error_is_a_data_error(server, tmp_path):
    with pytest.raises(DataError, match="HTTP 404"):
        download_file(server.url + "missing.zip", tmp_path / "x.zip", None)
    assert not (tmp_path / "x.zip").exists()


# ---------------------------------------------------------------------------------------------
# download(): extraction into the loaders' layout
# ---------------------------------------------------------------------------------------------

def _png(size=(20, 16), value=None, mode="L"):
    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, (size[1], size[0]), dtype=np.uint8) if value is None else np.full(
        (size[1], size[0]), value, np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(a, mode).save(buffer, format="PNG")
    return buffer.getvalue()


def _jpg(size=(20, 16)):
    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(1).integers(0, 256, (size[1], size[0]), dtype=np.uint8)).save(
        buffer, format="JPEG")
    return buffer.getvalue()


def test_download_mtsd_zip_end_to_end(server, tmp_path, monkeypatch):
    prefix = "Magnetic-tile-defect-datasets.-master/"
    with zipfile.ZipFile(server.folder / "mtsd.zip", "w") as z:
        z.writestr(prefix + "README.md", "hello")
        for i in range(5):
            z.writestr(prefix + f"MT_Free/Imgs/f{i}.jpg", _jpg())
            z.writestr(prefix + f"MT_Free/Imgs/f{i}.png", _png(value=0))
        z.writestr(prefix + "MT_Crack/Imgs/c0.jpg", _jpg())
        z.writestr(prefix + "MT_Crack/Imgs/c0.png", _png(value=255))
    monkeypatch.setitem(downloads.DATASETS, "mtsd",
                        downloads.Archive(server.url + "mtsd.zip", "mtsd.zip", sha256=None))
    root = download("mtsd", tmp_path / "data")
    assert root == tmp_path / "data" / "mtsd" / prefix.rstrip("/")
    assert not (tmp_path / "data" / ".mtsd.extracting").exists()
    test = load_mtsd(root, "test", 8)
    assert len(test) == 1 + 1 and test.kinds == ["good", "Crack"]
    assert download("mtsd", tmp_path / "data") == root and len(server.served) == 1  # found, not fetched again
    download("mtsd", tmp_path / "data", force=True)
    assert len(server.served) == 2


def test_download_mvtec_tar_xz_with_pinned_checksum(server, tmp_path, monkeypatch):
    archive = server.folder / "mvtec.tar.xz"
    with tarfile.open(archive, "w:xz") as t:
        for name, content in [("bottle/train/good/000.png", _png()), ("bottle/test/good/000.png", _png()),
                              ("bottle/test/broken/000.png", _png()),
                              ("bottle/ground_truth/broken/000_mask.png", _png(value=255)),
                              ("license.txt", b"CC BY-NC-SA 4.0")]:
            info = tarfile.TarInfo(name)
            info.size = len(content)
            t.addfile(info, io.BytesIO(content))
    sha = hashlib.sha256(archive.read_bytes()).hexdigest()
    monkeypatch.setitem(downloads.DATASETS, "mvtec", downloads.Archive(server.url + "mvtec.tar.xz", "m.tar.xz", sha))
    root = download("mvtec", tmp_path / "data", keep_archive=False)
    assert root == tmp_path / "data" / "mvtec" and not (tmp_path / "data" / "m.tar.xz").exists()
    test = load_mvtec(root, "test", 8)
    assert test.category_names == ["bottle"] and test.kinds == ["broken", "good"] and test.masks[0].all()


def test_download_bad_checksum_or_layout_extracts_nothing(server, tmp_path, monkeypatch):
    with zipfile.ZipFile(server.folder / "other.zip", "w") as z:
        z.writestr("something/else.txt", "not a dataset")
    monkeypatch.setitem(downloads.DATASETS, "btad", downloads.Archive(server.url + "other.zip", "b.zip", "1" * 64))
    with pytest.raises(DataError, match="checksum mismatch"):
        download("btad", tmp_path / "data")
    assert sorted(p.name for p in (tmp_path / "data").iterdir()) == []
    monkeypatch.setitem(downloads.DATASETS, "btad", downloads.Archive(server.url + "other.zip", "b.zip", None))
    with pytest.raises(DataError, match="does not contain the btad layout"):
        download("btad", tmp_path / "data")
    assert not (tmp_path / "data" / "btad").exists() and not (tmp_path / "data" / ".btad.extracting").exists()
    with pytest.raises(DataError, match="unknown dataset 'visa'"):
        download("visa", tmp_path / "data")


# ---------------------------------------------------------------------------------------------
# extract(): path traversal and links are refused
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("member", ["../evil.txt", "a/../../evil.txt", "/tmp/evil.txt", "C:/evil.txt"])
def test_zip_path_traversal_rejected(tmp_path, member):
    archive = tmp_path / "a.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("ok.txt", "fine")
        z.writestr(member, "evil")
    with pytest.raises(DataError, match="unsafe path"):
        extract(archive, tmp_path / "out" / "inner")
    assert not (tmp_path / "out" / "evil.txt").exists() and not (tmp_path / "evil.txt").exists()
    assert not (tmp_path / "out" / "inner" / "ok.txt").exists()  # checked before anything is written


@pytest.mark.parametrize("member", ["../evil.txt", "/tmp/pvqae_evil.txt"])
def test_tar_path_traversal_rejected(tmp_path, member):
    archive = tmp_path / "a.tar.gz"
    with tarfile.open(archive, "w:gz") as t:
        info = tarfile.TarInfo(member)
        info.size = 4
        t.addfile(info, io.BytesIO(b"evil"))
    with pytest.raises(DataError, match="unsafe path"):
        extract(archive, tmp_path / "out")
    assert not (tmp_path / "evil.txt").exists()


def test_tar_links_rejected(tmp_path):
    archive = tmp_path / "a.tar"
    with tarfile.open(archive, "w") as t:
        info = tarfile.TarInfo("link")
        info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
        t.addfile(info)
    with pytest.raises(DataError, match="links"):
        extract(archive, tmp_path / "out")
    assert not (tmp_path / "out" / "link").exists()


def test_corrupt_archive(tmp_path):
    (tmp_path / "a.zip").write_bytes(b"PK\x03\x04 broken")
    with pytest.raises(DataError, match="a.zip"):
        extract(tmp_path / "a.zip", tmp_path / "out")
