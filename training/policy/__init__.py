"""The candidate decision policy of a training run: allowances proposed on validation, the whole policy
searched and judged by backtest."""
