"""Builders shared by the tests (and nothing else): records, git repositories, packages,
sites and local servers. Plain functions, no pytest import: fixtures live in conftest.py.

- :mod:`.records`: record dicts from the valid fixture, written into an index folder
- :mod:`.repos`: git repositories for indexes, commits (signed too)
- :mod:`.packages`: zips and tars, small model packages (numpy or torch), wheels
- :mod:`.sites`: site.toml, sync, a site whose catalog holds given records, the CLI
- :mod:`.servers`: a misbehaving HTTP server, a static folder server (127.0.0.1 only)
- :mod:`.zenodo`: an emulator of Zenodo's REST API (127.0.0.1 only)
"""

from __future__ import annotations

from pathlib import Path

TESTS = Path(__file__).resolve().parent.parent
REPO_ROOT = TESTS.parent
FIXTURES = TESTS / "fixtures"
