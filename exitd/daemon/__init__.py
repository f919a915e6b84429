"""`exitd run`: its wiring and lifecycle (lifecycle.py), the datadir it owns (datadir.py), systemd notify.

Nothing is imported here: the command line reads the datadir's token through this package and must not load
the daemon's dependencies to do so.
"""
