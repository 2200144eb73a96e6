"""Expected-loss allowances proposed by training."""

import numpy as np
import pytest
import yaml

from tests.serving.conftest import TEST_POLICY as BASE_POLICY  # the reviewed file: any valid policy
from training.policy.proposal import approved, candidate_policy, policy_bands, propose


def test_allowances_approve_the_most_money_at_the_rules_loss_rate():
    rng = np.random.default_rng(0)
    n = 5000
    p = rng.beta(1, 40, n)
    value = rng.lognormal(6, 1, n)
    at_risk = 0.9 * value
    star = rng.integers(1, 6, n)
    rule = (rng.random(n) < 0.05) & (star >= 4)
    prop = propose("presale_ship_before_balance", p, at_risk, star, rule, bands=(3, 4, 5))
    assert set(prop.allowances) == {3, 4, 5}
    ok = approved(p, star, prop.allowances)
    assert not ok[star < 3].any()  # below min_stars nothing qualifies
    loss = p * at_risk
    assert loss[ok].sum() / at_risk[ok].sum() <= prop.rule_loss_rate * (1 + 1e-9)
    assert prop.volume_multiple == pytest.approx(at_risk[ok].sum() / at_risk[rule].sum())
    assert prop.volume_multiple > 2  # a random rule is easy to beat at its own loss rate
    # a little more allowance anywhere breaks the loss rate or adds nothing
    for band in (3, 4, 5):
        more = {**prop.allowances, band: prop.allowances[band] * 1.5}
        ok2 = approved(p, star, more)
        assert (
            loss[ok2].sum() / at_risk[ok2].sum() > prop.rule_loss_rate
            or at_risk[ok2].sum() <= at_risk[ok].sum()
        )


def test_a_target_share_holds_the_approvals_to_that_share_of_the_rules_loss_rate():
    """Fast refunds aim at half the rule's loss rate (the search's target): the proposal approves less
    money than at the whole rate, and its loss rate is at most half the rule's."""
    rng = np.random.default_rng(1)
    n = 5000
    p = rng.beta(1, 20, n)
    at_risk = rng.lognormal(5, 1, n)
    star = rng.integers(1, 6, n)
    rule = rng.random(n) < 0.3  # no better than random
    whole = propose("fast_refund", p, at_risk, star, rule, bands=(1, 2, 3, 4, 5))
    half = propose("fast_refund", p, at_risk, star, rule, bands=(1, 2, 3, 4, 5), target_share=0.5)
    assert half.loss_rate <= 0.5 * half.rule_loss_rate * (1 + 1e-9) < whole.loss_rate
    assert half.volume_multiple < whole.volume_multiple
    assert max(half.allowances.values()) < max(whole.allowances.values())


def test_a_rule_that_approves_nothing_cannot_be_matched():
    with pytest.raises(ValueError, match="approves nothing"):
        propose(
            "fast_refund",
            np.ones(3) * 0.1,
            np.ones(3),
            np.full(3, 5),
            np.zeros(3, bool),
            bands=(3, 4, 5),
        )


def test_candidate_policy_is_the_reviewed_file_plus_allowances():
    prop = propose(
        "fast_refund",
        np.array([0.01, 0.2]),
        np.ones(2),
        np.array([5, 5]),
        np.array([True, False]),
        bands=policy_bands(BASE_POLICY, "fast_refund"),
    )
    policy = candidate_policy(BASE_POLICY, {"fast_refund": prop}, "candidate-x")
    base = yaml.safe_load(BASE_POLICY.read_text())
    assert policy["version"] == "candidate-x"
    assert policy["services"]["fast_refund"]["expected_loss_allowance"] == {3: 0.01, 4: 0.01, 5: 0.01}
    for doc in (policy, base):  # everything else is the reviewed file as it is
        for service in doc["services"].values():
            service.pop("expected_loss_allowance", None)
    assert {k: v for k, v in policy.items() if k != "version"} == {
        k: v for k, v in base.items() if k != "version"
    }


def test_the_candidate_training_writes_is_read_by_the_service_parser():
    """What ``train.py`` logs (``candidate_policy`` from the reviewed file, dumped as YAML) is a
    policy the service loads, with the proposed allowances (to the 6 significant digits written),
    even where the rule's loss rate is high enough that the proposal approves almost every order."""
    from features.registry import signal_names
    from serving.policy import parse_policy
    from training.run import BASE_POLICY as REVIEWED

    rng = np.random.default_rng(3)
    n = 400
    proposals = {}
    for service in ("presale_ship_before_balance", "fast_refund"):
        order_value = rng.uniform(100, 1000, n)
        at_risk = order_value * (0.9 if service == "presale_ship_before_balance" else 1.0)
        p = rng.uniform(0.001, 0.99, n)
        proposals[service] = propose(
            service, p, at_risk, rng.integers(1, 6, n), p > 0.5,
            bands=policy_bands(REVIEWED, service),
        )  # fmt: skip
    text = yaml.safe_dump(candidate_policy(REVIEWED, proposals, "candidate-0123abcd"), sort_keys=False)
    policy = parse_policy(yaml.safe_load(text), signal_names())
    assert policy.version == "candidate-0123abcd"
    for rules, service in (
        (policy.presale, "presale_ship_before_balance"),
        (policy.fast_refund, "fast_refund"),
    ):
        proposed = proposals[service].allowances
        assert {s: rules.expected_loss_allowance[s - 1] for s in proposed} == pytest.approx(
            proposed, rel=1e-5
        )
