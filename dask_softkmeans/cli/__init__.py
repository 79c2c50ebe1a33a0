"""The ``dask-softkmeans`` command line: open inputs, call the library, report.

Commands: ``demo``, ``make-data``, ``fit``, ``predict``, ``info``, ``plot``.  Errors the
user can fix exit with status 1 and a one-line message (usage errors with 2,
as click does); ``--help`` works everywhere.  Every command takes ``-q/--quiet``
and ``-v/--verbose``; ``fit`` takes every parameter of :class:`~dask_softkmeans.SoftKMeans`
that means something on a command line, named as in the estimator.

This module imports only click at the top: scikit-learn, Dask, Zarr and rich are
imported inside the commands, so that ``--help`` answers at once.
"""

from __future__ import annotations

import contextlib
import json
import re
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from ..errors import SoftKMeansError

if TYPE_CHECKING:
    from ..estimator import SoftKMeans

#: Names of :data:`dask_softkmeans.optim.OPTIMIZERS`, :data:`dask_softkmeans.io.COMPRESSORS` and
#: :data:`dask_softkmeans.validation.METRICS`, and :data:`dask_softkmeans.datasets.DEFAULT_DATA_COMPRESSOR`,
#: written out so that ``--help`` need not import NumPy and Zarr to list them; the tests keep
#: them equal to the registries.
OPTIMIZER_NAMES = ("em", "gd", "momentum", "adam")
METRIC_NAMES = ("euclidean", "cosine")
NORMALIZATION_NAMES = ("softmax", "entmax15", "sparsemax")
COMPRESSOR_NAMES = ("blosc-lz4", "zstd", "none")
DEFAULT_DATA_COMPRESSOR = "none"

def _user_error(exc: Exception) -> bool:
    """Whether ``exc`` is an error the user can fix: ours, an existing output, or a
    parameter scikit-learn's validation refused (only possible once it is imported)."""
    if isinstance(exc, SoftKMeansError | FileExistsError):
        return True
    validation = sys.modules.get("sklearn.utils._param_validation")
    return validation is not None and isinstance(exc, validation.InvalidParameterError)


