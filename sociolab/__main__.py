"""`python -m sociolab ...` is the `sociolab` command."""

from sociolab.cli import main

main()
