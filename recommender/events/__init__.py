"""The event path: the bus where decisions wait for rewards (bus.py, memory_bus.py, redis_bus.py, factory.py),
their encoding (codec.py), the joiner and the Parquet event log (log.py)."""
