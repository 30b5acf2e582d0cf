"""sociolab's engine: config loading, model client, sim backend, run loop, suites, store, CLI."""

__version__ = "0.1.0"
