"""The engine that talks to models and keeps the record: the provider interface and its providers
(litellm, the sim), the model client (throttling, retries, cache, budget), the DuckDB store and
the event sink, clocks, progress display and logging. It imports no other sociolab package but
the base layer: scenarios, judges and the composition root (`sociolab`) build on it."""
