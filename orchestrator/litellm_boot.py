"""Import litellm lazily, offline-safe, with the sim registered as a custom provider.

litellm takes seconds to import and fetches a cost map from the network unless told not to, so
nothing imports it at module level: code that really calls a provider asks `get_litellm()`.
"""

from __future__ import annotations

import os
from functools import lru_cache


@lru_cache(maxsize=1)
def get_litellm():
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    os.environ.setdefault("LITELLM_OFFLINE_MODE", "true")  # else Anthropic calls fetch beta headers from the web
    import litellm

    from .sim.litellm_adapter import SimLitellmHandler

    litellm.suppress_debug_info = True
    litellm.telemetry = False
    if not any(item.get("provider") == "sim" for item in litellm.custom_provider_map):
        litellm.custom_provider_map = [*litellm.custom_provider_map,
                                       {"provider": "sim", "custom_handler": SimLitellmHandler()}]
    return litellm
