"""A ledger over a connection pool of its own, for background work in the API process.

The API's requests share one engine (one pool) per URL; the webhook dispatcher's passes (up to a
pass's parallel sends recording at once) run on a second one, so background work never makes a
request wait for a pooled connection, and the requests' pool serves requests alone. The caller
disposes it when the work stops. The schema is not migrated here: the API's start does that.
"""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy.orm import sessionmaker

from infra.ledger.database import make_engine
from infra.ledger.ledger import Ledger
from infra.ledger.sessions import Sessions


def own_ledger(url: str) -> tuple[Ledger, Callable[[], None]]:
    """The ledger at `url` on a new engine, and what closes that engine's connections."""
    engine = make_engine(url)
    return Ledger(Sessions(sessionmaker(engine, expire_on_commit=False))), engine.dispose
