"""Simulated annotators, installed as ``crayon_plugins.oracles`` and registered through entry points."""
