"""`python -m bcpareto`: the same as the `bcpareto` command."""

from .cli import main

main()
