"""Experiment tooling for crlgym: runners, metrics and reporting."""
