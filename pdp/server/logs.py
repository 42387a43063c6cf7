"""The server's log format: one line per event on stderr, with the process id (workers share
the stream)."""

from __future__ import annotations

import logging
import sys

def setup_logging(level: str = "INFO") -> None:
    """Log to stderr at ``level`` (DEBUG, INFO, WARNING or ERROR); a no-op when logging is already set up."""
    logging.basicConfig(stream=sys.stderr, level=getattr(logging, level, logging.INFO),
                        format="%(asctime)s pdp[%(process)d] %(levelname)s %(message)s", datefmt="%Y-%m-%d %H:%M:%S")
