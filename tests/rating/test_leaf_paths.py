"""Per-leaf Saabas tables (``rating.leaf_paths``) on heads trained by the real code (``conftest.py``),
and the head's reasons from them (``ServiceHead.risk``)."""

import lightgbm as lgb
import numpy as np
import pytest

from rating.context import context_row
from rating.heads import ATTRIBUTIONS, LIGHTGBM, SAABAS, TREESHAP, UPLIFT, ServiceHead
from rating.leaf_paths import leaf_table
from rating.reasons import top_reasons
from rating.single_row import SingleRowPredictor
from training.opportunities import FAST_REFUND, PRESALE


def _ids(head: ServiceHead, X: np.ndarray):
    table = leaf_table(head.base)
    leaf = SingleRowPredictor(head.base, "leaf")
    return table, [table.leaf_ids(leaf(x)) for x in X]


@pytest.mark.parametrize("service", [PRESALE, FAST_REFUND])
def test_leaf_sums_equal_the_raw_score(heads, head_rows, service):
    head = heads[service]
    X = head.inputs(*head_rows(head, 20))
    assert np.isnan(X).any()
    table, ids = _ids(head, X)
    got = np.array([table.raw_score(i) for i in ids])
    np.testing.assert_allclose(got, head.base.predict(X, raw_score=True), rtol=0, atol=1e-9)


@pytest.mark.parametrize("service", [PRESALE, FAST_REFUND])
def test_saabas_is_additive_and_its_bias_is_the_expected_value(heads, head_rows, service):
    head = heads[service]
    X = head.inputs(*head_rows(head, 21))
    table, ids = _ids(head, X)
    shap = head.base.predict(X, pred_contrib=True)
    assert table.bias == pytest.approx(shap[0, -1], abs=1e-9)  # TreeSHAP's expectation: count-weighted
    for row in ids:
        contrib = table.contributions(row)
        assert contrib.shape == (head.base.num_feature(),)
        assert contrib.sum() + table.bias == pytest.approx(table.raw_score(row), abs=1e-9)
    assert not np.allclose(table.contributions(ids[0]), shap[0, :-1])  # interactions: not TreeSHAP


def test_the_table_stops_at_the_best_iteration(heads, head_rows):
    """A booster that kept trees past its best iteration (``keep_training_booster``) is walked, and
    tabled, up to the best one, as ``Booster.predict`` does."""
    head = heads[FAST_REFUND]
    X = head.inputs(*head_rows(head, 24))
    booster = lgb.Booster(model_str=head.base.model_to_string())
    booster.best_iteration = booster.current_iteration() // 2
    leaf = SingleRowPredictor(booster, "leaf")
    table = leaf_table(booster)
    assert leaf.width == table.offsets.size == booster.best_iteration
    got = np.array([table.raw_score(table.leaf_ids(leaf(x))) for x in X])
    np.testing.assert_allclose(got, booster.predict(X, raw_score=True), rtol=0, atol=1e-9)
    assert not np.allclose(got, booster.predict(X, raw_score=True, num_iteration=-1))


