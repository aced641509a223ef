"""The command line's commands, one module each (``pvqae_lib.cli`` parses and dispatches to them).

Each module has a ``command(args) -> int`` (the exit code); :mod:`.common` holds what several share.
"""
