"""Scenario kinds (discussion, and the safety games of later issues) and a library of ready YAML files."""
