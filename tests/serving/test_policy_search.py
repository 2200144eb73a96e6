"""The whole-policy search sets exploration aside and declares it again (``serving.policy_search``)."""

from __future__ import annotations

import yaml

from serving.policy import parse_policy
from serving.policy_search import with_settings, without_exploration
from tests.serving.conftest import TEST_POLICY


def test_exploration_is_set_aside_while_searching_and_kept_in_the_proposal():
    raw = yaml.safe_load(TEST_POLICY.read_text())
    raw["services"]["presale_ship_before_balance"]["exploration"] = {
        "share": 0.03, "monthly_loss_budget": 2000, "seed": 1,
    }  # fmt: skip
    own, taken = without_exploration(raw)
    assert parse_policy(own).presale.exploration is None  # what each candidate is judged without
    assert taken == {"presale_ship_before_balance": raw["services"]["presale_ship_before_balance"]["exploration"]}
    assert "exploration" in raw["services"]["presale_ship_before_balance"], "the reviewed document is untouched"
    doc = with_settings(own, "presale_ship_before_balance", {3: 0.02, 4: 0.03, 5: 0.04}, {3: 900, 4: 4000, 5: 9000})
    for service, declared in taken.items():
        doc["services"][service]["exploration"] = declared
    policy = parse_policy(doc)
    assert policy.presale.exploration.share == 0.03
    assert policy.presale.expected_loss_allowance[2:] == (0.02, 0.03, 0.04)
