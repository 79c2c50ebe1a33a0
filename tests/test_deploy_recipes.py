"""The recipes in deploy/ name commands, options, images and files that exist.

No Docker engine, Kubernetes or SLURM runs here: the compose and Kubernetes files are parsed and
every command in them is parsed by the real command-line parser it names (an unknown option or a
bad value fails); the SLURM launcher's job script comes from dask-jobqueue without SLURM; the SSH
launcher's TLS configuration is used to run a real TLS cluster in this process.  The end-to-end
TLS run with real ``dask scheduler``/``dask worker`` processes is tests/test_deploy_tls.py.
"""

from __future__ import annotations

import importlib.util
import itertools
import re
import shutil
import subprocess
import sys
import tomllib
from importlib.metadata import entry_points
from pathlib import Path
from types import ModuleType

import click
import pytest
import yaml
from dask.utils import parse_bytes

from dask_softkmeans.cli import main as softkmeans_main

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
IMAGE = f"dask-softkmeans:{PYPROJECT['project']['version']}"
TLS_FILES = ("ca.pem", "cert.pem", "key.pem")


def _load(path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def parse_command(argv: list[str], files: dict[str, Path] | None = None) -> tuple[str, dict]:
    """Parse ``argv`` with the click command it names; return its name and parameters.

    ``dask scheduler``/``dask worker`` are looked up the way the ``dask`` command does (the
    ``dask_cli`` entry points), ``dask-softkmeans SUB`` in our group.  Paths in ``files`` are
    swapped for local files first, since the TLS options check that their files exist.
    """
    argv = [str(files.get(arg, arg)) if files else arg for arg in argv]
    program, sub, *args = argv
    if program == "dask":
        commands = {ep.name: ep for ep in entry_points(group="dask_cli")}
        assert sub in commands, f"`dask {sub}` is not a dask command"
        command = commands[sub].load()
    elif program == "dask-softkmeans":
        assert "dask-softkmeans" in PYPROJECT["project"]["scripts"]
        command = softkmeans_main.commands.get(sub)
        assert command is not None, f"`dask-softkmeans {sub}` is not one of our commands"
    else:
        raise AssertionError(f"{program!r} is neither dask nor dask-softkmeans")
    try:
        ctx = command.make_context(f"{program} {sub}", list(args))
    except click.ClickException as exc:
        raise AssertionError(f"{' '.join(argv)}: {exc.format_message()}") from exc
    assert (Path(sys.executable).parent / program).exists()  # installed by pip, like in the image
    return sub, ctx.params


@pytest.fixture(scope="module")
def certs(tmp_path_factory) -> Path:
    """A CA and a certificate made by deploy/tls/make-certs.sh (openssl), as users make them."""
    directory = tmp_path_factory.mktemp("tls") / "certs"
    result = subprocess.run(["bash", str(DEPLOY / "tls" / "make-certs.sh"), str(directory), "2"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return directory


# ---- Docker ----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((DEPLOY / "docker" / "compose.yaml").read_text())


def test_dockerfile_copies_files_that_exist_and_image_tag_matches_version(compose):
    dockerfile = (DEPLOY / "docker" / "Dockerfile").read_text()
    copied = [word for line in dockerfile.splitlines() if line.startswith("COPY")
              for word in line.split()[1:-1]]
    assert copied and all((ROOT / path).exists() for path in copied), copied
    assert f"-t {IMAGE} ." in dockerfile  # the build command in its header
    build = compose["services"]["scheduler"]["build"]
    context = (DEPLOY / "docker" / build["context"]).resolve()
    assert context == ROOT and (context / build["dockerfile"]).is_file()
    # every role runs the one image: same dask, distributed, numpy on client and cluster
    assert {service["image"] for service in compose["services"].values()} == {IMAGE}


def test_compose_runs_a_scheduler_two_workers_and_a_fit_on_the_mounted_store(compose):
    services = compose["services"]
    parsed = {name: parse_command(service["command"]) for name, service in services.items()}
    roles = sorted(role for role, _ in parsed.values())
    assert roles == ["fit", "make-data", "scheduler", "worker", "worker"], roles
    port = parsed["scheduler"][1]["port"]
    address = f"tcp://scheduler:{port}"
    workers = [name for name, (role, _) in parsed.items() if role == "worker"]
    assert all(parsed[name][1]["scheduler"] == address for name in workers)
    fit = parsed["fit"][1]
    assert fit["scheduler"] == address and fit["out"].startswith("/models/")
    assert "make-data" not in [s for s in services if "profiles" not in services[s]]  # opt-in

    def mount_of(service: str, path: str) -> str:
        """The host side of the volume that holds ``path`` in ``service``."""
        for volume in services[service].get("volumes", []):
            host, _, rest = volume.partition(":")
            target = rest.split(":")[0]
            if target and (path == target or path.startswith(target + "/")):
                return host
        raise AssertionError(f"{path} is not on a volume of {service}")

    # the workers read the blocks themselves: same store, same path, as the fit
    data = fit["data"]
    assert {mount_of(name, data) for name in [*workers, "fit"]} == {"./data"}
    assert mount_of("make-data", parsed["make-data"][1]["path"]) == "./data"
    assert data.startswith(parsed["make-data"][1]["path"] + "/")
    assert mount_of("fit", fit["out"]) == "./models"
    assert all(parsed[name][1]["local_directory"] == "/scratch" for name in workers)


# ---- Kubernetes ------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def manifests() -> dict[str, dict]:
    documents = list(yaml.safe_load_all((DEPLOY / "kubernetes" / "softkmeans.yaml").read_text()))
    return {doc["kind"]: doc for doc in documents}


def _pods(manifests) -> dict[str, dict]:
    cluster = manifests["DaskCluster"]["spec"]
    return {"scheduler": cluster["scheduler"]["spec"], "worker": cluster["worker"]["spec"],
            "fit": manifests["Job"]["spec"]["template"]["spec"]}


def test_kubernetes_manifests_are_an_operator_cluster_and_a_job(manifests):
    assert sorted(manifests) == ["DaskCluster", "Job", "PersistentVolumeClaim"]
    assert manifests["DaskCluster"]["apiVersion"] == "kubernetes.dask.org/v1"
    assert manifests["Job"]["apiVersion"] == "batch/v1"
    job_volumes = {v["name"]: v for v in _pods(manifests)["fit"]["volumes"]}
    claim = job_volumes["models"]["persistentVolumeClaim"]["claimName"]
    assert claim == manifests["PersistentVolumeClaim"]["metadata"]["name"]


def test_kubernetes_containers_use_our_image_with_resources_and_tls(manifests, tmp_path):
    local = {}
    for name in TLS_FILES:
        local[f"/etc/dask/tls/{name}"] = tmp_path / name
        (tmp_path / name).write_text("placeholder: the parser only checks that the file exists")
    cluster_name = manifests["DaskCluster"]["metadata"]["name"]
    service = manifests["DaskCluster"]["spec"]["scheduler"]["service"]
    assert service["selector"]["dask.org/cluster-name"] == cluster_name
    port = next(p["port"] for p in service["ports"] if p["name"] == "tcp-comm")
    address = f"tls://{cluster_name}-scheduler:{port}"  # the operator's service name
    for role, pod in _pods(manifests).items():
        (container,) = pod["containers"]
        assert container["image"] == IMAGE, role
        assert {"cpu", "memory"} <= set(container["resources"]["requests"]), role
        assert pod["securityContext"]["runAsUser"] == 1000  # the image's user, who reads secrets
        parsed_role, params = parse_command(container["args"], local)
        assert parsed_role == role
        # TLS in every role, with files from the mounted secret
        mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
        secrets = {v["name"]: v["secret"]["secretName"] for v in pod["volumes"] if "secret" in v}
        tls_volume = next(name for name, secret in secrets.items() if secret == "softkmeans-tls")
        tls_args = [container["args"][i + 1] for i, a in enumerate(container["args"])
                    if a in ("--tls-ca-file", "--tls-cert", "--tls-key")]
        assert sorted(Path(a).name for a in tls_args) == sorted(TLS_FILES), role
        assert all(Path(a).parent == Path(mounts[tls_volume]) for a in tls_args), role
        if role == "scheduler":
            assert params["protocol"] == "tls" and int(params["port"]) == port
        else:
            assert params["scheduler"] == address, role
        if role == "worker":
            # Dask spills and pauses before the kernel's OOM killer acts
            limit = parse_bytes(container["resources"]["limits"]["memory"] + "B")
            assert parse_bytes(params["memory_limit"]) < limit
            assert params["local_directory"] in mounts.values()
        if role == "fit":
            assert params["data"].startswith("s3://")
            assert Path(params["out"]).parent == Path(mounts["models"])
        if role in ("worker", "fit"):  # both read the data from object storage
            assert {"secretRef": {"name": "softkmeans-s3"}} in container["envFrom"], role


# ---- SLURM -----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def slurm() -> ModuleType:
    pytest.importorskip("dask_jobqueue")
    return _load(DEPLOY / "slurm" / "fit_slurm.py")


@pytest.mark.parametrize("walltime, seconds", [
    ("30", 1800), ("30:15", 1815), ("02:00:00", 7200), ("1-12", 129600), ("1-00:30", 88200),
    ("2-01:00:05", 176405)])
def test_slurm_walltime_formats(slurm, walltime, seconds):
    assert slurm.walltime_seconds(walltime) == seconds


def test_slurm_lifetime_leaves_a_margin_and_refuses_too_short_walltimes(slurm):
    assert slurm.lifetime_args("01:00:00") == ["--lifetime", "2940s", "--lifetime-stagger", "360s"]
    assert slurm.lifetime_args("12:00:00", margin_s=600) == [
        "--lifetime", "42000s", "--lifetime-stagger", "600s"]
    with pytest.raises(ValueError, match="longer --walltime"):
        slurm.lifetime_args("00:05:00")
    with pytest.raises(ValueError, match="not a SLURM time limit"):
        slurm.lifetime_args("2h")


def _job_script(slurm, argv: list[str]) -> tuple[str, str]:
    from dask_jobqueue import SLURMCluster

    args, _ = slurm.parse_args(argv)
    with SLURMCluster(**slurm.cluster_kwargs(args)) as cluster:
        return cluster.job_script(), cluster.scheduler_address


def test_slurm_job_script_has_resources_scratch_and_lifetime(slurm):
    script, address = _job_script(slurm, [
        "/shared/blobs.zarr/X", "--cores", "16", "--processes", "2", "--memory", "64GiB",
        "--walltime", "02:00:00", "--queue", "normal", "--account", "proj",
        "--sbatch=--constraint=skylake", "--prologue", "source /opt/venv/bin/activate",
        "--dashboard-address", ":0"])
    for line in ("#SBATCH -p normal", "#SBATCH -A proj", "#SBATCH --cpus-per-task=16",
                 "#SBATCH --mem=64G", "#SBATCH -t 02:00:00", "#SBATCH --constraint=skylake",
                 "source /opt/venv/bin/activate"):
        assert line in script.splitlines(), (line, script)
    (worker,) = [line for line in script.splitlines() if "distributed.cli.dask_worker" in line]
    argv = worker.split()
    assert argv[0] == sys.executable and address in argv and address.startswith("tcp://")
    options = dict(itertools.pairwise(argv))  # option -> the word after it
    assert options["--nworkers"] == "2" and options["--nthreads"] == "8"  # 16 cores, 2 processes
    assert options["--local-directory"] == "$TMPDIR"  # expanded on the node: its local disk
    assert options["--lifetime"] == "6300s" and options["--lifetime-stagger"] == "600s"
    assert parse_bytes(options["--memory-limit"]) == parse_bytes("32GiB")


def test_slurm_with_tls_dir_runs_everything_over_tls(slurm, certs, capsys):
    script, address = _job_script(slurm, ["/shared/blobs.zarr/X", "--tls-dir", str(certs),
                                          "--dashboard-address", ":0"])
    assert address.startswith("tls://")
    (worker,) = [line for line in script.splitlines() if "distributed.cli.dask_worker" in line]
    for option, name in (("--tls-ca-file", "ca.pem"), ("--tls-cert", "cert.pem"),
                         ("--tls-key", "key.pem")):
        assert f"{option} {certs / name}" in worker
    command = slurm.fit_command(address, "/shared/blobs.zarr/X", ["--k", "32", "--out", "m.npz"],
                                str(certs))
    assert Path(command[0]).name == "dask-softkmeans"
    _, params = parse_command(["dask-softkmeans", *command[1:]])
    assert params["scheduler"] == address and params["n_clusters"] == 32


def test_slurm_dry_run_prints_the_job_script(slurm, capsys):
    assert slurm.main(["/shared/blobs.zarr/X", "--dry-run", "--dashboard-address", ":0"]) == 0
    assert capsys.readouterr().out.startswith("#!/usr/bin/env bash\n\n#SBATCH")


def test_launchers_refuse_a_tls_dir_without_certificates(slurm, tmp_path):
    ssh = _load(DEPLOY / "ssh" / "fit_ssh.py")
    for module in (slurm, ssh):
        with pytest.raises(FileNotFoundError, match=r"make-certs\.sh"):
            module.tls_files(str(tmp_path))


# ---- SSH -------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def ssh() -> ModuleType:
    return _load(DEPLOY / "ssh" / "fit_ssh.py")


def test_ssh_launcher_maps_options_to_sshcluster(ssh):
    import inspect

    from distributed import SSHCluster, Worker

    args, fit_args = ssh.parse_args(["/shared/blobs.zarr/X", "--hosts", "head", "n1", "n2",
                                     "--nthreads", "8", "--memory-limit", "30GiB",
                                     "--scratch", "/local/scratch", "--ssh-user", "me",
                                     "--", "--k", "32"])
    kwargs = ssh.cluster_kwargs(args)
    assert set(kwargs) <= set(inspect.signature(SSHCluster).parameters)
    assert kwargs["hosts"] == ["head", "n1", "n2"]  # the first runs the scheduler
    worker_options = dict(kwargs["worker_options"])
    assert worker_options.pop("n_workers") == 1  # taken by SSHCluster itself
    assert set(worker_options) <= set(inspect.signature(Worker).parameters)
    assert worker_options == {"nthreads": 8, "memory_limit": "30GiB",
                              "local_directory": "/local/scratch"}
    assert kwargs["connect_options"] == {"username": "me"}
    assert kwargs["scheduler_options"]["protocol"] == "tcp" and fit_args == ["--k", "32"]
    args, _ = ssh.parse_args(["/x", "--hosts", "only-one"])
    with pytest.raises(ValueError, match="at least one worker host"):
        ssh.cluster_kwargs(args)


def test_ssh_tls_config_makes_a_working_tls_cluster(ssh, certs, tmp_path):
    """The Dask configuration the SSH launcher hands to remote hosts, with make-certs.sh's
    files, runs a real TLS scheduler and worker (here in-process) that accept our CLI's client."""
    import dask
    from distributed import Client, LocalCluster

    args, _ = ssh.parse_args(["/x", "--hosts", "a", "b", "--tls-dir", str(certs)])
    assert ssh.cluster_kwargs(args)["scheduler_options"]["protocol"] == "tls"
    with dask.config.set(ssh.tls_config(str(certs))), \
            LocalCluster(n_workers=1, processes=False, protocol="tls", dashboard_address=None,
                         host="127.0.0.1") as cluster:
        assert cluster.scheduler_address.startswith("tls://")
        with Client(cluster) as client:
            assert client.submit(sum, [1, 2, 3]).result() == 6
    command = ssh.fit_command(cluster.scheduler_address, "/x", [], str(certs))
    assert command[command.index("--tls-ca-file") + 1] == str(certs / "ca.pem")


def test_make_certs_refuses_to_overwrite(certs):
    before = (certs / "ca.pem").read_bytes()
    result = subprocess.run(["bash", str(DEPLOY / "tls" / "make-certs.sh"), str(certs)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 1 and "already holds certificates" in result.stderr
    assert (certs / "ca.pem").read_bytes() == before


def test_readme_names_only_files_that_exist():
    readme = (DEPLOY / "README.md").read_text()
    named = set(re.findall(r"deploy/[\w./-]+\w", readme))
    assert named and all((ROOT / path).exists() for path in named), named
    assert shutil.which("bash")
