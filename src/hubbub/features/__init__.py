"""Handlers, one module per message family: validate -> core rules -> store -> Effects."""
