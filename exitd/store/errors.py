"""The store's failures, importable without SQLAlchemy (the CLI names them before it needs a database)."""


class StoreError(Exception):
    """The database cannot be opened or migrated (permissions, full disk, a newer schema)."""
