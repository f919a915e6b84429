"""The `exitd` command line (main.py), the REST client it drives a daemon with, its tables, and `exitd demo`.

Nothing is imported here: `exitd status` must not pay for what `exitd run` or `exitd demo` load.
"""
