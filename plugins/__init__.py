"""Built-in plugins, installed as ``crayon_plugins.plugins`` and registered through entry points."""
