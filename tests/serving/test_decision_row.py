"""The decision row is declared twice, as the ``decisions`` table and as the row a decision records:
they must name the same columns in the same order."""

from dataclasses import fields

from serving.ledger.tables import DECISIONS, DecisionRow


def test_the_decision_row_names_every_decisions_column():
    assert [f.name for f in fields(DecisionRow)] == [c.name for c in DECISIONS.c]