class _Command(click.Command):
    """A command with the same ``-q/--quiet`` and ``-v/--verbose`` as every other."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.params.extend([
            click.Option(["--quiet", "-q"], is_flag=True,
                         help="Print only the result (a fit's summary line, info's JSON, the "
                              "demo's scores): no progress and no notes."),
            click.Option(["--verbose", "-v"], is_flag=True,
                         help="Say more: every pass of a fit (default: one line per "
                              "temperature, or a live display on a terminal), the layout of "
                              "data read or written, a model's history."),
        ])

    def invoke(self, ctx: click.Context) -> Any:
        if ctx.params.get("quiet") and ctx.params.get("verbose"):
            raise click.UsageError("--quiet and --verbose contradict each other; pass one.", ctx)
        return super().invoke(ctx)


class _Group(click.Group):
    """Turns our documented errors and invalid parameters into a one-line message, status 1."""

    command_class = _Command

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except Exception as exc:
            if _user_error(exc):
                raise click.ClickException(str(exc)) from exc
            raise


@click.group(cls=_Group)
@click.version_option(package_name="dask-softkmeans")
def main() -> None:
    """Annealed soft k-means on Dask, for NumPy, Dask and Zarr data of any size."""


# -- the estimator's parameters as options of fit -------------------------------------

#: "The 'tol' parameter of SoftKMeans must be ..." -> "must be ...": click names the option.
_PARAMETER_PREFIX = re.compile(r"^The '\w+' parameter of \w+ ")


def _check_parameter(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
    """Check a SoftKMeans parameter with the estimator's own constraints, as the option's
    usage error (before any data are read or any cluster starts)."""
    from sklearn.utils._param_validation import (
        InvalidParameterError,
        validate_parameter_constraints,
    )

    from ..estimator import SoftKMeans

    name = param.name
    try:
        validate_parameter_constraints({name: SoftKMeans._parameter_constraints[name]},
                                       {name: value}, caller_name="SoftKMeans")
    except InvalidParameterError as exc:
        raise click.BadParameter(_PARAMETER_PREFIX.sub("", str(exc)), ctx, param) from None
    return value


class _AutoOr(click.ParamType):
    """``auto``, ``none`` where allowed, or a value of ``inner``: the estimator's parameters
    that take "auto" (``persist``, ``sample_size``)."""

    def __init__(self, inner: click.ParamType, *, none: bool = False) -> None:
        self.inner = inner
        self.none = none
        self.name = "auto|" + ("none|" if none else "") + inner.name

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, str):
            word = value.strip().lower()
            if word == "auto":
                return "auto"
            if self.none and word == "none":
                return None
        try:
            return self.inner.convert(value, param, ctx)
        except click.BadParameter:
            words = "auto, none" if self.none else "auto"
            self.fail(f"{value!r} is neither {words} nor a valid {self.inner.name}.", param, ctx)


#: One option per SoftKMeans parameter (but ``compute_labels`` and ``verbose``: see
#: ``fit``), named as in the estimator, with
#: the estimator's defaults (the tests check both); values are checked by the estimator's
#: own constraints (:func:`_check_parameter`).
estimator_options = [
    click.option("--n-clusters", "--k", "n_clusters", type=_AutoOr(click.INT), default=8,
                 show_default=True, callback=_check_parameter,
                 help="Number of clusters K (--k: the same), or auto: read K from the "
                      "annealing's phase diagram (needs --max-clusters)."),
    click.option("--max-clusters", type=int, default=None, callback=_check_parameter,
                 help="With --n-clusters auto: the most clusters the annealing makes (more "
                      "than the K you expect)."),
    click.option("--metric", type=click.Choice(METRIC_NAMES), default="euclidean",
                 show_default=True, callback=_check_parameter,
                 help="euclidean: k-means on squared distances. cosine: spherical k-means on "
                      "the rows' directions (rows scaled to unit length as they are read, unit "
                      "centers, inertia the sum of 1 - cos); a row of zeros is an error."),
    click.option("--normalization", type=click.Choice(NORMALIZATION_NAMES), default="softmax",
                 show_default=True, callback=_check_parameter,
                 help="How -d/T becomes responsibilities in the fit: softmax (with the "
                      "clusters' priors), or the sparse maps entmax15 and sparsemax (exact "
                      "zeros, equal priors). predict --proba uses the same "
                      "map unless told otherwise."),
    click.option("--n-init", type=int, default=1, show_default=True, callback=_check_parameter,
                 help="Annealing runs; the best (lowest inertia) is kept. The first run is "
                      "deterministic, the others perturb the split directions "
                      "(seeded by --random-state)."),
    click.option("--random-state", type=int, default=None, callback=_check_parameter,
                 help="Seed of the restarts when --n-init > 1, so that a fit can be repeated "
                      "(default: unseeded). A fit with --n-init 1 uses no randomness."),
    click.option("--tol", type=float, default=1e-2, show_default=True,
                 callback=_check_parameter,
                 help="At temperature T the passes stop when every center moves less than "
                      "sqrt(tol * T): relative to the scale of the data."),
    click.option("--cooling", type=float, default=0.9, show_default=True,
                 callback=_check_parameter,
                 help="Geometric cooling factor, in (0, 1), while fewer than K clusters exist."),
    click.option("--max-iter", type=int, default=300, show_default=True,
                 callback=_check_parameter,
                 help="Most passes of each Lloyd run at T = 0."),
    click.option("--persist", type=_AutoOr(click.BOOL), default="auto", show_default=True,
                 metavar="auto|true|false", callback=_check_parameter,
                 help="Hold the data in the workers' memory for the passes: auto when they fit "
                      "in half of it; false streams them from the store at every pass."),
    click.option("--sample-size", type=_AutoOr(click.INT, none=True), default="auto",
                 show_default=True, metavar="auto|none|ROWS", callback=_check_parameter,
                 help="Rows of the in-memory sample the annealing at T > 0 runs on (auto: "
                      "max(10000, 200 K), or all the data when that is more than half of them; "
                      "none: all the data). The passes at T = 0 always read all the data."),
    click.option("--split-every", type=int, default=8, show_default=True,
                 callback=_check_parameter, help="Inputs per node of the tree reduction."),
    click.option("--optimizer", type=click.Choice(OPTIMIZER_NAMES), default="em",
                 show_default=True, callback=_check_parameter,
                 help="Center update at T > 0: em (closed form) or a gradient optimiser (gd, "
                      "momentum, adam) on the same tree-reduced gradient."),
    click.option("--checkpoint", metavar="DIR", default=None, callback=_check_parameter,
                 help="Write the driver's state to DIR at each temperature (atomically)."),
]


# -- cluster -----------------------------------------------------------------------------

_TLS_OPTIONS = ("tls_ca_file", "tls_cert", "tls_key")


def _remember_tls_option(ctx: click.Context, param: click.Parameter, value: str | None) -> None:
    # The TLS options reach _client through the context, so that every command that talks
    # to a scheduler takes them without threading three more parameters through its signature.
    ctx.meta.setdefault("dask_softkmeans.tls", {})[param.name] = value


def _security(scheduler: str | None, tls_ca_file: str | None = None, tls_cert: str | None = None,
              tls_key: str | None = None) -> Any:
    """The ``distributed.Security`` for ``scheduler``, checked before any connection is tried.

    Certificates given as options win; otherwise Dask's configuration
    (``distributed.comm.tls.ca-file``, ``distributed.comm.tls.client.cert`` and ``.key``,
    e.g. from ``DASK_DISTRIBUTED__COMM__TLS__CA_FILE``) is used, as ``Client`` does.

    Raises
    ------
    click.UsageError
        A ``tls://`` address without a CA file and a client certificate, or TLS options
        without a ``tls://`` address.
    """
    from distributed import Security

    given = [f"--{name.replace('_', '-')}" for name, value in
             zip(_TLS_OPTIONS, (tls_ca_file, tls_cert, tls_key), strict=True) if value]
    tls = bool(scheduler) and scheduler.startswith("tls://")
    if given and not tls:
        raise click.UsageError(
            f"{', '.join(given)} apply to a TLS scheduler, but the scheduler is "
            f"{scheduler or 'a local cluster (no --scheduler)'}. "
            "Pass --scheduler tls://HOST:PORT, or drop the TLS options.")
    if given:
        security = Security(tls_ca_file=tls_ca_file, tls_client_cert=tls_cert,
                            tls_client_key=tls_key, require_encryption=True)
    else:
        security = Security()  # Dask's configuration, as a plain Client(address) would read it
    if tls and not (security.tls_ca_file and security.tls_client_cert):
        raise click.UsageError(
            f"The scheduler {scheduler} uses TLS, but no "
            + ("client certificate" if security.tls_ca_file else "CA file")
            + " was given. Pass --tls-ca-file CA.pem --tls-cert CERT.pem [--tls-key KEY.pem] "
            "(the certificates the scheduler was started with trust), or set "
            "distributed.comm.tls.ca-file and distributed.comm.tls.client.cert/.key in Dask's "
            "configuration (DASK_DISTRIBUTED__COMM__TLS__CA_FILE, ...__CLIENT__CERT, "
            "...__CLIENT__KEY).")
    return security


def _forget_failed_client() -> None:
    """A ``Client`` whose start failed stays distributed's default client, half made: close
    it, so that nothing else in this process (a test, a program calling ``main``) uses it."""
    from distributed import default_client

    with contextlib.suppress(ValueError):  # no default client
        client = default_client()
        if client.status != "running":
            client.close()


@contextlib.contextmanager
def _client(scheduler: str | None, workers: int, threads: int, memory_limit: str,
            quiet: bool) -> Iterator[Any]:
    """A client of an existing scheduler, or of a LocalCluster started here."""
    from distributed import Client

    from ..launch import dashboard_link, light_diagnostics, local_cluster

    context = click.get_current_context(silent=True)
    tls_options = context.meta.get("dask_softkmeans.tls", {}) if context else {}
    security = _security(scheduler, **tls_options)
    if scheduler:
        try:
            client = Client(scheduler, security=security)
        except (OSError, ValueError) as exc:  # timeouts; an address without a port
            _forget_failed_client()
            hint = ("" if scheduler.startswith("tls://") else
                    " If the scheduler was started with TLS, use tls://HOST:PORT with "
                    "--tls-ca-file, --tls-cert and --tls-key.")
            raise click.ClickException(
                f"Could not connect to the scheduler at {scheduler}: {exc}. Check the address "
                f"and that the scheduler is running and reachable.{hint}") from exc
        with client:
            if not quiet:
                click.echo(f"Connected to {scheduler}, dashboard {client.dashboard_link}")
            yield client
        return
    with local_cluster(n_workers=workers, threads_per_worker=threads,
                       memory_limit=memory_limit, dashboard_address=":0") as cluster, \
            Client(cluster) as client:
        if not quiet:
            light = light_diagnostics()
            lighter = (f"; lighter diagnostics: {', '.join(f'{k} {v}' for k, v in light.items())}"
                       if light else "")
            click.echo(f"Local cluster: {workers} workers x {threads} threads, "
                       f"dashboard {dashboard_link(client)}{lighter}")
        yield client


def _load_kernel(client: Any, quiet: bool) -> None:
    """Load the compiled kernel here and on every worker before a fit is timed, saying
    so when numba compiles it (:func:`dask_softkmeans.engine.load_kernel`)."""
    from ..engine import load_kernel
    from ..estimator import COMPILING
    from .progress import notice_if_slow

    with contextlib.nullcontext() if quiet else notice_if_slow(COMPILING):
        load_kernel(client)


def _fit(model: SoftKMeans, data: Any, quiet: bool, verbose: bool, resume: bool = False,
         storage_options: dict[str, Any] | None = None,
         variables: list[str] | None = None) -> SoftKMeans:
    """Fit with progress on standard error: a live display on a terminal, log lines otherwise."""
    from .progress import FitProgress

    kwargs = {"resume": resume, "storage_options": storage_options, "variables": variables}
    if quiet:
        return model.fit(data, **kwargs)
    with FitProgress(model._most_clusters, verbose=verbose) as progress:
        return model.fit(data, callback=progress, **kwargs)


def _parse_variables(ctx: click.Context, param: click.Parameter,
                     value: str | None) -> list[str] | None:
    """``--variables a,b,c``: the names, in order, without empty ones."""
    if value is None:
        return None
    names = [name.strip() for name in value.split(",") if name.strip()]
    if not names:
        raise click.BadParameter("name at least one data variable, e.g. --variables t2m,u10.",
                                 ctx, param)
    return names


def _passes(model: SoftKMeans) -> str:
    """"N passes" or, when the annealing ran on a sample, how many ran on it; and whether
    the data were held in memory (``persist="auto"`` decides)."""
    full = sum(record.get("data", "full") == "full" for record in model.history_)
    where = ("held in the workers' memory" if model.persisted_
             else "read from the store at each pass")
    if full == model.n_iter_:
        return f"{full} passes over the data, {where}"
    sample = model.n_iter_ - full
    if any(r.get("data") == "copy" for r in model.history_):
        return f"{sample} passes over a float32 copy of the data, {full} over the data, {where}"
    rows = next(int(r["weight"]) for r in model.history_ if r.get("data") == "sample")
    return f"{sample} passes over a {rows}-row sample, {full} over all the data, {where}"


def _save(model: SoftKMeans, out: str | None, overwrite: bool, quiet: bool) -> None:
    if out:
        model.save(out, overwrite=overwrite)
        if not quiet:
            click.echo(f"Model written to {out}")


def _layout(x: Any) -> str:
    """Rows, columns, type and row blocks of a 2-D Zarr array, for --verbose."""
    if getattr(x, "ndim", None) != 2:
        return type(x).__name__  # a group (features as variables): no single layout
    rows, columns = x.shape
    blocks = -(-rows // x.chunks[0]) if rows else 0
    return f"{rows} x {columns} {x.dtype} in {blocks} row blocks of {x.chunks[0]} rows"


def _options(options: list[Callable[[Any], Any]]) -> Callable[[Any], Any]:
    """One decorator applying ``options`` in order (the first listed shows first in --help)."""

    def decorate(func: Any) -> Any:
        for option in reversed(options):
            func = option(func)
        return func

    return decorate


cluster_options = [
    click.option("--scheduler", metavar="ADDRESS",
                 help="Address of a running scheduler (tcp://host:8786 or tls://host:8786); "
                      "default: a local cluster."),
    click.option("--tls-ca-file", type=click.Path(exists=True, dir_okay=False), expose_value=False,
                 callback=_remember_tls_option,
                 help="tls:// scheduler: CA certificate (PEM) that signed the cluster's certificates."),
    click.option("--tls-cert", type=click.Path(exists=True, dir_okay=False), expose_value=False,
                 callback=_remember_tls_option,
                 help="tls:// scheduler: this client's certificate (PEM), signed by that CA."),
    click.option("--tls-key", type=click.Path(exists=True, dir_okay=False), expose_value=False,
                 callback=_remember_tls_option,
                 help="tls:// scheduler: the private key of --tls-cert (omit if in the cert file)."),
    click.option("--workers", default=2, show_default=True, type=click.IntRange(min=1),
                 help="Local cluster: worker processes."),
    click.option("--threads", default=1, show_default=True, type=click.IntRange(min=1),
                 help="Local cluster: threads per worker."),
    click.option("--memory-limit", default="auto", show_default=True,
                 help="Local cluster: memory per worker, e.g. 4GiB."),
]


def _blob_options(k_help: str) -> Callable[[Any], Any]:
    """The generated dataset's size, as ``make-data`` and ``demo`` take it."""
    return _options([
        click.option("--n-samples", default=200_000, show_default=True,
                     type=click.IntRange(min=1), help="Rows of the generated dataset."),
        click.option("--n-features", default=8, show_default=True, type=click.IntRange(min=1),
                     help="Its columns."),
        click.option("--n-clusters", "--k", "n_clusters", default=8, show_default=True,
                     type=click.IntRange(min=1), help=k_help + " (--k: the same)."),
    ])


