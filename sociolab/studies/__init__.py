"""Study packs: what belongs to one published study rather than to sociolab in general (the
importer of its published data, its comparison family, how its raw records are decoded)."""
