"""Offline runs of the decision path: the backtest and its report, off-policy estimates from the
decision log, and the whole-policy search."""