def _parse_storage_options(ctx: click.Context, param: click.Parameter,
                            value: str | None) -> dict[str, Any] | None:
    """``--storage-options``: a JSON object, or a usage error that shows one."""
    if value is None:
        return None
    try:
        options = json.loads(value)
    except json.JSONDecodeError as exc:
        raise click.BadParameter(
            f"not JSON ({exc}); give an object, e.g. '{{\"anon\": true}}'.") from None
    if not isinstance(options, dict):
        raise click.BadParameter(
            f"must be a JSON object, e.g. '{{\"anon\": true}}'; got {value!r}.")
    return options


_storage_options = click.option(
    "--storage-options", metavar="JSON", callback=_parse_storage_options,
    help='fsspec options for URLs (s3://, gs://, ...) as a JSON object, e.g. '
         '\'{"anon": true}\' or \'{"endpoint_url": "http://host:9000"}\'.')


# -- commands ------------------------------------------------------------------------------

@main.command("make-data")
@click.argument("path", type=click.Path())
@_blob_options("Its blobs")
@click.option("--cluster-std", default=1.0, show_default=True, type=click.FloatRange(min=0),
              help="Standard deviation of each blob (the centers lie in a box of side 20).")
@click.option("--chunk-rows", default=65_536, show_default=True, type=click.IntRange(min=1),
              help="Rows per Zarr chunk.")
