"""Experiments: scripts that found the training recipe, replay searches and compare runs.

Not part of the bcpareto package (it is not installed); a package only so that a test can import
an experiment's pure logic (`from experiments import replay_search`) from the repository root.
See README.md beside this file.
"""
