"""The ``pvarchiver`` console script."""
