"""Command-line interface: parses options, calls one library function, turns errors into messages.

Heavy modules (TensorFlow, pandas, matplotlib, Optuna) are imported inside the commands, so
`bcpareto --help` starts fast. main.py holds the `bcpareto` group and what the commands share
(error mapping, option factories, output); each other module registers its commands on it.
"""

from . import data_commands, plot_commands, run_commands, search_command  # noqa: F401 - they register
from .main import cli, main

__all__ = ["cli", "main"]
