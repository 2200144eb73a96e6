"""Flask decision service: API, policy, online signals, ledger and decision log."""
