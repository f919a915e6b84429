"""Structured logs: one line per event, an event name plus key=value fields (vtxo, txid, fee...).

Text for people reading journald, JSON for machines. Callers pass fields explicitly; nothing is formatted
from arbitrary objects, so secrets cannot slip in through a repr().
"""

from __future__ import annotations

import json
import logging
import logging.handlers
import sys
from datetime import UTC, datetime
from typing import Any

LOGGER_NAME = "exitd"


def get_logger(name: str) -> logging.Logger:
    return logging.getLogger(f"{LOGGER_NAME}.{name}")


def event(logger: logging.Logger, level: int, name: str, **fields: Any) -> None:
    """Log one event; `name` is a stable snake_case identifier, fields are scalars."""
    logger.log(level, name, extra={"fields": fields})


def _text_value(value: Any) -> str:
    text = str(value)
    if text == "" or any(c in text for c in ' "='):
        return json.dumps(text)
    return text


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        stamp = datetime.fromtimestamp(record.created, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        fields: dict[str, Any] = getattr(record, "fields", {})
        parts = [stamp[:-4] + "Z", record.levelname, record.name, record.getMessage()]
        parts += [f"{k}={_text_value(v)}" for k, v in fields.items()]
        if record.exc_info:
            parts.append("exc=" + json.dumps(self.formatException(record.exc_info)))
        return " ".join(parts)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": record.getMessage(),
        }
        for key, value in getattr(record, "fields", {}).items():
            doc[key] = value if isinstance(value, int | float | bool | type(None)) else str(value)
        if record.exc_info:
            doc["exc"] = self.formatException(record.exc_info)
        return json.dumps(doc, separators=(",", ":"))


def log_handler(path: str) -> logging.Handler:
    """stderr (journald keeps it), or a file that is reopened when logrotate moves it away."""
    if not path:
        return logging.StreamHandler(sys.stderr)
    return logging.handlers.WatchedFileHandler(path, encoding="utf-8")


def setup_logging(level: str = "info", fmt: str = "text", path: str = "") -> None:
    handler = log_handler(path)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger(LOGGER_NAME)
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    root.propagate = False
    # aiohttp's access log is one line per request; keep it quiet unless debugging.
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING if level != "debug" else logging.DEBUG)
