"""Service heads, context features and caps in the rating artifact."""

import pickle

import lightgbm as lgb
import numpy as np
import pytest

from bench.tiny import make_tiny_rating
from features.hard_facts import CAPPED_MAX_STAR, HARD_FACTS
from rating.context import PRESALE_CONTEXT, REFUND_CONTEXT, TREATMENT, presale_context, refund_context
from rating.heads import ServiceHead
from rating.scale import score_to_star

SIGNALS = ["s0", "s1", "s2", *HARD_FACTS]


def _booster(n_features: int, seed: int = 0) -> lgb.Booster:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(3000, n_features))
    y = (rng.random(3000) < 1 / (1 + np.exp(-(X[:, 0] + X[:, -1] - 2)))).astype(int)
    return lgb.train({"objective": "binary", "verbose": -1, "num_leaves": 7}, lgb.Dataset(X, y), 30)


def _presale_head(proxy: bool = True) -> ServiceHead:
    return ServiceHead(
        service="presale_ship_before_balance",
        signal_names=list(SIGNALS),
        context_names=list(PRESALE_CONTEXT),
        base=_booster(len(SIGNALS) + len(PRESALE_CONTEXT)),
        treatment=TREATMENT,
        proxy=_booster(len(SIGNALS), seed=1) if proxy else None,
        uplift=(0.5, 2.0),
    )


def _presale_rows(rng: np.random.Generator, n: int, shipped: bool) -> tuple[np.ndarray, np.ndarray]:
    """``n`` rows of random signals and their presale context (appliances, random amounts)."""
    signals = rng.normal(size=(n, len(SIGNALS)))
    context = presale_context(
        rng.uniform(10, 2000, n),
        np.full(n, 5.0),
        ["appliances"] * n,
        np.full(n, 10.0),
        np.full(n, float(shipped)),
    )
    return signals, context


def test_context_features_by_hand():
    ctx = presale_context([1000.0], [100.0], ["appliances"], [20.0], [False])
    assert ctx.shape == (1, len(PRESALE_CONTEXT))
    assert ctx[0, 0] == pytest.approx(np.log1p(1000)) and ctx[0, 1] == pytest.approx(np.log1p(900))
    assert ctx[0, 2] == pytest.approx(0.1) and ctx[0, 3] == 20.0 and ctx[0, 5] == 0.0
    unknown = presale_context([10.0], [1.0], ["no such category"], [1.0], [True])
    assert unknown[0, 4] == -1.0
    r = refund_context([50.0], [200.0], ["return_and_refund"], ["damaged"], [2], ["apparel"], [5.0])
    assert r.shape == (1, len(REFUND_CONTEXT))
    assert r[0, 1] == pytest.approx(0.25) and r[0, 2] == 1.0 and r[0, 4] == 2.0


def test_head_prices_the_treatment_and_the_uplift():
    head = _presale_head()
    rng = np.random.default_rng(3)
    signals, held = _presale_rows(rng, 50, shipped=False)
    shipped = held.copy()
    shipped[:, PRESALE_CONTEXT.index(TREATMENT)] = 1.0
    # the head always prices the approval: the treatment column is set whatever the caller sent
    np.testing.assert_allclose(head.logit(signals, held), head.logit(signals, shipped))
    base = head.base.predict(np.hstack([signals, shipped]), raw_score=True)
    z = head.proxy.predict(signals, raw_score=True)
    np.testing.assert_allclose(head.logit(signals, held), base + 0.5 + 2.0 * z)
    p = head.probability(signals, held)
    assert np.all((p > 0) & (p < 1))
    with pytest.raises(ValueError, match="context has 5 columns"):
        head.logit(signals, held[:, :5])
    with pytest.raises(ValueError, match="signals have 3 columns"):
        head.logit(signals[:, :3], held)


def test_a_knot_holds_the_uplift_flat_below_it_on_every_path():
    head = _presale_head()
    rng = np.random.default_rng(5)
    signals, ctx = _presale_rows(rng, 200, shipped=True)
    z = head.proxy.predict(signals, raw_score=True)
    head.knot = float(np.median(z))
    base = head.base.predict(head.inputs(signals, ctx), raw_score=True)
    below = z < head.knot
    assert below.any() and (~below).any()
    expected = base + 0.5 + 2.0 * np.maximum(z, head.knot)
    np.testing.assert_allclose(head.logit(signals, ctx), expected)
    # below the knot every buyer gets the same uplift; above it the slope still ranks them
    np.testing.assert_allclose(head.uplift_logit(signals)[below], 0.5 + 2.0 * head.knot)
    for i in (int(np.flatnonzero(below)[0]), int(np.flatnonzero(~below)[0])):
        assert head.row_logit(signals[i], ctx[i]) == pytest.approx(expected[i], abs=1e-9)
        assert head.explain(signals[i], ctx[i])[0] == pytest.approx(expected[i], abs=1e-9)
    again = pickle.loads(pickle.dumps(head))
    assert again.knot == head.knot
    np.testing.assert_allclose(again.logit(signals, ctx), expected)


def test_a_head_pickled_before_the_knot_loads_linear():
    head = _presale_head()
    state = head.__getstate__()
    del state["knot"]
    old = ServiceHead.__new__(ServiceHead)
    old.__setstate__(state)
    signals = np.random.default_rng(6).normal(size=(10, len(SIGNALS)))
    assert old.knot is None
    np.testing.assert_allclose(
        old.uplift_logit(signals), 0.5 + 2.0 * head.proxy.predict(signals, raw_score=True)
    )