@click.option("--dtype", type=click.Choice(["float32", "float64"]), default="float32",
              show_default=True, help="Type of the values stored.")
@click.option("--compressor", type=click.Choice(COMPRESSOR_NAMES),
              default=DEFAULT_DATA_COMPRESSOR, show_default=True,
              help="Gaussian noise hardly compresses (0.91 of its size with blosc-lz4) "
                   "and decoding slows every streamed pass: none by default.")
@click.option("--random-state", "--seed", "random_state", default=0, show_default=True,
              type=click.IntRange(min=0),
              help="Seed of the generator: the same seed, the same data (--seed: the same).")
@click.option("--overwrite", is_flag=True, help="Replace PATH if it exists.")
@_storage_options
def make_data(path: str, n_samples: int, n_features: int, n_clusters: int, cluster_std: float,
              chunk_rows: int, dtype: str, compressor: str, random_state: int, overwrite: bool,
              storage_options: dict[str, Any] | None, quiet: bool, verbose: bool) -> None:
    """Write a Gaussian-blob dataset to the Zarr group PATH, chunk by chunk.

    PATH/X holds the data, PATH/labels the true labels and PATH/centers the
    generating centers.  Memory stays a few chunks whatever --n-samples, so
    a dataset larger than this machine's memory can be written.
    """
    from .. import datasets, io

    if storage_options and not io.stores.is_url(path):
        raise click.UsageError(
            "--storage-options apply to URLs (s3://, gs://, ...), but PATH is a local path. "
            "Drop --storage-options.")
    if Path(path).exists() and not overwrite:
        raise click.ClickException(f"{path!r} exists. Choose another path or pass --overwrite.")
    start = time.perf_counter()
    datasets.write_blobs(path, n_samples, n_features, n_clusters, cluster_std=cluster_std,
                         chunk_rows=chunk_rows, dtype=dtype, compressor=compressor,
                         random_state=random_state, overwrite=overwrite,
                         storage_options=storage_options)
    if not quiet:
        click.echo(f"Wrote {n_samples} x {n_features} {dtype} ({n_clusters} blobs) to {path}/X "
                   f"in {time.perf_counter() - start:.1f} s")
    if verbose:
        x = io.open_array(f"{path}/X", storage_options=storage_options)
        click.echo(f"  {path}/X: {_layout(x)}, compressor {compressor}, seed {random_state}")


