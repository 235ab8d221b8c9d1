"""``synthmed dataset``'s site sub-commands (see dataset_cmds)."""

from __future__ import annotations

import argparse


def register(dsub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    """Add this module's sub-commands to ``synthmed dataset``."""
