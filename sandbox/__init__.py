"""Local imitation of the Vitally and Salesforce REST APIs: a real HTTP server on loopback.

A test double that speaks the real wire formats, never a shortcut inside the daemon.
"""

from __future__ import annotations

from sandbox.generator import generate_book
from sandbox.server import ControlError, Sandbox, SandboxConfig, serve

__all__ = ["ControlError", "Sandbox", "SandboxConfig", "generate_book", "serve"]