def test_on_stumps_saabas_is_treeshap():
    """A one-split tree credits its one feature with ``leaf - mean`` under both attributions."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(2000, 4))
    X[rng.random(X.shape) < 0.2] = np.nan
    y = (rng.random(2000) < 1 / (1 + np.exp(-np.nan_to_num(X[:, 0] - X[:, 2])))).astype(int)
    booster = lgb.train(
        {"objective": "binary", "verbose": -1, "num_leaves": 2, "num_threads": 1}, lgb.Dataset(X, y), 25
    )
    table = leaf_table(booster)
    leaves = booster.predict(X[:200], pred_leaf=True)
    got = np.stack([table.contributions(table.leaf_ids(row)) for row in leaves])
    np.testing.assert_allclose(got, booster.predict(X[:200], pred_contrib=True)[:, :-1], rtol=0, atol=1e-9)


def test_the_table_checks_its_input():
    rng = np.random.default_rng(1)
    X, y = rng.normal(size=(600, 3)), rng.integers(0, 3, 600)
    multi = lgb.train({"objective": "multiclass", "num_class": 3, "verbose": -1}, lgb.Dataset(X, y), 3)
    with pytest.raises(ValueError, match="3 models per iteration"):
        leaf_table(multi)
    binary = lgb.train({"objective": "binary", "verbose": -1}, lgb.Dataset(X, y > 0), 5)
    with pytest.raises(ValueError, match="leaves: has 4 indices, the table has 5 trees"):
        leaf_table(binary).leaf_ids(np.zeros(4))


@pytest.mark.parametrize("service", [PRESALE, FAST_REFUND])
def test_saabas_explain_prices_as_treeshap_and_ranks_by_saabas(heads, head_rows, service):
    head = heads[service]
    signals, ctx = head_rows(head, 22)
    batch = head.logit(signals, ctx)
    table, ids = _ids(head, head.inputs(signals, ctx))
    for i in range(0, len(signals), 5):
        exact_logit, exact_c, names = head.explain(signals[i], ctx[i], LIGHTGBM)
        logit, c, cheap_names = head.explain(signals[i], ctx[i], SAABAS)
        assert cheap_names == names
        assert logit == pytest.approx(batch[i], abs=1e-9) and logit == pytest.approx(exact_logit, abs=1e-9)
        expected = table.contributions(ids[i])
        if head.treatment is not None:
            expected[names.index(head.treatment)] = 0.0
        np.testing.assert_allclose(c[: len(expected)], expected, rtol=0, atol=1e-12)
        if head.proxy is not None:
            assert names[-1] == UPLIFT and c[-1] == exact_c[-1]  # the uplift is its own reason either way


def _opportunity(service: str, i: int) -> dict:
    """The context fields of opportunity ``i`` (its amount grows with ``i``)."""
    amount = 40.0 + 25.0 * i
    if service == PRESALE:
        return {"amount": amount, "deposit": amount / 10, "category": "appliances", "due_in_days": 12.0,
                "shipped_early": 1.0}  # fmt: skip
    return {
        "amount": amount, "order_amount": 2 * amount, "kind": "refund_only", "reason": "damaged", "photos": 1,
        "category": "apparel", "order_age_days": 4.0,
    }  # fmt: skip


@pytest.mark.parametrize("service", [PRESALE, FAST_REFUND])
def test_risk_cites_treeshap_as_lightgbm_does_and_saabas_differs(heads, head_rows, service):
    head = heads[service]
    signals, _ = head_rows(head, 23)
    never = frozenset({"s0"})
    differ = 0
    for i in range(0, len(signals), 4):
        opportunity = _opportunity(service, i)
        risks = {a: head.risk(signals[i], opportunity, 4, never=never, attribution=a) for a in ATTRIBUTIONS}
        for attribution, risk in risks.items():
            assert risk.p_loss == pytest.approx(risks[LIGHTGBM].p_loss, rel=0, abs=1e-12)
            _, contrib, names = head.explain(signals[i], context_row(opportunity), attribution)
            contrib = np.where([n in never for n in names], -np.inf, contrib)
            assert [r.code for r in risk.reasons] == [r.code for r in top_reasons(contrib, names, {}, 4)]
            assert "s0" not in [r.code for r in risk.reasons]
        assert risks[TREESHAP] == risks[LIGHTGBM] or _tied(risks[TREESHAP], risks[LIGHTGBM])
        differ += [r.code for r in risks[SAABAS].reasons] != [r.code for r in risks[LIGHTGBM].reasons]
    assert differ > 0  # Saabas ranks differently somewhere


def _tied(a, b) -> bool:
    """Same reasons up to the order of contributions equal to 1e-12."""
    return sorted(r.code for r in a.reasons) == sorted(r.code for r in b.reasons) and np.allclose(
        sorted(r.contribution for r in a.reasons), sorted(r.contribution for r in b.reasons), atol=1e-12
    )


def test_unknown_attribution_is_named(heads):
    head = heads[FAST_REFUND]
    with pytest.raises(ValueError, match="attribution: must be one of treeshap, lightgbm, saabas"):
        head.explain(np.zeros(len(head.signal_names)), np.zeros(len(head.context_names)), "shapley")
