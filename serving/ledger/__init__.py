"""The ledger and decision log: the store, its tables and engine, idempotency and in-flight claims,
the pure position rules, the in-memory twin the backtest uses, and retention."""
