"""REGTEST ONLY: a private bitcoind and an Ark-server stand-in for tests and `exitd demo`.

Nothing here is used by the daemon on a real network.
"""