@main.command()
@click.argument("data")
@_options(estimator_options)
@click.option("--out", metavar="MODEL", help="Write the fitted model to this .npz file.")
@click.option("--overwrite", is_flag=True, help="Replace MODEL if it exists.")
@click.option("--resume", is_flag=True,
              help="Continue the fit checkpointed in --checkpoint DIR (start afresh if none).")
@click.option("--variables", metavar="NAME,...", callback=_parse_variables,
              help="DATA is a Zarr group written by xarray: its 1-D data variables to use as "
                   "features, in this order (default: every data variable).")
@_storage_options
@_options(cluster_options)
def fit(data: str, out: str | None, overwrite: bool, resume: bool, variables: list[str] | None,
        storage_options: dict[str, Any] | None, scheduler: str | None, workers: int,
        threads: int, memory_limit: str, quiet: bool, verbose: bool,
        **estimator_params: Any) -> None:
    """Fit SoftKMeans to DATA (a path or URL): a 2-D Zarr array, or a Zarr group written by
    xarray whose data variables are the features (see --variables).

    The options from --n-clusters to --checkpoint are the estimator's
    parameters, with its names and defaults.  With --checkpoint DIR an
    interrupted fit (driver killed, machine pre-empted) continues with the same
    command plus --resume, and ends with the result an uninterrupted fit would
    have given.
    """
    from .. import io
    from ..estimator import SoftKMeans

    if resume and not estimator_params["checkpoint"]:
        raise click.UsageError("--resume needs --checkpoint DIR (the directory of the interrupted fit).")
    if out and Path(out).exists() and not overwrite:
        raise click.ClickException(f"{out!r} exists. Choose another path or pass --overwrite.")
    if out and not Path(out).absolute().parent.is_dir():
        # Found now, not after a fit of hours.
        raise click.ClickException(
            f"The directory of {out!r} does not exist. Create it first, or choose another path.")
    # Not options: labels are predict's job (out of core, a model file holds none), and
    # --verbose is the CLI's own progress display, which the estimator's printing would repeat.
    model = SoftKMeans(**estimator_params, compute_labels=False)
    model._validate_params()  # the options were checked one by one; this checks them together
    try:
        model._check_k()  # --n-clusters and --max-clusters together, before a cluster starts
    except ValueError as exc:
        raise click.UsageError(str(exc).replace("n_clusters=", "--n-clusters ").replace(
            "max_clusters=", "--max-clusters ")) from None
    x = io.open_data(data, storage_options=storage_options)  # a bad path fails before a cluster
    if variables is not None and getattr(x, "ndim", None) == 2:
        raise click.UsageError(f"--variables choose data variables of a Zarr group; {data!r} is "
                               "an array. Drop --variables.")
    if getattr(x, "ndim", None) != 2:  # a group: read as a Dataset now (metadata only)
        from ..inputs import as_features

        as_features(data, variables=variables, storage_options=storage_options)
    if verbose:
        click.echo(f"{data}: {_layout(x)}")
    with _client(scheduler, workers, threads, memory_limit, quiet) as client:
        _load_kernel(client, quiet)
        start = time.perf_counter()
        model = _fit(model, data, quiet, verbose, resume=resume, storage_options=storage_options,
                     variables=variables)
        seconds = time.perf_counter() - start
    click.echo(f"Fitted {model.n_clusters_} clusters in {seconds:.2f} s, {_passes(model)}, "
               f"inertia {model.inertia_:.6g}")
    _save(model, out, overwrite, quiet)


