"""Hard facts cap the star in the published rating and in decisions, named first among the reasons."""

from tests.serving.conftest import FRAUD_BUYER, UNPAID_BUYER


def test_capped_buyers_show_at_most_two_stars_with_the_fact_first(client):
    for buyer, fact in (
        (UNPAID_BUYER, "balances_unpaid_7d_count_365d"),
        (FRAUD_BUYER, "violations_confirmed_fraud_count_all"),
    ):
        response = client.get(f"/v1/buyers/{buyer}/rating")
        assert response.status_code == 200
        assert b"Infinity" not in response.data and b"NaN" not in response.data
        body = response.json
        assert body["star"] <= 2
        assert body["reasons"][0]["code"] == fact
        assert "contribution" not in body["reasons"][0]
