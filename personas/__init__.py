"""Who the agents are: persona and roster models, naming conventions, system-prompt assembly,
and a YAML library of ready rosters (personas/library/)."""
