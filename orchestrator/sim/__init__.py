"""The sim backend: deterministic, seeded, offline stand-ins for LLMs.

`sim/<name>` models answer from `sim_reply` (in-process), through litellm's custom-provider hook
(`orchestrator.sim.provider`), or over HTTP (`orchestrator.sim.server`). The sim exists to run the
whole pipeline offline and to test it with planted, known effects; it is never evidence about real
models.
"""
