"""devhost: a local stand-in for ``func start`` that runs a Python v2 Functions app against Azurite.

A development tool, not the Azure Functions host. See docs/devhost.md for what it does and what it does not.
"""
