"""The fifteen risks by category: each module's RISKS is a tuple of catalog.RiskSpec."""
