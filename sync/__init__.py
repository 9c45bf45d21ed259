"""Orchestration: the cycle (ingest → plan → apply), the command line, the daemon and the demo."""

from __future__ import annotations

__all__ = ["main"]


def main() -> int:
    """The command line (`crm-sync`, `python -m sync`)."""
    from sync.cli import main as cli_main

    return cli_main()
