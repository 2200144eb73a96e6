"""The online snapshot: ``python -m serving.publish`` writes it (in process or on a cluster), the
service reads it (a parquet file or Redis), with the buyers' reasons computed in the batch."""
