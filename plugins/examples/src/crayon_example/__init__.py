"""An example third-party crayon plugin (see README.md)."""
