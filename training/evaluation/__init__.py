"""How a trained rating is judged: metrics, the per-opportunity yardsticks against the legacy rules, the
scorecard and the simulator's truth as baselines, the run's report and figures, and the promotion gate."""
