"""The single-row fast path gives what ``Booster.predict`` gives, on heads trained by the real code
(``conftest.py``)."""

import json
import pickle

import numpy as np
import pytest

from rating.heads import LIGHTGBM, SAABAS, TREESHAP, UPLIFT
from rating.single_row import SingleRowPredictor
from tests.rating.conftest import STACKED
from training.opportunities import FAST_REFUND, PRESALE


@pytest.mark.parametrize("service", [PRESALE, FAST_REFUND])
def test_heads_use_categorical_context_and_missing_values(heads, service):
    base = heads[service].base
    names = base.feature_name()
    used = {names[i] for i, gain in enumerate(base.feature_importance("split")) if gain > 0}
    assert "ctx_category" in used
    assert '"decision_type": "=="' in json.dumps(base.dump_model())  # categorical splits


@pytest.mark.parametrize("service", [PRESALE, FAST_REFUND])
def test_raw_and_contributions_equal_booster_predict(heads, head_rows, service):
    head = heads[service]
    signals, ctx = head_rows(head, 10)
    X = head.inputs(signals, ctx)
    assert np.isnan(X).any()
    raw = SingleRowPredictor(head.base, "raw")
    leaf = SingleRowPredictor(head.base, "leaf")
    contrib = SingleRowPredictor(head.base, "contrib")
    expected_raw = head.base.predict(X, raw_score=True)
    expected_leaf = head.base.predict(X, pred_leaf=True)
    expected_contrib = head.base.predict(X, pred_contrib=True)
    got_raw = np.array([raw(x)[0] for x in X])
    got_leaf = np.stack([leaf(x) for x in X])
    got_contrib = np.stack([contrib(x) for x in X])
    np.testing.assert_allclose(got_raw, expected_raw, rtol=0, atol=1e-9)
    np.testing.assert_array_equal(got_leaf, expected_leaf)  # one index per tree up to the best iteration
    np.testing.assert_allclose(got_contrib, expected_contrib, rtol=0, atol=1e-9)


@pytest.mark.parametrize("service", [PRESALE, FAST_REFUND])
def test_head_one_row_equals_the_batch_path(heads, head_rows, service):
    """``explain`` and ``row_logit`` (fast path) against ``logit`` and ``pred_contrib`` (Booster.predict),
    also after a pickle round trip (the C predictors are not pickled and are rebuilt)."""
    head = heads[service]
    signals, ctx = head_rows(head, 11)
    batch = head.logit(signals, ctx)
    contrib = head.base.predict(head.inputs(signals, ctx), pred_contrib=True)
    uplift = head.uplift_logit(signals)
    for copy in (head, pickle.loads(pickle.dumps(head))):
        for i in range(0, len(signals), 3):
            logit, c, names = copy.explain(signals[i], ctx[i])
            assert logit == pytest.approx(batch[i], abs=1e-9)
            assert copy.row_logit(signals[i], ctx[i]) == pytest.approx(batch[i], abs=1e-9)
            expected = contrib[i, :-1].copy()
            if head.treatment is not None:
                expected[head.context_names.index(head.treatment) + len(head.signal_names)] = 0.0
            if uplift is not None:
                expected = np.append(expected, uplift[i])
                assert names[-1] == UPLIFT
            np.testing.assert_allclose(c, expected, rtol=0, atol=1e-9)
    assert "_one_row" in head.__dict__ and "_one_row" not in head.__getstate__()


def test_predictor_checks_its_input(heads):
    head = heads[FAST_REFUND]
    with pytest.raises(ValueError, match="kind"):
        SingleRowPredictor(head.base, "leaves")
    with pytest.raises(ValueError, match="row: has 3 values"):
        SingleRowPredictor(head.base, "raw")(np.zeros(3))


@pytest.mark.parametrize("attribution", [TREESHAP, LIGHTGBM, SAABAS])
def test_a_stacked_head_prices_and_explains_its_rating_margin_as_signals(heads, head_rows, attribution):
    """A presale base boosted from a rating's margin: every path prices ``base + c + w x margin + shift``,
    and each signal's contribution is the base's plus ``w`` times the rating's (TreeSHAP is additive
    over models), so the reasons stay signals and add up to the log-odds; nothing is cited as "the rating"."""
    head = heads[STACKED]
    c, w = head.prior_line
    assert head.prior is not None and w != 1.0  # the fixture fits ``w``
    signals, ctx = head_rows(head, 12)
    X = head.inputs(signals, ctx)
    n = len(head.signal_names)
    margin = head.prior.predict(signals, raw_score=True)
    expected = head.base.predict(X, raw_score=True) + c + w * margin + head.uplift[0]
    np.testing.assert_allclose(head.logit(signals, ctx), expected, rtol=0, atol=1e-9)
    base_contrib = head.base.predict(X, pred_contrib=True)
    prior_contrib = head.prior.predict(signals, pred_contrib=True)
    treatment = n + head.context_names.index(head.treatment)
    for copy in (head, pickle.loads(pickle.dumps(head))):
        for i in range(0, len(signals), 7):
            logit, contrib, names = copy.explain(signals[i], ctx[i], attribution)
            assert logit == pytest.approx(expected[i], abs=1e-9)
            assert copy.row_logit(signals[i], ctx[i]) == pytest.approx(expected[i], abs=1e-9)
            assert names == (*head.signal_names, *head.context_names)
            if attribution == SAABAS:  # another attribution; still additive: it sums to the log-odds
                bias = expected[i] - contrib.sum()
                assert contrib[treatment] == 0.0 and np.isfinite(bias)
                continue
            want = base_contrib[i, :-1].copy()
            want[:n] += w * prior_contrib[i, :-1]
            want[treatment] = 0.0
            np.testing.assert_allclose(contrib, want, rtol=0, atol=1e-9)
