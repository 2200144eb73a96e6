"""Raw-table contract and validation, the signal registry, and the point-in-time builder."""
