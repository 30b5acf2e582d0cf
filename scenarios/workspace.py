"""The old import path of the sandbox: everything now lives in `sociolab.scenarios.sandbox`."""

from sociolab.scenarios.sandbox import *  # noqa: F401,F403
from sociolab.scenarios.sandbox import __all__  # noqa: F401
from sociolab.scenarios.sandbox.workspace import MAX_DEPTH, MAX_PATH  # noqa: F401
