"""The sim backend: deterministic, seeded, offline stand-ins for LLMs.

`sim/<name>` models are served by `orchestrator.sim.provider.SimProvider`, an ordinary provider:
in process (`sim_reply`), through litellm's custom-provider hook (`orchestrator.sim.litellm_adapter`),
or over HTTP (`orchestrator.sim.server`). A run's `SimSettings` and each request's metadata
(`orchestrator.sim.metadata`) are all the sim knows; there is no process-global state. The sim
exists to run the whole pipeline offline and to test it with planted effects; it is never evidence
about real models.

The sim sits in the orchestrator, below judges and scenarios: it imports neither.
"""
