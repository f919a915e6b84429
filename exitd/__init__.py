"""exitd: unilateral exits of bark VTXOs, run as a daemon against a real bitcoind."""

__version__ = "0.1.0"
