"""Built-in annotation sources for people (simulated annotators live in :mod:`crayon_plugins.oracles`)."""
