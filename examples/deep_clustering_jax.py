"""Deep clustering in JAX: an autoencoder trained jointly with the soft k-means free energy.

    python examples/deep_clustering_jax.py [--seeds 5] [--normalization softmax|entmax15]
        [--pretrain-epochs 150] [--joint-epochs 60] [--weight 0.1]

On scikit-learn's digits (1797 images of 8 x 8 pixels, 10 classes), three
clusterings into 10 clusters, each scored against the true digits by the
clustering accuracy (the best one-to-one match of clusters to digits, found
by the Hungarian algorithm) and the normalised mutual information (NMI):

- k-means on the raw pixels (scikit-learn's ``KMeans``, ``--kmeans-starts`` starts);
- two stages: an autoencoder trained on reconstruction alone, then k-means
  on its embedding (on the unit sphere, see below);
- joint: from that autoencoder and those centers, encoder, decoder and
  centers trained together on reconstruction + ``weight x`` the free energy
  ``dask_softkmeans.free_energy`` of the embedding (per sample), the
  temperature annealed geometrically from ``--t-start`` to ``--t-end``;
  the clusters are the nearest centers at the end.

The embedding is normalised to the unit sphere: without a fixed scale the
free energy is lowered by shrinking the embedding, and every point collapses
onto one center.  Each row of the table is the mean and spread over
``--seeds`` seeds (network initialisation, batches, k-means starts).  The
free energy is differentiated by ``jax.grad`` like the rest of the loss; its
gradient in the centers is the ``2 (N_k c_k - S_k)`` of the Dask passes.
"""

from __future__ import annotations

import argparse
import itertools
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from scipy.optimize import linear_sum_assignment
from sklearn.cluster import KMeans
from sklearn.datasets import load_digits
from sklearn.metrics import normalized_mutual_info_score

from dask_softkmeans import free_energy

#: Arguments that make the example finish in seconds (tests/test_examples.py).
TEST_ARGS = ["--seeds", "1", "--pretrain-epochs", "3", "--joint-epochs", "2", "--kmeans-starts", "1"]

Params = dict[str, Any]


def init_mlp(key: jax.Array, sizes: list[int]) -> list[tuple[jax.Array, jax.Array]]:
    """Weights (He initialisation) and zero biases of a fully connected network."""
    layers = []
    for key_i, (fan_in, fan_out) in zip(jax.random.split(key, len(sizes) - 1),
                                        itertools.pairwise(sizes), strict=True):
        w = jax.random.normal(key_i, (fan_in, fan_out)) * jnp.sqrt(2.0 / fan_in)
        layers.append((w, jnp.zeros(fan_out)))
    return layers


def mlp(layers: list[tuple[jax.Array, jax.Array]], x: jax.Array) -> jax.Array:
    for w, b in layers[:-1]:
        x = jax.nn.relu(x @ w + b)
    w, b = layers[-1]
    return x @ w + b


def encode(params: Params, x: jax.Array) -> jax.Array:
    """The embedding, on the unit sphere."""
    z = mlp(params["encoder"], x)
    return z / jnp.linalg.norm(z, axis=1, keepdims=True)


def reconstruction_loss(params: Params, x: jax.Array) -> jax.Array:
    """Mean squared reconstruction error per pixel."""
    return jnp.mean((mlp(params["decoder"], encode(params, x)) - x) ** 2)


def epoch_runner(step: Any, n_rows: int, batch_size: int) -> Any:
    """One jitted epoch: ``step(carry, batch, extra)`` over shuffled mini-batches (``lax.scan``,
    so that an epoch compiles once instead of dispatching every batch)."""
    n_batches = n_rows // batch_size

    @jax.jit
    def run(carry: Any, key: jax.Array, x: jax.Array, extra: jax.Array) -> Any:
        order = jax.random.permutation(key, n_rows)[: n_batches * batch_size]

        def body(carry: Any, idx: jax.Array) -> tuple[Any, None]:
            return step(carry, x[idx], extra), None

        carry, _ = jax.lax.scan(body, carry, order.reshape(n_batches, batch_size))
        return carry

    return run


def pretrain(params: Params, x: jax.Array, epochs: int, key: jax.Array, args: Any) -> Params:
    """The autoencoder alone, on reconstruction."""
    optimizer = optax.adam(args.learning_rate)

    def step(carry: tuple[Params, Any], xb: jax.Array, _: jax.Array) -> tuple[Params, Any]:
        params, state = carry
        updates, state = optimizer.update(jax.grad(reconstruction_loss)(params, xb), state)
        return optax.apply_updates(params, updates), state

    run = epoch_runner(step, x.shape[0], args.batch_size)
    carry = (params, optimizer.init(params))
    for epoch_key in jax.random.split(key, epochs):
        carry = run(carry, epoch_key, x, jnp.zeros(()))
    return carry[0]


