"""The store's failures, importable without SQLAlchemy (the CLI names them before it needs a database)."""


class StoreError(Exception):
    """The database cannot be opened or migrated (permissions, full disk, a newer schema)."""


class NotLeader(Exception):
    """This daemon may not spend: it is a standby, or a leader deposed by a newer term (several daemons on
    one PostgreSQL database). The message names the leader."""
