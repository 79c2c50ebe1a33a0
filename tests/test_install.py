"""The package installed as users install it: read-only, without a writable home, and by the
README's two commands one after the other in one checkout.

The compiled kernel's numba cache must never go into the installed package: in a read-only
installation numba would fail ("cannot cache function ...: no locator available"), and in a
writable one it left a ``__pycache__`` that outlived ``pip uninstall`` and shadowed a later
editable install as a namespace package.  The slow tests here compile the kernel in fresh
processes (about a minute each) and install with pip.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from dask_softkmeans.kernels.compiled import _cache

ROOT = Path(__file__).resolve().parents[1]
NOTICE = "no writable cache directory"
#: Environment variables that would choose the cache or the package for the processes started here.
CHOSEN = ("NUMBA_CACHE_DIR", "XDG_CACHE_HOME", "PYTHONPATH", "PYTHONHOME")


def _environment(**values: str) -> dict[str, str]:
    """This process's environment without the variables of :data:`CHOSEN`, plus ``values``."""
    env = {key: value for key, value in os.environ.items() if key not in CHOSEN}
    return env | values


def _run(argv: list[str], timeout: float, **kwargs) -> subprocess.CompletedProcess:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, **kwargs)
    assert done.returncode == 0, f"{argv}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done


def _set_writable(root: Path, writable: bool) -> None:
    """``chmod -R u+w`` or ``a-w`` on ``root`` (its links left alone)."""
    for path in [root, *root.rglob("*")]:
        if path.is_symlink():
            continue
        mode = path.stat().st_mode
        path.chmod(mode | stat.S_IWUSR if writable else mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))


def _as_a_user() -> list[str]:
    """A prefix that runs a command under file permissions, as a user does.

    root passes every permission check; without ``CAP_DAC_OVERRIDE`` (dropped by
    ``setpriv``) it meets the permission bits like any user, and an ``a-w``
    directory is read-only to it.  Another user needs nothing.
    """
    if os.geteuid() != 0:
        return []
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("running as root without setpriv (util-linux): cannot drop CAP_DAC_OVERRIDE")
    return [setpriv, "--bounding-set=-dac_override,-dac_read_search"]


# ---- which directory the kernel is cached in: fast, in this process --------------------------

def test_numba_cache_dir_is_honoured_when_writable(tmp_path, monkeypatch):
    monkeypatch.setenv(_cache.ENVIRONMENT, str(tmp_path / "numba"))
    assert _cache.cache_directory() == tmp_path / "numba"


def test_an_unwritable_numba_cache_dir_falls_back_to_the_user_cache(tmp_path, monkeypatch):
    """Neither the user's setting nor its absence ever sends the cache into the package."""
    monkeypatch.setenv(_cache.ENVIRONMENT, "/proc/no-such-directory")  # cannot be made, even by root
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert _cache.cache_directory() == tmp_path / "cache" / "dask-softkmeans" / "numba"
    monkeypatch.setenv("XDG_CACHE_HOME", "/proc/no-such-directory")
    assert _cache.cache_directory() is None


def test_the_kernel_modules_leave_numba_s_own_setting_as_it_was():
    """numba's cache directory is pointed at ours only while the kernel's decorators run."""
    import numba

    assert numba.config.CACHE_DIR == os.environ.get(_cache.ENVIRONMENT, "")


# ---- installed copies, in fresh processes --------------------------------------------------

@pytest.fixture(scope="module")
def checkout(tmp_path_factory) -> Path:
    """The project as a fresh clone of this working tree holds it: the files git tracks and the
    new ones it does not ignore (no ``.venv``, no ``__pycache__``, no build outputs)."""
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("not a git checkout: the files of a clone are unknown")
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                            cwd=ROOT, capture_output=True, check=True).stdout.decode()
    target = tmp_path_factory.mktemp("clone") / "dask-softkmeans"
    for name in filter(None, listed.split("\0")):
        source = ROOT / name
        if source.is_file():  # a tracked file deleted in the working tree is not copied
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)
    return target


@pytest.fixture(scope="module")
def wheel(checkout, tmp_path_factory) -> Path:
    """The package's wheel, built from :func:`checkout` by pip (no dependencies)."""
    out = tmp_path_factory.mktemp("wheel")
    _run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(out), str(checkout)],
         timeout=300)
    (built,) = out.glob("dask_softkmeans-*.whl")
    return built


def _install(wheel: Path, target: Path) -> Path:
    """``pip install --target``: the package alone, its dependencies from this environment."""
    _run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target),
          str(wheel)], timeout=300)
    return target


_FIT = """
import sys
import numpy as np

site, home = sys.argv[1:3]
for directory in (site, home):  # the premise: this process can write neither
    try:
        open(f"{directory}/probe", "w").close()
    except OSError:
        pass
    else:
        raise SystemExit(f"{directory} is writable")

import dask_softkmeans
from dask_softkmeans import SoftKMeans

assert dask_softkmeans.__file__.startswith(site), dask_softkmeans.__file__
rng = np.random.default_rng(0)
x = np.concatenate([rng.normal(c, 0.3, size=(300, 2)) for c in (-4.0, 0.0, 4.0)])
model = SoftKMeans(3).fit(x)
print("centers", sorted(round(float(c)) for c in model.cluster_centers_[:, 0]))
"""


