"""structlog configuration: JSON lines with snake_case events; request ids bound via contextvars."""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from types import ModuleType
from typing import Any


def _structlog() -> ModuleType:
    """``import structlog`` without letting it import rich: structlog imports rich whenever it is installed (sigstore
    installs it) for pretty tracebacks and locals, which Referee never renders (``format_exc_info`` turns exceptions
    into text first), and that costs every ``referee`` command about 90 ms of start-up (#23 item 7). rich stays
    importable for whoever needs it later."""
    if "structlog" in sys.modules or "rich" in sys.modules:
        import structlog

        return structlog
    sys.modules["rich"] = None  # type: ignore[assignment]  # makes ``import rich`` raise ImportError
    try:
        import structlog
    finally:
        del sys.modules["rich"]
    return structlog


structlog = _structlog()

_SENSITIVE = ("authorization", "password", "token", "secret", "identitytoken", "cookie")


def _redact(logger: Any, method: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    for key in list(event):
        if any(s in key.lower() for s in _SENSITIVE):
            event[key] = "***"
    return event


class _StreamLogger:
    """Writes each line to the stream given, or to whatever ``sys.stderr`` is at the time of the call."""

    def __init__(self, stream: Any = None) -> None:
        self._stream = stream

    def msg(self, message: str) -> None:
        print(message, file=self._stream or sys.stderr, flush=True)

    log = debug = info = warning = warn = error = critical = exception = fatal = msg


_level = logging.INFO


def enabled(level: int) -> bool:
    """Whether events at ``level`` are written (to skip building per-key fields nobody will see)."""
    return level >= _level


def configure(level: str = "info", json_output: bool = True, stream: Any = None) -> None:
    """Configure structlog (and stdlib logging, for aiohttp) once per process."""
    global _level
    numeric = logging.getLevelName(level.upper())
    if not isinstance(numeric, int):
        numeric = logging.INFO
    _level = numeric
    renderer: Any = structlog.processors.JSONRenderer() if json_output else structlog.dev.ConsoleRenderer(colors=False)
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            _redact,
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=lambda *args: _StreamLogger(stream),
        cache_logger_on_first_use=False,
    )
    root = logging.getLogger()
    root.handlers[:] = [_StdlibBridge()]
    root.setLevel(max(numeric, logging.WARNING))


class _StdlibBridge(logging.Handler):
    """Library log records (aiohttp's "Error handling request", asyncio) as one JSON event each, without the
    traceback: a malformed request from a client is not a server error worth a stack, and a stack in the log
    breaks JSON-per-line shipping."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            fields: dict[str, Any] = {"logger": record.name, "message": record.getMessage()[:300]}
            if record.exc_info and record.exc_info[1] is not None:
                fields["error"] = f"{type(record.exc_info[1]).__name__}: {str(record.exc_info[1])[:200]}"
            structlog.get_logger(record.name).log(record.levelno, "library_log", **fields)
        except Exception:  # logging must never raise into the caller
            self.handleError(record)