@main.command()
@click.argument("model_path", metavar="MODEL")
@click.argument("data")
@click.argument("out")
@click.option("--proba", is_flag=True,
              help="Also write the responsibilities to OUT/proba (float32, rows x clusters).")
@click.option("--distances", is_flag=True,
              help="Also write the distances to every center to OUT/distances (float32).")
@click.option("--temperature", type=float, default=None,
              help="Temperature of --proba; default: the model's final one.")
@click.option("--normalization", type=click.Choice(NORMALIZATION_NAMES), default=None,
              help="Map of --proba (softmax, entmax15, sparsemax); default: the model's own.")
@click.option("--overwrite", is_flag=True, help="Replace OUT if it exists.")
@_storage_options
@_options(cluster_options)
def predict(model_path: str, data: str, out: str, proba: bool, distances: bool,
            temperature: float | None, normalization: str | None, overwrite: bool,
            storage_options: dict[str, Any] | None,
            scheduler: str | None, workers: int, threads: int, memory_limit: str, quiet: bool,
            verbose: bool) -> None:
    """Write per-row results for DATA to the new Zarr group OUT, out of core.

    DATA is a 2-D Zarr array, or a Zarr group written by xarray (the model's
    features are read from the data variables of the same names).

    OUT/labels holds the nearest center of every row (int32); --proba and
    --distances add OUT/proba and OUT/distances.  Each block of DATA is read
    once and its results are written by the worker that computed them, in
    chunks aligned with DATA's: nothing is gathered here.  --storage-options apply to
    whichever of DATA and OUT is a URL.
    """
    from .. import io
    from ..estimator import SoftKMeans
    from ..validation import check_temperature

    if Path(out).exists() and not overwrite:
        raise click.ClickException(f"{out!r} exists. Choose another path or pass --overwrite.")
    if temperature is not None:
        check_temperature(temperature)  # before a cluster starts
    model = SoftKMeans.load(model_path)
    urls = [path for path in (data, out) if io.stores.is_url(path)]
    if storage_options and not urls:
        raise click.UsageError(
            "--storage-options apply to URLs (s3://, gs://, ...), but DATA and OUT are local "
            "paths. Drop --storage-options.")
    data_options, out_options = (storage_options if io.stores.is_url(path) else None
                                 for path in (data, out))
    x = io.open_data(data, storage_options=data_options)  # a bad path fails before a cluster
    if getattr(x, "ndim", None) != 2:  # a group: its variables checked now (metadata only)
        from ..inputs import as_features

        names = getattr(model, "feature_names_in_", None)
        as_features(data, storage_options=data_options,
                    fitted_names=None if names is None else list(names))
    what = ("labels",) + (("proba",) if proba else ()) + (("distances",) if distances else ())
    if verbose:
        click.echo(f"{model_path}: {model.n_clusters_} clusters of {model.n_features_in_} "
                   f"features, final temperature {model.temperature_:.6g}")
        click.echo(f"{data}: {_layout(x)}")
    with _client(scheduler, workers, threads, memory_limit, quiet):
        group = model.write_predictions(x, out, what=what, temperature=temperature,
                                        normalization=normalization, overwrite=overwrite,
                                        storage_options=out_options)
    if not quiet:
        click.echo(f"{', '.join(what).capitalize()} of {group['labels'].shape[0]} rows "
                   f"written to {out} ({', '.join(f'{out}/{name}' for name in what)})")


