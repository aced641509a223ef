"""Hardened downloads (pvqae_lib.data.downloads) against a crafted server on 127.0.0.1.

The server serves one body per path and can: send an ETag (and honour If-Range), leave out
Content-Length, cut the body short, answer every Range with 416, send a 200 HTML page.
"""
import hashlib
import io
import tarfile
import zipfile

import pytest
from conftest import QuietHandler, answer_range, send_416, serve_locally

from pvqae_lib.data import DataError, check_archive, download, download_file, downloads


class Crafted:
    def __init__(self):
        self.files = {}  # path -> dict(body=..., etag=..., content_type=..., length=True, cut=None, always_416=False)
        self.requests = []  # (path, Range, If-Range)
        server = self

        class Handler(QuietHandler):
            protocol_version = "HTTP/1.0"

            def do_GET(self):
                spec = server.files.get(self.path.lstrip("/"))
                rng, if_range = self.headers.get("Range"), self.headers.get("If-Range")
                server.requests.append((self.path.lstrip("/"), rng, if_range))
                if spec is None:
                    self.send_error(404)
                    return
                data, etag = spec["body"], spec.get("etag")
                if rng and spec.get("always_416"):
                    send_416(self, len(data))
                    return
                use_range = rng and (if_range is None or if_range == etag or spec.get("ignore_if_range"))
                if use_range:
                    body = answer_range(self, data, rng)
                    if body is None:
                        return
                else:
                    body = data
                    self.send_response(200)
                if etag:
                    self.send_header("ETag", etag)
                if spec.get("content_type"):
                    self.send_header("Content-Type", spec["content_type"])
                if spec.get("length", True):
                    self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if spec.get("cut") is not None:
                    body = body[: spec["cut"]]
                self.wfile.write(body)

        self.httpd, self.url = serve_locally(Handler)


@pytest.fixture
def crafted():
    s = Crafted()
    yield s
    s.httpd.shutdown()
    s.httpd.server_close()


def _zip_bytes(n_files=20, seed=0):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as z:
        for i in range(n_files):
            z.writestr(f"data/f{i:02d}.bin", bytes((seed * 31 + i * 7 + j) % 251 for j in range(4000)))
    return buffer.getvalue()


def _tar_gz_bytes():
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as t:
        for i in range(5):
            content = bytes(range(256)) * 200 * (i + 1)
            info = tarfile.TarInfo(f"d/f{i}.bin")
            info.size = len(content)
            t.addfile(info, io.BytesIO(content))
    return buffer.getvalue()


def _one_line_error(match, fn, *args, **kwargs):
    with pytest.raises(DataError, match=match) as info:
        fn(*args, **kwargs)
    assert "\n" not in str(info.value)
    return str(info.value)


def _leftovers(folder):
    return sorted(p.name for p in folder.iterdir())


# ---------------------------------------------------------------------------------------------
# Resuming only onto the same file
# ---------------------------------------------------------------------------------------------

def test_part_without_validator_or_checksum_restarts_from_zero(crafted, tmp_path):
    """No ETag was saved and no checksum is pinned: the old .part cannot be trusted; no Range sent."""
    new = _zip_bytes(seed=1)
    crafted.files["a.zip"] = {"body": new}
    (tmp_path / "a.zip.part").write_bytes(_zip_bytes(seed=0)[:30_000])  # start of another version
    dest = download_file(crafted.url + "a.zip", tmp_path / "a.zip", None, progress=False)
    assert dest.read_bytes() == new
    assert crafted.requests == [("a.zip", None, None)]
    assert _leftovers(tmp_path) == ["a.zip"]


def test_spliced_resume_when_etag_changed_restarts(crafted, tmp_path):
    """The first try stops half way under ETag "v1"; the file is replaced ("v2"): If-Range makes the
    server send the whole new file, which must not be appended to the old half."""
    old, new = _zip_bytes(seed=0), _zip_bytes(seed=1)
    assert len(old) == len(new)
    crafted.files["a.zip"] = {"body": old, "etag": '"v1"', "cut": 30_000}
    dest = tmp_path / "a.zip"
    _one_line_error("stopped at 30000 of", download_file, crafted.url + "a.zip", dest, None, progress=False)
    assert (tmp_path / "a.zip.part").stat().st_size == 30_000
    crafted.files["a.zip"] = {"body": new, "etag": '"v2"'}
    download_file(crafted.url + "a.zip", dest, None, progress=False)
    assert crafted.requests[-1] == ("a.zip", "bytes=30000-", '"v1"')  # the validator was sent back
    assert dest.read_bytes() == new
    assert _leftovers(tmp_path) == ["a.zip"]


