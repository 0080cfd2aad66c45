"""The `localgw` command: thin adapters over the library. Results to stdout, the rest to stderr."""

from __future__ import annotations

import sys

from localgw import config
from localgw.cli.app import app
from localgw.errors import LocalgwError


def main() -> None:
    try:
        app()
    except LocalgwError as exc:
        if config.debug():
            raise
        print(f"localgw: error: {exc.message}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        sys.exit(130)
    except Exception as exc:  # noqa: BLE001 - one line, unless debugging
        if config.debug():
            raise
        print(f"localgw: error: {type(exc).__name__}: {exc} (set LOCALGW_DEBUG=1 for a traceback)",
              file=sys.stderr)
        sys.exit(1)