def train_jointly(params: Params, centers: jax.Array, x: jax.Array, epochs: int, key: jax.Array,
                  args: Any) -> tuple[Params, jax.Array]:
    """Encoder, decoder and centers on reconstruction + weight x free energy per sample."""
    optimizer = optax.adam(args.learning_rate)

    def loss(model: Params, xb: jax.Array, temperature: jax.Array) -> jax.Array:
        z = encode(model["net"], xb)
        clustering = free_energy(z, model["centers"], temperature,
                                 normalization=args.normalization) / xb.shape[0]
        return reconstruction_loss(model["net"], xb) + args.weight * clustering

    def step(carry: tuple[Params, Any], xb: jax.Array, temperature: jax.Array) -> tuple[Params, Any]:
        model, state = carry
        updates, state = optimizer.update(jax.grad(loss)(model, xb, temperature), state)
        return optax.apply_updates(model, updates), state

    run = epoch_runner(step, x.shape[0], args.batch_size)
    model = {"net": params, "centers": centers}
    carry = (model, optimizer.init(model))
    temperatures = np.geomspace(args.t_start, args.t_end, max(epochs, 1))
    for temperature, epoch_key in zip(temperatures, jax.random.split(key, epochs), strict=False):
        carry = run(carry, epoch_key, x, jnp.asarray(temperature, x.dtype))
    return carry[0]["net"], carry[0]["centers"]


def cluster_accuracy(y: np.ndarray, labels: np.ndarray) -> float:
    """Accuracy of the best one-to-one matching of clusters to classes (Hungarian)."""
    k = max(y.max(), labels.max()) + 1
    counts = np.zeros((k, k))
    np.add.at(counts, (labels, y), 1)
    rows, cols = linear_sum_assignment(-counts)
    return float(counts[rows, cols].sum() / y.size)


def scores(y: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    return cluster_accuracy(y, labels), float(normalized_mutual_info_score(y, labels))


def run_seed(seed: int, x: np.ndarray, y: np.ndarray, args: Any) -> dict[str, tuple[float, float]]:
    """The three clusterings with one seed: method -> (accuracy, NMI)."""
    n_clusters = 10
    key_net, key_pre, key_joint = jax.random.split(jax.random.PRNGKey(seed), 3)
    raw = KMeans(n_clusters, n_init=args.kmeans_starts, random_state=seed).fit_predict(x)
    xj = jnp.asarray(x, jnp.float32)
    enc_key, dec_key = jax.random.split(key_net)
    params = {"encoder": init_mlp(enc_key, [64, 128, 64, args.embedding]),
              "decoder": init_mlp(dec_key, [args.embedding, 64, 128, 64])}
    params = pretrain(params, xj, args.pretrain_epochs, key_pre, args)
    z = np.asarray(encode(params, xj))
    two_stage = KMeans(n_clusters, n_init=args.kmeans_starts, random_state=seed).fit(z)
    params, centers = train_jointly(params, jnp.asarray(two_stage.cluster_centers_, jnp.float32),
                                    xj, args.joint_epochs, key_joint, args)
    z = encode(params, xj)
    joint = np.asarray(jnp.argmin(jnp.sum((z[:, None, :] - centers[None]) ** 2, axis=2), axis=1))
    return {"k-means, raw pixels": scores(y, raw),
            "two stages: autoencoder, then k-means": scores(y, two_stage.labels_),
            f"joint: autoencoder + free energy ({args.normalization})": scores(y, joint)}


def main(argv: list[str] | None = None) -> dict[str, np.ndarray]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--normalization", choices=["softmax", "entmax15", "sparsemax"],
                        default="softmax")
    parser.add_argument("--pretrain-epochs", type=int, default=150)
    parser.add_argument("--joint-epochs", type=int, default=60)
    parser.add_argument("--weight", type=float, default=0.1, help="weight of the free energy")
    parser.add_argument("--t-start", type=float, default=0.03, help="first temperature")
    parser.add_argument("--t-end", type=float, default=0.003, help="last temperature")
    parser.add_argument("--embedding", type=int, default=10, help="embedding dimension")
    parser.add_argument("--kmeans-starts", type=int, default=10, help="k-means n_init")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    args = parser.parse_args(argv)

    x, y = load_digits(return_X_y=True)
    x = x / 16.0  # pixels in [0, 1]
    start = time.perf_counter()
    per_seed = [run_seed(seed, x, y, args) for seed in range(args.seeds)]
    results = {name: np.array([r[name] for r in per_seed]) for name in per_seed[0]}
    print(f"digits: {x.shape[0]} images, 10 clusters, {args.seeds} seeds, "
          f"{time.perf_counter() - start:.0f} s")
    print(f"{'method':<52} {'accuracy':>15} {'NMI':>15}")
    for name, values in results.items():
        mean, spread = values.mean(axis=0), values.std(axis=0)
        print(f"{name:<52} {mean[0]:>7.3f} ± {spread[0]:.3f} {mean[1]:>7.3f} ± {spread[1]:.3f}")

    # Ten digits: chance accuracy is about 0.1; every method must do far better.
    worst = min(float(v[:, 0].min()) for v in results.values())
    if not np.isfinite(worst) or worst < 0.3:
        raise SystemExit(f"a clustering accuracy of {worst:.3f}: no better than chance")
    return results


if __name__ == "__main__":
    main()
