import jax
import jax.numpy as jnp
import numpy as np
import pytest

from hera_jax.router.metrics import auroc, binary_metrics, split_binary_metrics
from hera_jax.router.train import TrainConfig, TrainData, make_train


def _synthetic(n=1200, d=16, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d)).astype(np.float32)
    y = (x[:, 0] + 0.3 * rng.normal(size=n) > 0.9).astype(np.int32)  # ~20% positives, learnable
    split = int(0.8 * n)
    return TrainData(jnp.asarray(x[:split]), jnp.asarray(y[:split]), jnp.ones(split), jnp.asarray(x[split:]),
                     jnp.asarray(y[split:]))


def test_auroc_matches_the_pairwise_definition_with_ties():
    rng = np.random.default_rng(1)
    scores = np.round(rng.random(300), 1)  # many ties
    labels = rng.random(300) < 0.3
    pos, neg = scores[labels], scores[~labels]
    expected = ((pos[:, None] > neg[None]).sum() + 0.5 * (pos[:, None] == neg[None]).sum()) / (len(pos) * len(neg))
    np.testing.assert_allclose(float(auroc(jnp.asarray(scores), jnp.asarray(labels))), expected, rtol=1e-6)
    assert np.isnan(float(auroc(jnp.asarray(scores), jnp.zeros(300, bool))))


def test_binary_metrics_cloud_step_ratio_is_share_routed_to_cloud():
    m = binary_metrics(jnp.array([0.1, 0.6, 0.5, 0.9]), jnp.array([0, 1, 0, 1]), threshold=0.5)
    np.testing.assert_allclose(float(m["cloud_step_ratio"]), 0.75)
    np.testing.assert_allclose(float(m["accuracy"]), 0.75)
    np.testing.assert_allclose(float(m["positive_rate"]), 0.5)


def test_split_metrics_in_one_program_equal_the_metrics_of_each_subset():
    rng = np.random.default_rng(3)
    scores = np.round(rng.random(500), 2).astype(np.float32)  # rounded: ties across classes
    labels = rng.random(500) < 0.3
    masks = np.stack([rng.random(500) < p for p in (0.1, 0.5, 0.9)] + [np.ones(500, bool)])
    stacked = split_binary_metrics(jnp.asarray(scores), jnp.asarray(labels), jnp.asarray(masks), jnp.float32(0.4))
    for i, mask in enumerate(masks):
        expected = binary_metrics(jnp.asarray(scores[mask]), jnp.asarray(labels[mask]), 0.4)
        for name, value in expected.items():
            np.testing.assert_allclose(float(stacked[name][i]), float(value), rtol=1e-6, err_msg=name)


def test_training_learns_and_is_deterministic():
    data = _synthetic()
    config = TrainConfig(hidden_sizes=(32,), max_epochs=30, batch_size=128, patience=5)
    train = jax.jit(make_train(config, int(data.x_train.shape[0])))
    result = train(jax.random.key(0), data)
    again = train(jax.random.key(0), data)
    best = int(result.best_epoch)
    assert 0 <= best < int(result.epochs_run) <= 30
    assert float(np.nanmax(np.asarray(result.dev_auroc))) > 0.8  # chance is 0.5
    np.testing.assert_allclose(float(result.dev_auroc[best]), float(np.nanmax(np.asarray(result.dev_auroc))))
    chex_equal = jax.tree.map(lambda a, b: np.testing.assert_array_equal(np.asarray(a), np.asarray(b)),
                              result.params, again.params)
    del chex_equal


def test_early_stopping_freezes_after_patience():
    data = _synthetic()
    config = TrainConfig(hidden_sizes=(32,), max_epochs=40, patience=2, learning_rate=3e-2)
    result = jax.jit(make_train(config, int(data.x_train.shape[0])))(jax.random.key(0), data)
    run = int(result.epochs_run)
    assert run < 40, "with patience 2 and a high learning rate training should stop early"
    assert int(result.best_epoch) == run - 3
    assert np.all(np.isnan(np.asarray(result.dev_loss[run:])))


