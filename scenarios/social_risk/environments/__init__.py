"""The task worlds of the social-risk kind, one module each (environment.py is the contract)."""
