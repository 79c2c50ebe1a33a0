"""End to end over TLS: a real ``dask scheduler`` and two real ``dask worker`` processes on
loopback, with certificates made for the test, and ``dask-softkmeans fit --scheduler tls://...``
run as a command.  This is what ``deploy/README.md`` tells users to do on a real cluster."""

from __future__ import annotations

import datetime
import ipaddress
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import dask
import numpy as np
import pytest
import zarr
from click.testing import CliRunner
from sklearn.metrics import adjusted_rand_score

from dask_softkmeans import SoftKMeans, datasets
from dask_softkmeans.cli import main
from dask_softkmeans.metrics import centroid_index

x509 = pytest.importorskip("cryptography.x509")
from cryptography.hazmat.primitives import hashes, serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ec  # noqa: E402
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID  # noqa: E402

BIN = Path(sys.executable).parent  # the virtual environment's scripts: dask, dask-softkmeans


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _write_pem(path: Path, obj) -> str:
    if isinstance(obj, x509.Certificate):
        path.write_bytes(obj.public_bytes(serialization.Encoding.PEM))
    else:
        path.write_bytes(obj.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return str(path)


def make_certificates(directory: Path, ca_name: str = "dask-softkmeans test CA") -> dict[str, str]:
    """A CA, and one certificate it signs for 127.0.0.1/localhost, good for server and client.

    One certificate for every role is what ``distributed.Security.temporary`` does too; Dask
    checks that the peer's certificate was signed by the CA, not its host name.
    """
    directory.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.UTC)
    valid = {"not_valid_before": now - datetime.timedelta(minutes=5),
             "not_valid_after": now + datetime.timedelta(days=1)}
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (x509.CertificateBuilder(subject_name=_name(ca_name), issuer_name=_name(ca_name),
                                  public_key=ca_key.public_key(),
                                  serial_number=x509.random_serial_number(), **valid)
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                       content_commitment=False, key_encipherment=False,
                                       data_encipherment=False, key_agreement=False,
                                       encipher_only=False, decipher_only=False), critical=True)
          .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()),
                         critical=False)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder(subject_name=_name("dask"), issuer_name=ca.subject,
                                    public_key=key.public_key(),
                                    serial_number=x509.random_serial_number(), **valid)
            .add_extension(x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                critical=False)
            .add_extension(x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                           critical=False)
            .sign(ca_key, hashes.SHA256()))
    return {"ca": _write_pem(directory / "ca.pem", ca),
            "cert": _write_pem(directory / "cert.pem", cert),
            "key": _write_pem(directory / "key.pem", key)}


@pytest.fixture(scope="module")
def certificates(tmp_path_factory) -> dict[str, str]:
    return make_certificates(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="module")
def tls_cluster(tmp_path_factory, certificates, dask_processes) -> Iterator[str]:
    """``dask scheduler --protocol tls`` and two ``dask worker`` processes (with nannies).

    Yields the scheduler's ``tls://127.0.0.1:PORT`` address.
    """
    from distributed import Client, Security

    directory = tmp_path_factory.mktemp("cluster")
    tls = ["--tls-ca-file", certificates["ca"], "--tls-cert", certificates["cert"],
           "--tls-key", certificates["key"]]
    worker = ["--host", "127.0.0.1", "--nthreads", "1", "--memory-limit", "1GiB", *tls]
    security = Security(tls_ca_file=certificates["ca"], tls_client_cert=certificates["cert"],
                        tls_client_key=certificates["key"], require_encryption=True)
    with dask_processes(directory, ["--protocol", "tls", "--host", "127.0.0.1", *tls],
                        [worker, worker], security=security) as address:
        assert address.startswith("tls://127.0.0.1:"), address
        with Client(address, security=security) as client:
            workers = client.scheduler_info()["workers"]
        assert sorted(w.split(":")[0] for w in workers) == ["tls", "tls"], workers
        yield address


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    """Two blobs in 3-D, 3000 rows in three Zarr chunks: both workers get blocks to read.

    Two clusters keep the fit to a few dozen passes; what is tested here is the deployment."""
    path = tmp_path_factory.mktemp("data") / "blobs.zarr"
    datasets.write_blobs(path, n_samples=3000, n_features=3, n_clusters=2, chunk_rows=1000,
                   random_state=3)
    return path


def _run_cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / "dask-softkmeans"), *args], capture_output=True, text=True,
                          timeout=timeout)