def test_pos_weight_balances_rare_positives():
    data = _synthetic()
    cfg = dict(hidden_sizes=(32,), max_epochs=15, patience=15)
    x_dev = data.x_dev
    from hera_jax.router.train import predict_p_cloud

    def ratio(pos_weight):
        c = TrainConfig(**cfg, pos_weight=pos_weight)
        r = jax.jit(make_train(c, int(data.x_train.shape[0])))(jax.random.key(0), data)
        return float(jnp.mean(predict_p_cloud(c, r.params, x_dev) >= 0.5))

    assert ratio(None) > ratio(1.0)  # auto pos_weight routes more states to the cloud than unweighted BCE


def test_invalid_select_metric():
    with pytest.raises(ValueError, match="select_metric"):
        make_train(TrainConfig(select_metric="accuracy"), 10)


@pytest.mark.parametrize("max_epochs", [1, 2])
def test_runs_shorter_than_the_warmup_still_train(max_epochs):
    data = _synthetic()
    config = TrainConfig(hidden_sizes=(8,), max_epochs=max_epochs, warmup_epochs=2, batch_size=128)
    result = jax.jit(make_train(config, int(data.x_train.shape[0])))(jax.random.key(0), data)
    assert int(result.epochs_run) == max_epochs
    assert np.isfinite(np.asarray(result.train_loss)).all()


def test_prediction_in_chunks_equals_one_pass(monkeypatch):
    import hera_jax.router.train as train_module
    from hera_jax.router.model import RouterMLP

    config = TrainConfig(hidden_sizes=(8,))
    x = jnp.asarray(np.random.default_rng(0).normal(size=(200, 5)).astype(np.float32))
    params = RouterMLP((8,)).init(jax.random.key(0), x[:1])["params"]
    whole = train_module.predict_p_cloud(config, params, x)
    monkeypatch.setattr(train_module, "PREDICT_CHUNK_ROWS", 64)  # 200 rows: 3 full chunks and a padded one
    chunked = train_module.predict_p_cloud(config, params, x)
    assert chunked.shape == (200,)
    np.testing.assert_allclose(np.asarray(chunked), np.asarray(whole), rtol=1e-6)


def test_dev_scores_of_a_dev_set_larger_than_one_chunk_equal_the_scores_of_the_kept_parameters():
    # The dev set is scored in chunks of DEV_CHUNK_ROWS (with a remainder): the best epoch's dev AUROC and loss must be
    # the ones of the returned parameters on the whole dev set, every row counted once.
    from hera_jax.router.model import RouterMLP
    from hera_jax.router.metrics import weighted_bce
    from hera_jax.router.train import DEV_CHUNK_ROWS

    num_dev = DEV_CHUNK_ROWS + 1234
    big = _synthetic(n=num_dev + 640, d=8, seed=4)
    x, y = jnp.concatenate([big.x_train, big.x_dev]), jnp.concatenate([big.y_train, big.y_dev])
    data = TrainData(x[:640], y[:640], jnp.ones(640), x[640:], y[640:])  # a small training set, a large dev set
    config = TrainConfig(hidden_sizes=(16,), max_epochs=3, batch_size=1024, patience=3, pos_weight=1.0)
    result = jax.jit(make_train(config, int(data.x_train.shape[0])))(jax.random.key(2), data)
    logits = RouterMLP((16,)).apply({"params": result.params}, data.x_dev)
    best = int(result.best_epoch)
    np.testing.assert_allclose(float(result.dev_auroc[best]), float(auroc(jax.nn.sigmoid(logits), data.y_dev)),
                               rtol=1e-5)
    np.testing.assert_allclose(float(result.dev_loss[best]),
                               float(weighted_bce(logits, data.y_dev, jnp.ones(num_dev), jnp.float32(1.0))), rtol=1e-5)