def test_resume_with_matching_etag_continues(crafted, tmp_path):
    data = _zip_bytes()
    crafted.files["a.zip"] = {"body": data, "etag": '"v1"', "cut": 30_000}
    dest = tmp_path / "a.zip"
    _one_line_error("stopped at 30000", download_file, crafted.url + "a.zip", dest, None, progress=False)
    crafted.files["a.zip"] = {"body": data, "etag": '"v1"'}
    assert download_file(crafted.url + "a.zip", dest, None, progress=False).read_bytes() == data
    assert crafted.requests[-1] == ("a.zip", "bytes=30000-", '"v1"')
    assert _leftovers(tmp_path) == ["a.zip"]


def test_server_ignoring_if_range_with_new_etag_restarts(crafted, tmp_path):
    """A server that answers 206 although its ETag changed: the 206 is refused, the file fetched whole."""
    old, new = _zip_bytes(seed=0), _zip_bytes(seed=1)
    crafted.files["a.zip"] = {"body": old, "etag": '"v1"', "cut": 30_000}
    dest = tmp_path / "a.zip"
    _one_line_error("stopped at", download_file, crafted.url + "a.zip", dest, None, progress=False)
    crafted.files["a.zip"] = {"body": new, "etag": '"v2"', "ignore_if_range": True}
    assert download_file(crafted.url + "a.zip", dest, None, progress=False).read_bytes() == new
    assert crafted.requests[-1] == ("a.zip", None, None)


def test_stale_part_answered_with_416_is_not_complete(crafted, tmp_path):
    """A .part longer than the file (left from another version): the 416 says the file is shorter,
    so the .part is discarded and the file downloaded whole. With a checksum, so a Range is sent."""
    data = _zip_bytes()
    sha = hashlib.sha256(data).hexdigest()
    crafted.files["a.zip"] = {"body": data}
    (tmp_path / "a.zip.part").write_bytes(b"x" * (len(data) + 500))
    dest = download_file(crafted.url + "a.zip", tmp_path / "a.zip", sha, progress=False)
    assert dest.read_bytes() == data
    assert [r[1] for r in crafted.requests] == [f"bytes={len(data) + 500}-", None]


def test_416_for_part_of_the_right_length_but_wrong_content(crafted, tmp_path):
    """A server that answers every Range with 416: a .part of the same length but other bytes is
    not accepted as complete (the archive test / checksum refuses it) and nothing is renamed."""
    data = _zip_bytes()
    crafted.files["a.zip"] = {"body": data, "etag": '"v1"', "always_416": True}
    (tmp_path / "a.zip.part").write_bytes(b"\0" * len(data))
    (tmp_path / "a.zip.part.validator").write_text(f'{{"url": "{crafted.url}a.zip", "validator": "\\"v1\\""}}')
    _one_line_error("a.zip", download_file, crafted.url + "a.zip", tmp_path / "a.zip", None, progress=False)
    assert _leftovers(tmp_path) == []
    (tmp_path / "a.zip.part").write_bytes(b"\0" * len(data))
    _one_line_error("checksum mismatch", download_file, crafted.url + "a.zip", tmp_path / "a.zip",
                    hashlib.sha256(data).hexdigest(), progress=False)
    assert _leftovers(tmp_path) == []


# ---------------------------------------------------------------------------------------------
# Length, format, cached files
# ---------------------------------------------------------------------------------------------