def test_head_survives_pickling_with_its_boosters():
    head = _presale_head()
    again = pickle.loads(pickle.dumps(head))
    rng = np.random.default_rng(4)
    signals = rng.normal(size=(20, len(SIGNALS)))
    ctx = rng.normal(size=(20, len(PRESALE_CONTEXT)))
    np.testing.assert_allclose(again.probability(signals, ctx), head.probability(signals, ctx))


@pytest.fixture(scope="module")
def rating():
    return make_tiny_rating(SIGNALS, seed=0, n=6000)


def test_caps_hold_the_star_and_name_the_fact(rating):
    assert rating.caps == tuple(HARD_FACTS)
    rng = np.random.default_rng(5)
    X = rng.gamma(1.0, 1.0, size=(400, len(SIGNALS))).astype(np.float32)
    X[:, 3:] = 0.0
    free = rating.score(X)
    assert free.star.max() > CAPPED_MAX_STAR  # without a hard fact some buyers rate above the cap
    for j, name in enumerate(HARD_FACTS, start=3):
        flagged = X.copy()
        flagged[:, j] = 1.0
        capped = rating.score(flagged)
        assert capped.star.max() <= CAPPED_MAX_STAR
        assert np.all(score_to_star(capped.score, rating.cuts) <= CAPPED_MAX_STAR)
        reasons = rating.reasons(flagged[:1])
        assert reasons[0].code == name and reasons[0].text == HARD_FACTS[name]


def test_caps_and_heads_must_match_the_signals(rating):
    from rating.artifact import RatingModel

    with pytest.raises(ValueError, match="caps"):
        RatingModel(["a", "b"], {}, rating.calibration, rating.scale, rating.cuts, caps=("bills_30dpd_open",))
    other = _presale_head()
    other.signal_names = ["x", *SIGNALS[1:]]
    with pytest.raises(ValueError, match="heads\\[presale_ship_before_balance\\]"):
        rating.set_heads({"presale_ship_before_balance": other})
    with pytest.raises(KeyError, match="no head for service"):
        rating.head_probability(
            "fast_refund", np.zeros((1, len(SIGNALS))), np.zeros((1, len(REFUND_CONTEXT)))
        )


def test_explain_adds_up_to_the_heads_log_odds_in_one_pass():
    head = _presale_head()
    rng = np.random.default_rng(6)
    signals = rng.normal(size=(1, len(SIGNALS)))
    ctx = rng.normal(size=(1, len(PRESALE_CONTEXT)))
    logit, contrib, names = head.explain(signals, ctx)
    assert logit == pytest.approx(head.logit(signals, ctx)[0], abs=1e-9)
    assert names[-1] == "moral_hazard" and len(contrib) == len(names)
    assert contrib[names.index(TREATMENT)] == 0.0  # the treatment is never a reason


def test_a_refund_head_prices_what_paying_fast_adds_over_normal_handling():
    rng = np.random.default_rng(8)
    n = 3000
    ctx = refund_context(
        rng.uniform(10, 500, n), np.full(n, 600.0), rng.choice(["return_and_refund", "refund_only"], n),
        rng.choice(["damaged", "quality"], n), rng.integers(0, 3, n), ["apparel"] * n, np.full(n, 5.0),
    )  # fmt: skip
    is_return = ctx[:, REFUND_CONTEXT.index("ctx_is_return")] > 0
    paid = rng.random(n) < np.where(is_return, 0.37, 0.85)
    normal = lgb.train(
        {"objective": "binary", "verbose": -1, "num_leaves": 3}, lgb.Dataset(ctx, paid.astype(int)), 20
    )
    base = _booster(len(SIGNALS) + len(REFUND_CONTEXT), seed=2)
    head = ServiceHead("fast_refund", list(SIGNALS), list(REFUND_CONTEXT), base, normal=normal)
    signals = rng.normal(size=(n, len(SIGNALS)))
    if_fast = 1 / (1 + np.exp(-base.predict(np.hstack([signals, ctx]), raw_score=True)))
    paid_share = 1 / (1 + np.exp(-normal.predict(ctx, raw_score=True)))
    p = head.probability(signals, ctx)
    np.testing.assert_allclose(p, if_fast * (1 - paid_share), rtol=1e-9)
    assert (
        p[is_return].mean() / if_fast[is_return].mean()
        > 2 * p[~is_return].mean() / if_fast[~is_return].mean()
    )
    for i in range(3):  # one row at a time (the service) as many rows (training)
        assert head.row_logit(signals[i], ctx[i]) == pytest.approx(head.logit(signals, ctx)[i], abs=1e-9)
        logit, contrib, names = head.explain(signals[i], ctx[i])
        assert logit == pytest.approx(head.logit(signals, ctx)[i], abs=1e-9) and len(contrib) == len(names)
    again = pickle.loads(pickle.dumps(head))
    np.testing.assert_allclose(again.probability(signals, ctx), p)
    state = head.__getstate__()
    del state["normal"]  # a head pickled before the normal arm existed prices the whole loss if paid fast
    old = ServiceHead.__new__(ServiceHead)
    old.__setstate__(state)
    np.testing.assert_allclose(old.probability(signals, ctx), if_fast, rtol=1e-9)
