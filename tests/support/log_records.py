"""Log records of one logger, for tests run with pytest's logging plugin off (-p no:logging)."""

import logging
from collections.abc import Iterator
from contextlib import contextmanager


class _Collector(logging.Handler):
    def __init__(self, filters: tuple[logging.Filter, ...]) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []
        for log_filter in filters:
            self.addFilter(log_filter)

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@contextmanager
def log_records(name: str, *filters: logging.Filter) -> Iterator[list[logging.LogRecord]]:
    """Collect what ``name`` (and its children) log inside the block, through ``filters``
    as the service's log handler would (see LOGGING in settings.py)."""
    collector = _Collector(filters)
    logger = logging.getLogger(name)
    logger.addHandler(collector)
    try:
        yield collector.records
    finally:
        logger.removeHandler(collector)
