"""The download helper against a local HTTP server on 127.0.0.1 (no outside network)."""

from __future__ import annotations

import functools
import hashlib
import http.server
import io
import threading
import zipfile

import pytest

from isvos_lite.data.download import ARCHIVES, download, extract, fetch, file_checksum, main


class _Handler(http.server.SimpleHTTPRequestHandler):
    """Static files; honours "Range: bytes=N-" when the server's ``ranges`` flag is on."""

    def log_message(self, *args):   # keep the test output clean
        pass

    def do_GET(self):
        header = self.headers.get("Range")
        self.server.requests.append(header)
        if not (header and self.server.ranges):
            return super().do_GET()
        path = self.translate_path(self.path)
        data = open(path, "rb").read()
        start = int(header.split("=")[1].rstrip("-"))
        if start >= len(data):
            self.send_response(416)
            self.end_headers()
            return
        self.send_response(206)
        self.send_header("Content-Length", str(len(data) - start))
        self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        self.end_headers()
        self.wfile.write(data[start:])


@pytest.fixture()
def server(tmp_path):
    served = tmp_path / "served"
    served.mkdir()
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("DAVIS/ImageSets/2017/val.txt", "seq\n")
        archive.writestr("DAVIS/JPEGImages/480p/seq/00000.jpg", b"\xff\xd8" + bytes(range(256)) * 40)
    (served / "DAVIS-small.zip").write_bytes(buffer.getvalue())
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Handler, directory=str(served)))
    httpd.ranges = True
    httpd.requests = []
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd, f"http://127.0.0.1:{httpd.server_address[1]}/DAVIS-small.zip", served / "DAVIS-small.zip"
    httpd.shutdown()
    httpd.server_close()


def test_download_verifies_checksum_and_extracts(server, tmp_path, capsys):
    _, url, original = server
    md5 = hashlib.md5(original.read_bytes()).hexdigest()
    path = download(url, tmp_path / "dl" / "DAVIS-small.zip", md5=md5, progress=False)
    assert path.read_bytes() == original.read_bytes()
    assert not (tmp_path / "dl" / "DAVIS-small.zip.part").exists()
    placed = extract(path, tmp_path / "data")
    assert [p.name for p in placed] == ["DAVIS"]
    assert (tmp_path / "data" / "DAVIS" / "ImageSets" / "2017" / "val.txt").read_text() == "seq\n"
    # unknown checksum: the computed one is printed so the user can pin it
    download(url, tmp_path / "dl2" / "x.zip", md5=None, progress=False)
    assert f"md5 {md5}" in capsys.readouterr().out


def test_download_resumes_a_partial_file(server, tmp_path):
    httpd, url, original = server
    dest = tmp_path / "DAVIS-small.zip"
    data = original.read_bytes()
    (tmp_path / "DAVIS-small.zip.part").write_bytes(data[:1000])
    download(url, dest, md5=file_checksum(original), progress=False)
    assert dest.read_bytes() == data
    assert httpd.requests[-1] == "bytes=1000-"


def test_download_restarts_when_the_server_ignores_ranges(server, tmp_path):
    httpd, url, original = server
    httpd.ranges = False
    (tmp_path / "DAVIS-small.zip.part").write_bytes(b"garbage that must not stay")
    path = download(url, tmp_path / "DAVIS-small.zip", md5=file_checksum(original), progress=False)
    assert path.read_bytes() == original.read_bytes()


def test_checksum_mismatch_removes_the_download(server, tmp_path):
    _, url, _ = server
    with pytest.raises(ValueError, match=r"checksum mismatch for DAVIS-small\.zip.*expected md5 0+"):
        download(url, tmp_path / "dl" / "DAVIS-small.zip", md5="0" * 32, progress=False)
    assert not list((tmp_path / "dl").iterdir())


def test_http_errors_are_clear(server, tmp_path):
    _, url, _ = server
    with pytest.raises(RuntimeError, match="HTTP 404"):
        download(url.replace("DAVIS-small", "missing"), tmp_path / "m.zip", progress=False)


def test_existing_good_file_is_kept(server, tmp_path):
    httpd, url, original = server
    dest = tmp_path / "DAVIS-small.zip"
    dest.write_bytes(original.read_bytes())
    before = len(httpd.requests)
    download(url, dest, md5=file_checksum(original), progress=False)
    assert len(httpd.requests) == before                                          # nothing fetched


def test_unsafe_archive_is_refused(tmp_path):
    bad = tmp_path / "evil.zip"
    with zipfile.ZipFile(bad, "w") as archive:
        archive.writestr("../outside.txt", "x")
    with pytest.raises(ValueError, match="outside"):
        extract(bad, tmp_path / "out")
    assert not (tmp_path / "outside.txt").exists()
    (tmp_path / "not.zip").write_bytes(b"plain text")
    with pytest.raises(ValueError, match="neither a zip nor a tar"):
        extract(tmp_path / "not.zip", tmp_path / "out")


def test_fetch_with_a_mirror_and_the_table(server, tmp_path, capsys):
    _, url, original = server
    fetch("davis2017-trainval-480p", tmp_path, url=url, md5=file_checksum(original), progress=False)
    assert (tmp_path / "downloads" / "DAVIS-2017-trainval-480p.zip").exists()
    assert (tmp_path / "DAVIS" / "JPEGImages" / "480p" / "seq" / "00000.jpg").exists()
    with pytest.raises(ValueError, match="unknown dataset"):
        fetch("imagenet", tmp_path)
    assert ARCHIVES["coco-val2017"].md5 == "442b8da7639aecaf257c1dceb8ba8c80"
    assert main(["--list"]) == 0
    assert "davis2017-trainval-480p" in capsys.readouterr().out
