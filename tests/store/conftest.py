"""Service-level fixtures: a migrated database of each kind and a ServiceContext on it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from conftest import FakeClock
from loom.service._context import Actor, Policy, Project, ServiceContext
from loom.store import migrate
from loom.store.engine import Database

PROJECT = Project("acme", "widgets")
OTHER = Project("globex", "gadgets")
ACTOR = Actor()


@pytest.fixture
def db(database_url: str) -> Iterator[Database]:
    database = Database(database_url)
    migrate.upgrade(database)
    yield database
    database.dispose()


@pytest.fixture
def ctx(db: Database, clock: FakeClock) -> ServiceContext:
    return ServiceContext(db, Policy(), clock)


@pytest.fixture
def blind_ctx(db: Database, clock: FakeClock) -> ServiceContext:
    return ServiceContext(db, Policy(allow_blind_push=True), clock)
