"""Emergent social risks of agent collectives, after RiskLab ("Emergent Social Intelligence Risks in
Generative Multi-Agent Systems", HowieHwong/RiskLab, MIT): the `social_risk` kind (kind.py), its
environments, protocols, the fifteen risks with their detectors (catalog.py, risks/*), and
docs/social_risks.md for the formulas and docs/fidelity/social_risks.md for what follows the toolkit."""
