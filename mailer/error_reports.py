"""Django's reports of errors to ADMINS, queued like any mail, never raising into the request."""

import logging
from typing import Any

from django.utils.log import AdminEmailHandler

logger = logging.getLogger(__name__)


class ErrorReportHandler(AdminEmailHandler):
    """Django's ``mail_admins`` log handler, for a mail it cannot queue logs a warning instead.

    Under MAILERS, Django 6.1 lets a failed ``mail_admins`` escape from
    ``logger.error()`` (Django ticket #37261), that is from its own handling
    of a 500: the request then ended in an exception out of the ASGI
    application instead of Django's error page. Here the likeliest failure is
    the outage being reported: a database that cannot take the report's job.
    """

    def send_mail(self, subject: str, message: str, *args: Any, **kwargs: Any) -> None:
        try:
            super().send_mail(subject, message, *args, **kwargs)
        except Exception as error:
            # The class only: an address in ADMINS that cannot be parsed would
            # be quoted in the message.
            logger.warning("Error report to ADMINS not queued: %s", type(error).__name__)
