"""`python -m bcpareto`: the same CLI as the `bcpareto` script (how --workers starts its workers)."""

from .cli import main

main()