def test_short_body_with_content_length_is_not_renamed(crafted, tmp_path):
    data = _zip_bytes()
    crafted.files["a.zip"] = {"body": data, "cut": len(data) // 2}
    message = _one_line_error(f"{len(data) // 2} of {len(data)} bytes", download_file, crafted.url + "a.zip",
                              tmp_path / "a.zip", None, progress=False)
    assert crafted.url + "a.zip" in message
    assert not (tmp_path / "a.zip").exists()


@pytest.mark.parametrize("make", [_zip_bytes, _tar_gz_bytes], ids=["zip", "tar.gz"])
def test_short_body_without_content_length_fails_the_archive_test(crafted, tmp_path, make):
    data = make()
    name = "a.zip" if make is _zip_bytes else "a.tar.gz"
    crafted.files[name] = {"body": data, "length": False, "cut": len(data) // 2}
    message = _one_line_error("not a valid archive|not a zip or tar", download_file, crafted.url + name,
                              tmp_path / name, None, progress=False)
    assert crafted.url + name in message
    assert _leftovers(tmp_path) == []  # neither the file nor a .part
    crafted.files[name] = {"body": data, "length": False}
    assert download_file(crafted.url + name, tmp_path / name, None, progress=False).read_bytes() == data


def test_html_page_with_status_200_is_rejected(crafted, tmp_path):
    crafted.files["a.zip"] = {"body": b"<!DOCTYPE html><html><body>Please log in</body></html>" * 20,
                              "content_type": "text/html; charset=utf-8"}
    message = _one_line_error("is not a zip or tar archive \\(the server sent text/html", download_file,
                              crafted.url + "a.zip", tmp_path / "a.zip", None, progress=False)
    assert crafted.url + "a.zip" in message
    assert _leftovers(tmp_path) == []


def test_html_page_through_download_extracts_nothing(crafted, tmp_path, monkeypatch):
    crafted.files["m.zip"] = {"body": b"<html>quota exceeded</html>", "content_type": "text/html"}
    monkeypatch.setitem(downloads.DATASETS, "mtsd", downloads.Archive(crafted.url + "m.zip", "m.zip", None))
    _one_line_error("not a zip or tar archive", download, "mtsd", tmp_path / "data")
    assert _leftovers(tmp_path / "data") == []


def test_cached_archive_that_does_not_open_is_fetched_again(crafted, tmp_path):
    data = _zip_bytes()
    crafted.files["a.zip"] = {"body": data}
    (tmp_path / "a.zip").write_bytes(data[: len(data) // 2])  # e.g. left by an old version of this code
    assert download_file(crafted.url + "a.zip", tmp_path / "a.zip", None, progress=False).read_bytes() == data
    assert len(crafted.requests) == 1
    download_file(crafted.url + "a.zip", tmp_path / "a.zip", None, progress=False)  # valid now: no request
    assert len(crafted.requests) == 1


def test_write_failure_removes_the_part(crafted, tmp_path, monkeypatch):
    crafted.files["a.zip"] = {"body": _zip_bytes(), "etag": '"v1"'}
    real_open = open

    class Full(io.RawIOBase):
        def __init__(self, path, mode):
            self.f = real_open(path, mode)

        def write(self, b):
            self.f.write(bytes(b)[:10])
            raise OSError(28, "No space left on device")

        def close(self):
            self.f.close()
            super().close()

    monkeypatch.setattr(downloads, "open", lambda path, mode="r", *a, **k: Full(path, mode) if "b" in mode
                        and str(path).endswith(".part") else real_open(path, mode, *a, **k), raising=False)
    message = _one_line_error("No space left on device", download_file, crafted.url + "a.zip",
                              tmp_path / "a.zip", None, progress=False)
    assert "a.zip.part" in message
    assert _leftovers(tmp_path) == []


def test_check_archive(tmp_path):
    good = tmp_path / "g.zip"
    good.write_bytes(_zip_bytes())
    check_archive(good)
    tgz = tmp_path / "g.tar.gz"
    tgz.write_bytes(_tar_gz_bytes())
    check_archive(tgz)
    for name, body in (("h.zip", b"<html></html>"), ("t.zip", _zip_bytes()[:-3000]),
                       ("t.tar.gz", _tar_gz_bytes()[:-200])):
        (tmp_path / name).write_bytes(body)
        _one_line_error(name, check_archive, tmp_path / name)


def test_pinned_checksums_are_real_sha256_or_none():
    """Pins are 64 hex digits or None (never placeholders); MTSD's GitHub archive has none."""
    for name, spec in downloads.DATASETS.items():
        assert spec.sha256 is None or (len(spec.sha256) == 64 and int(spec.sha256, 16) > 0), name
    assert downloads.DATASETS["mtsd"].sha256 is None
    assert downloads.DATASETS["mvtec"].sha256 and downloads.DATASETS["btad"].sha256