@main.command()
@click.argument("model_path", metavar="MODEL")
def info(model_path: str, quiet: bool, verbose: bool) -> None:
    """Print a summary of a saved model as JSON (with --verbose, its history: one record per pass)."""
    from ..estimator import SoftKMeans

    model = SoftKMeans.load(model_path)
    summary = model.summary()
    if verbose:
        summary["history"] = model.history_
    click.echo(json.dumps(summary, indent=2))


@main.command()
@click.argument("model_path", metavar="MODEL")
@click.argument("out", type=click.Path(dir_okay=False))
@click.option("--data", metavar="X",
              help="The 2-D Zarr array the model was fitted on (a path or URL): adds a panel "
                   "with a uniform sample of its points and the centers.")
@click.option("--max-points", default=5_000, show_default=True, type=click.IntRange(min=1),
              help="Largest number of points drawn from --data.")
@click.option("--overwrite", is_flag=True, help="Replace OUT if it exists.")
def plot(model_path: str, out: str, data: str | None, max_points: int, overwrite: bool,
         quiet: bool, verbose: bool) -> None:
    """Draw the annealing path of MODEL to the image OUT (PNG, or .pdf/.svg by suffix).

    Free energy, inertia, entropy and distinct clusters against temperature,
    phase transitions marked.  Needs matplotlib: pip install "dask-softkmeans[plot]".
    """
    from .. import io, plotting
    from ..estimator import SoftKMeans

    plotting.require_matplotlib()  # before reading anything
    plotting.check_image_path(out)
    if Path(out).exists() and not overwrite:
        raise click.ClickException(f"{out!r} exists. Choose another path or pass --overwrite.")
    model = SoftKMeans.load(model_path)
    if data is not None:
        x = io.open_array(data)  # a bad path fails here, with the store's own message
        if verbose:
            click.echo(f"{data}: {_layout(x)}; at most {max_points} points drawn")
    if verbose:
        temperatures = model.phase_diagram_[:, 0]
        click.echo(f"Annealing path: {len(temperatures)} temperatures from "
                   f"T={temperatures[0]:.4g} to T={temperatures[-1]:.4g}, "
                   f"{model.n_iter_} passes")
    plotting.plot_annealing(model, out, X=data, max_points=max_points)
    if not quiet:
        click.echo(f"Plot written to {out}")


