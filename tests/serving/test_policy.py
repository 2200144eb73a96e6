"""Policy validation: the shipped file is valid and is what training proposes; every kind of
mistake is an error naming its key (checked on the tests' own policy, ``tests/serving/policy.yaml``)."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from serving.config import default_policy_path
from serving.policy import PolicyError, load_policy, parse_policy
from training.opportunities import SERVICES
from training.policy.proposal import Proposal, candidate_policy, policy_bands

from .conftest import TEST_POLICY

SHIPPED = Path(default_policy_path())


def base() -> dict:
    return yaml.safe_load(TEST_POLICY.read_text())


def test_the_shipped_policy_is_valid_and_is_a_policy_training_proposes():
    """The one test that reads the shipped ``serving/policy.yaml``: it parses with the serving parser
    against the signal registry, and it is what ``training.policy.proposal.candidate_policy`` writes
    from itself: an allowance for every service over the bands training proposes for, at the
    precision training writes, the reviewed rest unchanged (so a hand edit of an allowance, or a
    service left without one, shows here)."""
    from features.registry import signal_names

    policy = load_policy(SHIPPED, signal_names())
    assert policy.version
    assert {r.code for r in policy.hard_declines} >= {"unpaid_balance_365d", "confirmed_fraud"}
    assert "suspected_malicious_reviewer" in {f.code for f in policy.flags}
    assert policy.presale.amount_cap[policy.presale.min_stars - 2] == 0  # below min_stars: nothing
    raw = yaml.safe_load(SHIPPED.read_text())
    proposals = {}
    for service in SERVICES:
        allowances = raw["services"][service].get("expected_loss_allowance")
        assert allowances is not None, f"{service}: the shipped policy has no expected-loss allowance"
        assert tuple(allowances) == policy_bands(SHIPPED, service), service
        proposals[service] = Proposal(service, dict(allowances), 0.0, 0.0, 1.0)
    assert candidate_policy(SHIPPED, proposals, raw["version"]) == raw
    for rules in (policy.presale, policy.fast_refund):
        assert all(0 < share <= 1 for share in rules.expected_loss_allowance[rules.min_stars - 1 :])


def test_the_test_policy_is_valid_against_the_signal_registry():
    from features.registry import signal_names

    policy = load_policy(TEST_POLICY, signal_names())
    assert policy.presale.amount_cap[policy.presale.min_stars - 2] == 0  # below min_stars: nothing


def mutate(path: list, value) -> dict:
    doc = copy.deepcopy(base())
    node = doc
    for key in path[:-1]:
        node = node[key]
    if value is KeyError:
        del node[path[-1]]
    else:
        node[path[-1]] = value
    return doc


PRESALE = ["services", "presale_ship_before_balance"]
REFUND = ["services", "fast_refund"]


@pytest.mark.parametrize(
    ("path", "value", "named"),
    [
        (["surprise"], 1, "policy.surprise: unknown key"),
        (["version"], KeyError, "policy.version: required key missing"),
        (["currency"], "yuan", "currency:"),
        (["quota_window_days"], 0, "quota_window_days:"),
        (["services", "extra_service"], {}, "services.extra_service: unknown key"),
        ([*PRESALE, "min_stars"], 6, "services.presale_ship_before_balance.min_stars:"),
        ([*PRESALE, "min_stars"], "4", "services.presale_ship_before_balance.min_stars:"),
        ([*PRESALE, "min_deposit_ratio"], 1.5, "services.presale_ship_before_balance.min_deposit_ratio:"),
        ([*PRESALE, "min_deposit_ratio"], True, "services.presale_ship_before_balance.min_deposit_ratio:"),
        ([*PRESALE, "amount_cap", 6], 1, "services.presale_ship_before_balance.amount_cap.6: star must be"),
        ([*PRESALE, "amount_cap", 5], -1, "services.presale_ship_before_balance.amount_cap.5:"),
        (
            [*PRESALE, "amount_cap", 5],
            10,
            "services.presale_ship_before_balance.amount_cap: values must not decrease",
        ),
        (
            [*PRESALE, "amount_cap", 4],
            KeyError,
            "services.presale_ship_before_balance.amount_cap: missing stars [4]",
        ),
        (
            [*PRESALE, "exposure_limit", 1],
            5,
            "services.presale_ship_before_balance.exposure_limit.1: star is below",
        ),
        ([*PRESALE, "exposure_cap"], {}, "services.presale_ship_before_balance.exposure_cap: unknown key"),
        ([*REFUND, "quota_count", 5], 2.5, "services.fast_refund.quota_count.5: expected an integer"),
        ([*REFUND, "kinds"], ["swap"], "services.fast_refund.kinds[0]: unknown refund kind"),
        ([*REFUND, "evidence", "photos"], 1, "services.fast_refund.evidence.photos: unknown key"),
        (["hard_declines", 0, "op"], "=>", "hard_declines[0].op: unknown operator"),
        (["hard_declines", 0, "value"], "zero", "hard_declines[0].value:"),
        (["hard_declines", 1, "code"], "unpaid_balance_365d", "hard_declines[1].code: duplicate"),
        (["hard_declines", 0, "services"], ["presale"], "hard_declines[0].services[0]: unknown service"),
        (["flags", 0, "signal"], KeyError, "flags[0].signal: required key missing"),
    ],
)
def test_invalid_policy_names_the_key(path, value, named):
    with pytest.raises(PolicyError) as err:
        parse_policy(mutate(path, value))
    assert str(err.value).startswith(named), str(err.value)


def test_rule_signal_must_be_a_model_signal():
    with pytest.raises(
        PolicyError, match=r"hard_declines\[0\].signal: 'balances_unpaid_7d_count_365d' is not one"
    ):
        parse_policy(base(), ["something_else"])


def test_unreadable_and_non_yaml_files(tmp_path):
    with pytest.raises(PolicyError, match="policy file"):
        load_policy(tmp_path / "absent.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("version: [unclosed\n")
    with pytest.raises(PolicyError, match="not valid YAML"):
        load_policy(bad)
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    with pytest.raises(PolicyError, match="policy: expected a mapping"):
        load_policy(empty)
