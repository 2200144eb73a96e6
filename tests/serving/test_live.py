"""Online ratings equal the model's own: precomputed scores and reasons vs ``RatingModel``."""

from __future__ import annotations

import numpy as np
from numpy.testing import assert_allclose


def test_precomputed_scores_and_reasons_match_the_model(app, rating, snapshot_rows):
    live = app.extensions["buyer_trust"].runtime.live
    assert live.scored is not None and live.scored.reason_index is not None
    buyer_ids, X = snapshot_rows
    sample = np.arange(0, len(buyer_ids), 7)
    expected = rating.model.score(X[sample])
    got = [live.rate(int(buyer_ids[i])) for i in sample]
    assert_allclose([g.p_bad for g in got], expected.p_bad, rtol=1e-6)
    assert [g.score for g in got] == expected.score.tolist()
    assert [g.star for g in got] == expected.star.tolist()
    k = live.policy.max_reasons
    for i, g in zip(sample, got, strict=True):
        want = rating.model.reasons(X[i], k=k)
        assert [r.code for r in g.reasons] == [r.code for r in want]
        assert_allclose([r.contribution for r in g.reasons], [r.contribution for r in want], rtol=1e-5)
        assert [r.text for r in g.reasons] == [r.text for r in want]


def test_policy_reload_reuses_the_scores(app, client):
    runtime = app.extensions["buyer_trust"].runtime
    before = runtime.live.scored
    assert client.post("/v1/admin/reload", json={"parts": ["policy"]}).status_code == 200
    assert runtime.live.scored is before
