"""``synthmed index ...``: validate, check, pin, import-medigan."""

from __future__ import annotations

import argparse

def register(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    return None
