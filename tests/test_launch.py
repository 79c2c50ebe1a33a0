"""The command line's LocalCluster starts with distributed's diagnostics lightened.

Real LocalClusters of worker processes: the settings must reach the worker
through its nanny, and a value the user set must win.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import dask.config
import pytest
from distributed import Client

from dask_softkmeans.cli import _client
from dask_softkmeans.launch import LIGHT_DIAGNOSTICS, light_diagnostics, local_cluster


@contextmanager
def _cluster() -> Iterator[tuple[Any, Client]]:
    with local_cluster(n_workers=1, threads_per_worker=1, processes=True,
                       dashboard_address=None) as cluster, Client(cluster) as client:
        yield cluster, client


def _intervals(cluster: Any, client: Client) -> dict[str, float]:
    """Seconds between ticks of each server, and between the worker's profile samples."""
    worker = next(iter(client.run(lambda dask_worker: (
        dask_worker._tick_interval,
        dask_worker.periodic_callbacks["profile"].callback_time / 1000)).values()))
    nanny = next(iter(cluster.workers.values()))
    return {"scheduler": client.run_on_scheduler(lambda dask_scheduler: dask_scheduler._tick_interval),
            "nanny": nanny._tick_interval, "worker": worker[0], "profile": worker[1]}


@pytest.fixture(autouse=True)
def _no_chosen_settings(monkeypatch):
    """No Dask configuration file or environment variable of this machine names the keys."""
    monkeypatch.setattr(dask.config, "collect", lambda *args, **kwargs: {})


@pytest.mark.slow
def test_every_process_runs_the_light_diagnostics_and_the_callers_config_is_unchanged():
    before = {key: dask.config.get(key) for key in LIGHT_DIAGNOSTICS}
    assert light_diagnostics() == LIGHT_DIAGNOSTICS  # distributed's defaults here
    with _cluster() as (cluster, client):
        assert _intervals(cluster, client) == {
            "scheduler": 0.5, "nanny": 0.5, "worker": 0.5, "profile": 0.1}
        assert client.submit(sum, [1, 2]).result() == 3
    assert {key: dask.config.get(key) for key in LIGHT_DIAGNOSTICS} == before


@pytest.mark.slow
def test_a_setting_the_user_chose_is_kept():
    with dask.config.set({"distributed.admin.tick.interval": "50ms"}):
        assert light_diagnostics() == {"distributed.worker.profile.interval": "100ms"}
        with _cluster() as (cluster, client):
            assert _intervals(cluster, client) == {
                "scheduler": 0.05, "nanny": 0.05, "worker": 0.05, "profile": 0.1}


def test_a_setting_in_the_environment_is_kept_even_at_distributeds_default(monkeypatch):
    """DASK_DISTRIBUTED__ADMIN__TICK__INTERVAL=20ms is how a user keeps distributed's value."""
    monkeypatch.undo()  # dask.config.collect as it is
    monkeypatch.setenv("DASK_DISTRIBUTED__ADMIN__TICK__INTERVAL", "20ms")
    monkeypatch.delenv("DASK_DISTRIBUTED__WORKER__PROFILE__INTERVAL", raising=False)
    assert light_diagnostics() == {"distributed.worker.profile.interval": "100ms"}


def test_an_asynchronous_cluster_is_refused_with_the_way_to_get_one():
    with pytest.raises(TypeError, match="light_diagnostics"):
        local_cluster(asynchronous=True)


def test_the_command_lines_own_cluster_runs_the_light_diagnostics():
    with _client(None, workers=1, threads=1, memory_limit="auto", quiet=True) as client:
        assert client.run_on_scheduler(lambda dask_scheduler: dask_scheduler._tick_interval) == 0.5
        profile = client.run(lambda dask_worker: dask_worker.periodic_callbacks["profile"].callback_time)
        assert list(profile.values()) == [100]