@main.command()
@_blob_options("Its blobs, and the clusters fitted")
@click.option("--workers", default=2, show_default=True, type=click.IntRange(min=1),
              help="Worker processes of the local cluster (1 thread each).")
@click.option("--dir", "directory", type=click.Path(), default=None,
              help="Where to write the dataset (default: a temporary directory).")
def demo(n_samples: int, n_features: int, n_clusters: int, workers: int,
         directory: str | None, quiet: bool, verbose: bool) -> None:
    """End to end: write blobs to Zarr, start a LocalCluster, fit, compare with the truth."""
    import zarr
    from sklearn.metrics import adjusted_rand_score

    from .. import datasets
    from ..estimator import SoftKMeans
    from ..metrics import centroid_index

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(directory or tmp) / "blobs.zarr"
        if directory is not None and path.exists():
            raise click.ClickException(
                f"{str(path)!r} exists. Choose another --dir, or remove it first.")
        start = time.perf_counter()
        datasets.write_blobs(path, n_samples, n_features, n_clusters, overwrite=directory is None)
        click.echo(f"Wrote {n_samples} x {n_features} float32 Gaussian blobs ({n_clusters} "
                   f"clusters) to {path} in {time.perf_counter() - start:.1f} s")
        group = zarr.open_group(str(path), mode="r")
        with _client(None, workers, 1, "auto", quiet) as client:
            _load_kernel(client, quiet)
            start = time.perf_counter()
            model = _fit(SoftKMeans(n_clusters, compute_labels=False), str(path / "X"),
                         quiet, verbose)
            seconds = time.perf_counter() - start
            labels = model.predict(str(path / "X")).compute()
        truth = group["labels"][:]
        true_centers = group["centers"][:]
        x = group["X"]
        true_inertia = sum(
            float(((x[i:i + 65536] - true_centers[truth[i:i + 65536]]) ** 2).sum())
            for i in range(0, n_samples, 65536))
        click.echo(f"Fitted in {seconds:.2f} s ({_passes(model)})")
        click.echo(f"  centroid index vs generating centers: "
                   f"{centroid_index(model.cluster_centers_, true_centers)} (0 = all found)")
        click.echo(f"  adjusted Rand index vs true labels:   "
                   f"{adjusted_rand_score(truth, labels):.4f}")
        click.echo(f"  inertia / inertia of the true labels: {model.inertia_ / true_inertia:.6f}")
        changes = [f"{int(n)} at T={t:.3g}" + (" (merge)" if n < before else "")
                   for (t, n), (_, before) in
                   zip(model.phase_diagram_[1:], model.phase_diagram_[:-1], strict=True) if n != before]
        click.echo("  distinct clusters as the temperature fell: 1, then " + ", ".join(changes))
