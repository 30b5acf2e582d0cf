"""Agreement, profiles, similarity, statistics and reports; reads the store only (issue 3/4)."""
