"""CLI subcommands, one module each. Every module defines ``register(subparsers)``.

Modules are discovered, so adding a command never means editing a shared list. A command's
heavy imports (torch, Django) happen inside its handler, keeping ``edge-inspector --help`` fast
and the daemon free of training dependencies.
"""
