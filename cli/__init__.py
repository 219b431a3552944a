"""The `l2m` command-line app."""