@pytest.mark.slow
def test_fit_over_tls_finds_the_generating_centers(tls_cluster, certificates, dataset, tmp_path):
    out = tmp_path / "model.npz"
    result = _run_cli("fit", str(dataset / "X"), "--k", "2", "--scheduler", tls_cluster,
                      "--tls-ca-file", certificates["ca"], "--tls-cert", certificates["cert"],
                      "--tls-key", certificates["key"], "--out", str(out))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Local cluster" not in result.stdout  # it used the TLS cluster, not a local one
    model = SoftKMeans.load(out)
    true_centers = zarr.open_group(str(dataset), mode="r")["centers"][:]
    assert centroid_index(model.cluster_centers_, true_centers) == 0
    # each generating center has a fitted center within a few standard errors (std 1, 1500 rows)
    gaps = np.linalg.norm(true_centers[:, None, :] - model.cluster_centers_[None], axis=2).min(axis=1)
    assert gaps.max() < 0.25, gaps
    # predict takes the same options (in-process: the code path is the same as the command's)
    labels = tmp_path / "labels.zarr"
    result = CliRunner().invoke(main, [
        "predict", str(out), str(dataset / "X"), str(labels), "--scheduler", tls_cluster,
        "--tls-ca-file", certificates["ca"], "--tls-cert", certificates["cert"],
        "--tls-key", certificates["key"], "--quiet"])
    assert result.exit_code == 0, result.output
    truth = zarr.open_group(str(dataset), mode="r")["labels"][:]
    assert adjusted_rand_score(truth, zarr.open_group(str(labels), mode="r")["labels"][:]) > 0.99


# The tests below run the command in-process (CliRunner): the code path is the same, and
# each spares the few seconds a fresh interpreter takes to import dask, distributed and sklearn.

def test_fit_reads_tls_settings_from_dask_config(tls_cluster, certificates, dataset, tmp_path):
    """No options: the certificates come from Dask's configuration, as ``Client`` reads it (from
    DASK_DISTRIBUTED__COMM__TLS__* variables in the Kubernetes recipe).  One cluster keeps it
    short: its center is the mean of the data."""
    out = tmp_path / "model.npz"
    with dask.config.set({"distributed.comm.tls.ca-file": certificates["ca"],
                          "distributed.comm.tls.client.cert": certificates["cert"],
                          "distributed.comm.tls.client.key": certificates["key"]}):
        result = CliRunner().invoke(main, ["fit", str(dataset / "X"), "--k", "1", "--scheduler",
                                           tls_cluster, "--out", str(out), "--quiet"])
    assert result.exit_code == 0, result.output
    x = zarr.open_array(str(dataset / "X"), mode="r")[:]
    np.testing.assert_allclose(SoftKMeans.load(out).cluster_centers_[0], x.mean(axis=0, dtype=float),
                               rtol=1e-5, atol=1e-5)


def test_plain_tcp_client_cannot_use_the_tls_scheduler(tls_cluster, dataset, tmp_path):
    out = tmp_path / "model.npz"
    with dask.config.set({"distributed.comm.timeouts.connect": "2s"}):
        result = CliRunner().invoke(main, ["fit", str(dataset / "X"), "--k", "2", "--out", str(out),
                                           "--scheduler", tls_cluster.replace("tls://", "tcp://")])
    assert result.exit_code == 1, result.output
    assert "Could not connect to the scheduler" in result.output, result.output
    assert "use tls://HOST:PORT with --tls-ca-file" in result.output
    assert not out.exists()


def test_client_certificate_from_another_ca_is_refused(tls_cluster, dataset, tmp_path):
    rogue = make_certificates(tmp_path / "rogue", ca_name="someone else's CA")
    out = tmp_path / "model.npz"
    with dask.config.set({"distributed.comm.timeouts.connect": "2s"}):
        result = CliRunner().invoke(main, ["fit", str(dataset / "X"), "--k", "2", "--out", str(out),
                                           "--scheduler", tls_cluster, "--tls-ca-file", rogue["ca"],
                                           "--tls-cert", rogue["cert"], "--tls-key", rogue["key"]])
    assert result.exit_code == 1, result.output
    assert "Could not connect to the scheduler" in result.output, result.output
    assert "certificate" in result.output and not out.exists()


# The checks below fail before any connection, so they run in-process.

def test_tls_address_without_certificates_is_a_clear_error(dataset, monkeypatch):
    for name in ("CA_FILE", "CLIENT__CERT", "CLIENT__KEY"):
        monkeypatch.delenv(f"DASK_DISTRIBUTED__COMM__TLS__{name}", raising=False)
    result = CliRunner().invoke(main, ["fit", str(dataset / "X"), "--k", "4",
                                       "--scheduler", "tls://127.0.0.1:1"])
    assert result.exit_code == 2, result.output
    assert "uses TLS, but no CA file was given" in result.output
    assert "--tls-ca-file CA.pem --tls-cert CERT.pem" in result.output


def test_ca_without_client_certificate_is_a_clear_error(certificates, dataset):
    result = CliRunner().invoke(main, ["fit", str(dataset / "X"), "--k", "4",
                                       "--scheduler", "tls://127.0.0.1:1",
                                       "--tls-ca-file", certificates["ca"]])
    assert result.exit_code == 2, result.output
    assert "no client certificate was given" in result.output


@pytest.mark.parametrize("scheduler", [None, "tcp://127.0.0.1:1"])
def test_tls_options_without_a_tls_scheduler_are_refused(certificates, dataset, scheduler):
    args = ["fit", str(dataset / "X"), "--k", "4", "--tls-ca-file", certificates["ca"],
            "--tls-cert", certificates["cert"]]
    result = CliRunner().invoke(main, args + (["--scheduler", scheduler] if scheduler else []))
    assert result.exit_code == 2, result.output
    assert "--tls-ca-file, --tls-cert apply to a TLS scheduler" in result.output
    assert "Pass --scheduler tls://HOST:PORT" in result.output
