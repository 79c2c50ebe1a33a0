"""Checkpoints of a fit: the driver's state, written atomically after each temperature.

A checkpoint is one ``checkpoint.npz`` in a directory, written with
:func:`.save_arrays` (arrays plus JSON, no pickle, atomic replace).  It holds
the annealing state of the current run (:class:`.annealing.AnnealState`),
the best finished run when ``n_init > 1``, the restart seeds, the parameters
that shape the result and a fingerprint of the data.  Resuming checks both,
so a checkpoint is never continued on other data or with other parameters.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..annealing import AnnealResult, AnnealState
from ..errors import CheckpointError, ModelFileError, StoreNotFoundError
from .model_files import load_arrays, save_arrays

FILE_NAME = "checkpoint.npz"

#: Estimator parameters that do not change the result: a fit may resume with others.
_FREE_PARAMETERS = frozenset({"verbose", "persist", "compute_labels", "checkpoint", "random_state"})


@dataclass
class Saved:
    """What a checkpoint holds."""

    run: int  # the run in progress; == n_init when every run is done
    seeds: list[int | None]
    state: AnnealState | None
    best: AnnealResult | None


def fingerprint(data: Any, offset: np.ndarray, top_variance: float, total_weight: float) -> dict:
    """Shape, dtype, row chunks and first-pass statistics of the data.

    The mean and top variance come from the scan every fit makes anyway: a
    resumed fit that sees other values is looking at other data.
    """
    chunks = getattr(data, "chunks", None)
    row_chunks = "in-memory" if chunks is None else hashlib.sha256(
        json.dumps([int(c) for c in chunks[0]]).encode()).hexdigest()[:16]
    return {
        "shape": [int(n) for n in data.shape],
        "dtype": str(data.dtype),
        "row_chunks": row_chunks,
        "mean": [float(v) for v in offset],
        "top_variance": float(top_variance),
        "total_weight": float(total_weight),
    }


def result_parameters(params: dict[str, Any]) -> dict[str, Any]:
    """The estimator parameters that shape the result, JSON-able."""
    return {
        name: value if isinstance(value, (int, float, str, bool, type(None))) else repr(value)
        for name, value in sorted(params.items()) if name not in _FREE_PARAMETERS
    }


def _result_to_arrays(result: AnnealResult) -> tuple[dict, dict[str, np.ndarray]]:
    meta = {"inertia": result.inertia, "temperature": result.temperature,
            "history": result.history, "phases": result.phases, "converged": result.converged}
    return meta, {"best_centers": result.centers, "best_log_priors": result.log_priors}


def _result_from_arrays(meta: dict, arrays: dict[str, np.ndarray]) -> AnnealResult:
    return AnnealResult(
        centers=np.asarray(arrays["best_centers"]), log_priors=np.asarray(arrays["best_log_priors"]),
        inertia=float(meta["inertia"]), temperature=float(meta["temperature"]),
        history=list(meta["history"]), phases=list(meta["phases"]),
        converged=bool(meta["converged"]))


class Checkpoint:
    """Reads and writes the checkpoint of one fit in ``directory``."""

    def __init__(self, directory: str | os.PathLike, data_fingerprint: dict, params: dict) -> None:
        self.directory = Path(directory)
        self.path = self.directory / FILE_NAME
        self.fingerprint = data_fingerprint
        self.params = params

    def load(self, resume: bool) -> Saved | None:
        """The saved state to continue from, None to start afresh; checks data and parameters.

        Raises
        ------
        CheckpointError
            A checkpoint exists and ``resume`` is False (it is left untouched),
            or it was written for other data or parameters, or it is damaged.
        """
        if self.directory.exists() and not self.directory.is_dir():
            raise CheckpointError(
                f"checkpoint={str(self.directory)!r} is a file; it must be a directory "
                "(created if missing). Choose another path.")
        if not self.path.exists():
            return None
        try:
            meta, arrays = load_arrays(self.path)
            saved = meta["checkpoint"]
        except (ModelFileError, StoreNotFoundError, KeyError) as exc:
            raise CheckpointError(
                f"{str(self.path)!r} is not a readable checkpoint ({exc}). Move it away to "
                "start a new fit in this directory.") from exc
        try:
            run, n_init = int(saved["run"]), int(saved["params"].get("n_init", 1))
            passes = len(saved["state"]["history"]) if saved["state"] else 0
            fingerprint, params = dict(saved["fingerprint"]), dict(saved["params"])
            state = None if saved["state"] is None else AnnealState.from_arrays(saved["state"], arrays)
            best = None if saved["best"] is None else _result_from_arrays(saved["best"], arrays)
            seeds = list(saved["seeds"])
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise CheckpointError(
                f"{str(self.path)!r} is a damaged checkpoint ({exc!r}). Move it away to start a "
                "new fit in this directory.") from exc
        if not resume:
            what = ("a finished fit" if run >= n_init else
                    f"an interrupted fit (run {run + 1} of {n_init}, {passes} passes)")
            raise CheckpointError(
                f"{str(self.directory)!r} already holds the checkpoint of {what}. Pass "
                "resume=True (CLI: --resume) to continue it, or choose another checkpoint "
                "directory; the checkpoint was not touched.")
        self._check("data", fingerprint, self.fingerprint,
                    "Resume with the same data, chunked the same way")
        self._check("parameters", params, self.params,
                    "Resume with the parameters of the interrupted fit")
        return Saved(run=run, seeds=seeds, state=state, best=best)

    def _check(self, what: str, saved: dict, current: dict, fix: str) -> None:
        if saved == current:
            return
        differ = sorted(k for k in set(saved) | set(current) if saved.get(k) != current.get(k))
        detail = "; ".join(
            f"{k}: {_short(saved.get(k))} in the checkpoint, {_short(current.get(k))} now"
            for k in differ)
        raise CheckpointError(
            f"The checkpoint in {str(self.directory)!r} was written for other {what} ({detail}). "
            f"{fix}, or choose another checkpoint directory.")

    def write(self, run: int, seeds: list[int | None], state: AnnealState | None,
              best: AnnealResult | None) -> None:
        """Atomically replace the checkpoint (a crash mid-write leaves the previous one)."""
        self.directory.mkdir(parents=True, exist_ok=True)
        arrays: dict[str, np.ndarray] = {}
        state_meta = best_meta = None
        if state is not None:
            state_meta, arrays = state.to_arrays()
        if best is not None:
            best_meta, best_arrays = _result_to_arrays(best)
            arrays.update(best_arrays)
        meta = {"checkpoint": {
            "run": run, "seeds": seeds, "fingerprint": self.fingerprint, "params": self.params,
            "state": state_meta, "best": best_meta,
        }}
        save_arrays(self.path, meta, arrays, overwrite=True)


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
