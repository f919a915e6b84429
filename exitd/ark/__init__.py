"""The Ark protocol layer: bark's VTXO encoding, exit transactions, policies, and the crypto they need.

Pure code: nothing here does I/O, so every function can be tested against the BIPs' and bark's vectors.
"""