@pytest.mark.slow
def test_a_read_only_install_fits_for_a_user_whose_home_is_not_writable(wheel, tmp_path):
    """A container image built as root and run as another user, a shared cluster install: the
    package and the home directory are read-only.  The kernel is compiled in memory, a one-line
    notice says so, and the fit runs.  Slow: the kernel is compiled (no cache to load)."""
    site = _install(wheel, tmp_path / "site")
    home = tmp_path / "home"
    home.mkdir()
    prefix = _as_a_user()
    _set_writable(site, False)
    _set_writable(home, False)
    try:
        done = _run([*prefix, sys.executable, "-c", _FIT, str(site), str(home)], timeout=900,
                    cwd=home, env=_environment(HOME=str(home), PYTHONPATH=str(site)))
    finally:
        _set_writable(site, True)
        _set_writable(home, True)
    assert "centers [-4, 0, 4]" in done.stdout
    notices = [line for line in done.stderr.splitlines() if NOTICE in line]
    assert len(notices) == 1, done.stderr  # once, however many functions
    assert "KernelCacheWarning" in notices[0] and "Traceback" not in done.stderr
    assert not list(site.rglob("*.nb[ic]"))


_LOAD = """
import json
import dask_softkmeans
from dask_softkmeans.kernels import compiled

stats = compiled.soft_block.stats
print(json.dumps({"file": dask_softkmeans.__file__, "cache_dir": str(compiled.CACHE_DIR),
                  "hits": sum(stats.cache_hits.values()), "misses": sum(stats.cache_misses.values())}))
"""


@pytest.mark.slow
def test_the_cache_goes_to_the_user_cache_directory_and_a_second_process_loads_it(wheel, tmp_path):
    """With the package writable (where numba's default would put its cache) and a user cache
    directory, the cache files land in the latter only; a second process loads the kernel from
    them instead of compiling it.  Slow: the first process compiles the kernel."""
    site = _install(wheel, tmp_path / "site")
    cache_home = tmp_path / "cache"
    env = _environment(XDG_CACHE_HOME=str(cache_home), PYTHONPATH=str(site))
    runs = [json.loads(_run([sys.executable, "-c", _LOAD], timeout=900, cwd=tmp_path, env=env).stdout)
            for _ in range(2)]
    expected = cache_home / "dask-softkmeans" / "numba"
    assert all(run["file"].startswith(str(site)) and run["cache_dir"] == str(expected) for run in runs)
    assert runs[0]["misses"] > 0  # compiled, and saved
    assert runs[1]["hits"] > 0 and runs[1]["misses"] == 0, runs  # loaded, not compiled
    assert list(expected.rglob("*.nbi")) and list(expected.rglob("*.nbc"))
    assert not list(site.rglob("*.nb[ic]")), "numba cache files inside the installed package"


def _readme_commands() -> list[str]:
    """The two command lines at the top of README.md (its first ``bash`` block)."""
    block = re.search(r"```bash\n(.*?)```", (ROOT / "README.md").read_text(), re.DOTALL)
    assert block, "README.md has no bash block"
    lines = [line for line in block.group(1).splitlines() if line.strip()]
    assert len(lines) == 2 and all(line.startswith("python3 -m venv .venv && ") for line in lines), lines
    return lines


def _pip_cache() -> dict[str, str]:
    """``PIP_CACHE_DIR`` pinned to pip's cache here, which a changed ``XDG_CACHE_HOME`` would move."""
    done = subprocess.run([sys.executable, "-m", "pip", "cache", "dir"], capture_output=True, text=True)
    return {"PIP_CACHE_DIR": done.stdout.strip()} if done.returncode == 0 and done.stdout.strip() else {}


@pytest.mark.slow
def test_the_readme_commands_one_after_the_other_in_one_checkout(checkout, tmp_path):
    """A newcomer's first minutes: the README's first line (install, then the demo), then its
    second in the same checkout.  The second line's own last step, the test suite, is this
    suite; what broke it was the first install's leftovers (numba's cache in site-packages
    shadowed the editable install as a namespace package, for scripts run outside the
    checkout).  So the second line runs up to its ``pytest`` step, and the package is imported
    from outside the checkout the way the examples' tests import it.  Slow: two virtual
    environments from pip (its cache helps) and one compilation of the kernel."""
    first, second = _readme_commands()
    env = _environment(XDG_CACHE_HOME=str(tmp_path / "cache"), **_pip_cache())
    demo = _run(["bash", "-c", first], timeout=1200, cwd=checkout, env=env)
    assert "Local cluster" in demo.stdout
    assert "pip install 'dask-softkmeans[dashboard]'" in demo.stdout  # bokeh is an extra now
    site = next((checkout / ".venv" / "lib").glob("python3*/site-packages"))
    assert (site / "dask_softkmeans").is_dir() and not list(site.rglob("*.nb[ic]"))

    steps = second.split(" && ")
    assert steps[-1] == ".venv/bin/python -m pytest -q", second
    _run(["bash", "-c", " && ".join(steps[:-1])], timeout=1200, cwd=checkout, env=env)
    assert not (site / "dask_softkmeans").exists(), "the first install left the package folder"
    imported = _run([str(checkout / ".venv" / "bin" / "python"), "-c",
                     "import dask_softkmeans; dask_softkmeans.SoftKMeans; print(dask_softkmeans.__file__)"],
                    timeout=300, cwd=tmp_path, env=env)
    assert Path(imported.stdout.strip()).resolve() == (checkout / "dask_softkmeans" / "__init__.py").resolve()
