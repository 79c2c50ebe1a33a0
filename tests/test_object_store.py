"""Object stores for real: moto's S3 server in a process of its own, over HTTP.

Data are written to it, fitted by URL on worker processes that stream them
(``persist=False``), and predictions written back; a proxy in front of it answers
503 to some reads, as an overloaded S3 does, so that the retries meet the
errors s3fs really raises.
"""

from __future__ import annotations

import collections
import contextlib
import http.client
import http.server
import json
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import dask
import dask.array as da
import numpy as np
import pytest
import zarr
from click.testing import CliRunner

from dask_softkmeans import SoftKMeans, datasets, io
from dask_softkmeans.cli import main
from dask_softkmeans.errors import IncompleteOutputError, StoreReadError
from dask_softkmeans.io import retrying
from dask_softkmeans.io.stores import MARKER

s3fs = pytest.importorskip("s3fs")
pytestmark = pytest.mark.slow  # a server process, and worker processes

BIN = Path(sys.executable).parent
BUCKET = "softkmeans"
K = 4


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _options(endpoint: str, **extra) -> dict:
    """s3fs's options for a plain-HTTP endpoint; moto takes any key and secret."""
    return {"endpoint_url": endpoint, "key": "testing", "secret": "testing", **extra}


@pytest.fixture(scope="module")
def s3(tmp_path_factory) -> Iterator[dict]:
    """moto's standalone S3 server on a free local port, with one bucket holding
    ``blobs.zarr`` (40,000 rows, 4 features, 4 blobs, 8 chunks); yields its storage options."""
    log_path = tmp_path_factory.mktemp("moto") / "moto.log"
    port = _free_port()
    endpoint = f"http://127.0.0.1:{port}"
    with open(log_path, "w") as log:
        proc = subprocess.Popen([str(BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
                                stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(f"{endpoint}/moto-api/", timeout=1).close()
                break
            except OSError:
                assert proc.poll() is None and time.monotonic() < deadline, log_path.read_text()
                time.sleep(0.1)
        options = _options(endpoint)
        s3fs.S3FileSystem(**options).mkdir(BUCKET)
        datasets.write_blobs(f"s3://{BUCKET}/blobs.zarr", 40_000, 4, K, chunk_rows=5_000,
                             center_box=20.0, storage_options=options)
        yield options
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="module")
def cluster():
    """Two worker processes, one thread each, and a client of them."""
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                      dashboard_address=None) as cluster, Client(cluster) as client:
        yield client


def _in_memory(s3: dict) -> np.ndarray:
    return zarr.open_array(f"s3://{BUCKET}/blobs.zarr/X", mode="r", storage_options=s3)[:]


def test_a_streamed_fit_on_workers_reads_s3_and_writes_predictions_back(s3, cluster):
    url = f"s3://{BUCKET}/blobs.zarr/X"
    model = SoftKMeans(K, persist=False, compute_labels=False).fit(url, storage_options=s3)
    assert model.persisted_ is False
    x = _in_memory(s3)
    expected = SoftKMeans(K, compute_labels=False).fit(x)
    np.testing.assert_allclose(model.cluster_centers_, expected.cluster_centers_,
                               rtol=0, atol=1e-6)
    out = model.write_predictions(io.open_array(url, storage_options=s3),
                                  f"s3://{BUCKET}/preds.zarr", what=("labels", "proba"),
                                  storage_options=s3)
    assert out.attrs[MARKER] == {"complete": True}
    labels = io.open_array(f"s3://{BUCKET}/preds.zarr/proba", storage_options=s3)
    assert labels.shape == (40_000, K)
    written = zarr.open_array(f"s3://{BUCKET}/preds.zarr/labels", mode="r", storage_options=s3)
    np.testing.assert_array_equal(written[:], model.predict(x))


def test_cli_fit_and_predict_take_storage_options(s3, cluster, tmp_path):
    """The command line, on the same workers (--scheduler), by URL with --storage-options."""
    options = json.dumps(s3)
    address = cluster.scheduler.address
    result = CliRunner().invoke(main, [
        "fit", f"s3://{BUCKET}/blobs.zarr/X", "--k", str(K), "--out", str(tmp_path / "m.npz"),
        "--storage-options", options, "--scheduler", address, "--quiet"])
    assert result.exit_code == 0, result.output
    result = CliRunner().invoke(main, [
        "predict", str(tmp_path / "m.npz"), f"s3://{BUCKET}/blobs.zarr/X",
        f"s3://{BUCKET}/cli-preds.zarr", "--storage-options", options, "--scheduler", address,
        "--quiet"])
    assert result.exit_code == 0, result.output
    written = zarr.open_array(f"s3://{BUCKET}/cli-preds.zarr/labels", mode="r",
                              storage_options=s3)
    model = SoftKMeans.load(tmp_path / "m.npz")
    np.testing.assert_array_equal(written[:], model.predict(_in_memory(s3)))


def test_cli_make_data_writes_to_s3_with_storage_options(s3):
    result = CliRunner().invoke(main, [
        "make-data", f"s3://{BUCKET}/cli-blobs.zarr", "--n-samples", "3000", "--n-features", "3",
        "--chunk-rows", "1000", "--storage-options", json.dumps(s3)])
    assert result.exit_code == 0, result.output
    group = zarr.open_group(f"s3://{BUCKET}/cli-blobs.zarr", mode="r", storage_options=s3)
    assert group.attrs[MARKER] == {"complete": True}
    assert group["X"].shape == (3000, 3) and group["X"].chunks == (1000, 3)


# -- faults ------------------------------------------------------------------------------
class _Faults:
    """What the proxy does: GETs per object path, and how many of them fail with a 503."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.gets: collections.Counter = collections.Counter()
        self.fails: dict[str, int] = {}

    def plan(self, **fails: int) -> None:
        """``fails``: failures per chunk key of ``blobs.zarr/X`` (``c_3_0`` for ``c/3/0``)."""
        with self.lock:
            self.gets.clear()
            self.fails = {f"/{BUCKET}/blobs.zarr/X/{key.replace('_', '/')}": n
                          for key, n in fails.items()}

    def fail(self, method: str, path: str) -> bool:
        if method != "GET":
            return False
        with self.lock:
            self.gets[path] += 1
            return self.gets[path] <= self.fails.get(path, 0)


@pytest.fixture(scope="module")
def proxy(s3) -> Iterator[tuple[dict, _Faults]]:
    """An HTTP proxy to the S3 server that answers 503 to the GETs its plan says (as
    ServiceUnavailable: s3fs would retry a SlowDown itself before we saw it),
    and the storage options that reach S3 through it, botocore's own retries off (each
    try of ours is one request)."""
    target = s3["endpoint_url"].removeprefix("http://")
    faults = _Faults()

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _forward(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            if faults.fail(self.command, self.path.split("?")[0]):
                reply = (b"<Error><Code>ServiceUnavailable</Code><Message>Service is busy, "
                         b"try again</Message></Error>")
                self.send_response(503)
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)
                return
            connection = http.client.HTTPConnection(target, timeout=30)
            connection.request(self.command, self.path, body=body or None,
                               headers={k: v for k, v in self.headers.items()
                                        if k.lower() != "host"})
            answer = connection.getresponse()
            data = answer.read()
            connection.close()
            self.send_response(answer.status)
            for name, value in answer.getheaders():
                if name.lower() not in ("content-length", "transfer-encoding", "connection",
                                        "date", "server"):
                    self.send_header(name, value)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)

        do_GET = do_HEAD = do_PUT = do_POST = do_DELETE = _forward

        def log_message(self, *args) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield _options(f"http://127.0.0.1:{server.server_address[1]}",
                       config_kwargs={"retries": {"max_attempts": 0}}), faults
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def quick_retries():
    with dask.config.set({retrying.BACKOFF_KEY: "1ms"}):
        yield


def test_503_answers_are_retried_then_the_chunk_is_named(s3, proxy, quick_retries):
    options, faults = proxy
    x = _in_memory(s3)
    url = f"s3://{BUCKET}/blobs.zarr/X"
    array = io.open_array(url, storage_options=options)
    faults.plan(c_1_0=2, c_2_0=4)  # 1 + 4 retries: the last try of c/2/0 reads
    np.testing.assert_array_equal(io.read_rows(array, 4_000, 16_000), x[4_000:16_000])
    # Rows 4000:16000 are in chunks 0 to 3: read at once, then one by one.
    assert [faults.gets[f"/{BUCKET}/blobs.zarr/X/c/{i}/0"] for i in range(5)] == [2, 3, 5, 2, 0]
    faults.plan(c_2_0=5)
    with pytest.raises(StoreReadError) as info:
        io.read_rows(array, 4_000, 16_000)
    message = str(info.value)
    for part in (url, "rows 4000:16000", "'c/2/0'", "5 times in a row", "OSError",
                 "Service is busy"):
        assert part in message, message


def test_an_interrupted_write_to_s3_is_refused(s3):
    """An interrupted write by URL leaves a group marked incomplete, refused by URL."""
    url = f"s3://{BUCKET}/interrupted.zarr"
    x = da.from_array(np.arange(4_000.0).reshape(2_000, 2), chunks=(500, 2))

    def first_until(block: np.ndarray) -> dict[str, np.ndarray]:
        if block[0, 0] >= 2_000:
            raise RuntimeError("interrupted")
        return {"first": block[:, :1]}

    with dask.config.set(scheduler="sync"), contextlib.suppress(RuntimeError):
        io.write_row_blocks(x, first_until, {}, url, {"first": (np.float64, 1)},
                            storage_options=s3)
    with pytest.raises(IncompleteOutputError, match="interrupted write"):
        io.open_array(f"{url}/first", storage_options=s3)
    with pytest.raises(FileExistsError, match="incomplete"):
        io.write_row_blocks(x, first_until, {}, url, {"first": (np.float64, 1)},
                            storage_options=s3)


def test_fit_predict_of_a_url_reads_it_with_the_storage_options(s3):
    """Both branches: lazy ``labels_``, and (without it) ``predict`` of the URL opened with
    the same options."""
    url = f"s3://{BUCKET}/blobs.zarr/X"
    data = _in_memory(s3)
    expected = SoftKMeans(K, compute_labels=False).fit(data).predict(data)
    for compute_labels in (True, False):
        labels = SoftKMeans(K, compute_labels=compute_labels).fit_predict(url, storage_options=s3)
        np.testing.assert_array_equal(np.asarray(labels), expected)
