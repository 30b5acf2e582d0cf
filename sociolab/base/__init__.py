"""The base layer: what every other package may use and which imports none of them: the error a
user can fix (`errors`) and YAML loading that keeps line numbers (`yamlfile`)."""
