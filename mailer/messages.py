"""What the account mails say: rendered from templates, addressed, identified."""

import functools
from base64 import encodebytes
from email.header import Header
from email.utils import formataddr, formatdate, parseaddr

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.base_user import AbstractBaseUser
from django.contrib.auth.tokens import default_token_generator
from django.db import router
from django.db.models import Model
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils.encoding import force_bytes
from django.utils.http import urlsafe_base64_encode

from .addresses import ascii_domain, canonical_mailbox


def set_password_link(user: AbstractBaseUser) -> str:
    """A one-time signed link to choose a password; using it also proves the address."""
    path = reverse(
        "password_set",
        kwargs={
            "uidb64": urlsafe_base64_encode(force_bytes(user.pk)),
            "token": default_token_generator.make_token(user),
        },
    )
    return f"{settings.SITE_URL}{path}"


def message_id_for(job_id: str) -> str:
    """The same job always gets the same Message-ID, so a resent mail is one mail."""
    domain = envelope_sender().rpartition("@")[2]
    return f"<{job_id}@{domain or 'localhost'}>"


def delivery_mailbox(email: str) -> str:
    """Where the account ``email``'s mail goes: its canonical mailbox, the envelope's RCPT.

    Raises UndeliverableAddress (permanent) for an address stored before the
    rules refused it, or with a non-ASCII local part once EMAIL_SMTPUTF8 is off.
    """
    return canonical_mailbox(email, smtputf8=settings.EMAIL_SMTPUTF8)


@functools.lru_cache(maxsize=16)  # The sender is the same for every mail.
def _sender(configured: str) -> tuple[str, str]:
    name, addr = parseaddr(configured)
    local, _, domain = addr.rpartition("@")
    mailbox = f"{local}@{ascii_domain(domain)}" if domain else addr
    return mailbox, formataddr((name, mailbox), charset="utf-8")


def envelope_sender() -> str:
    """DEFAULT_FROM_EMAIL's mailbox (IDNA domain): the envelope's MAIL FROM."""
    return _sender(settings.DEFAULT_FROM_EMAIL)[0]


def sender_header() -> str:
    """DEFAULT_FROM_EMAIL as an ASCII header: display name RFC 2047-encoded, IDNA domain."""
    return _sender(settings.DEFAULT_FROM_EMAIL)[1]


@functools.lru_cache(maxsize=16)  # A handful of fixed subjects.
def subject_header(subject: str) -> str:
    """``subject`` as an ASCII header value: RFC 2047-encoded if it is not ASCII."""
    if subject.isascii():
        return subject
    return Header(subject, "utf-8").encode(linesep="\r\n")


@functools.cache  # One model and a database or two per process.
def _account_query(model: type[Model], alias: str) -> str:
    """The SQL the ORM builds for ``model._default_manager.filter(email=...)`` on ``alias``."""
    queryset = model._default_manager.db_manager(alias).filter(email="")
    sql, params = queryset.query.get_compiler(using=alias).as_sql()
    assert len(params) == 1, "one placeholder, for the address"
    return sql


def account_for(email: str) -> AbstractBaseUser | None:
    """The account whose (canonical) address is ``email``, or None.

    Every mail runs the same SELECT: built by the ORM once per database
    (alias) and run as a raw query (which still applies the field converters), it
    cost ~100 us of CPU per mail rather than the ~480 us of ``.get()``, which
    compiles the query anew each time (measured on the bench machine; about
    a quarter of a welcome mail's CPU).
    """
    User = get_user_model()
    alias = router.db_for_read(User)
    sql = _account_query(User, alias)
    return next(iter(User._default_manager.db_manager(alias).raw(sql, [email])), None)


# "=_" never occurs in base64, so no part can hold the boundary.
BOUNDARY = b"=_alternative"


def _text_part(subtype: str, text: str) -> bytes:
    # Base64 keeps every line short and 7-bit, whatever the template holds.
    body = encodebytes(text.encode()).replace(b"\n", b"\r\n")
    return (
        b"--" + BOUNDARY + b"\r\n"
        b"Content-Type: text/" + subtype.encode() + b'; charset="utf-8"\r\n'
        b"Content-Transfer-Encoding: base64\r\n\r\n" + body
    )


def account_mail(
    template: str, subject: str, email: str, job_id: str, *, mailbox: str | None = None
) -> bytes | None:
    """Render ``mailer/<template>.txt`` and ``.html`` for the account ``email``: the mail's bytes.

    ``mailbox`` is its delivery mailbox when the caller has it already.

    None if there is no such account any more (nothing to say). The
    multipart/alternative is written out directly: built with the stdlib's
    MIME classes and flattened, it cost ~430 us of CPU per mail, these few
    lines ~6 us (measured; rendering both templates ~23 us), CPU the web
    requests on the same event loop would otherwise wait for. The structure
    is fixed, the headers are ASCII but for an SMTPUTF8 To, and each part is
    base64: nothing needs folding.
    """
    user = account_for(email)
    if user is None:
        return None
    return render_account_mail(user, template, subject, email, job_id, mailbox=mailbox)


def render_account_mail(
    user: AbstractBaseUser,
    template: str,
    subject: str,
    email: str,
    job_id: str,
    *,
    mailbox: str | None = None,
) -> bytes:
    """``account_mail`` for an account already at hand: no query, so any thread may call it."""
    context = {"email": email, "link": set_password_link(user), "site_url": settings.SITE_URL}
    headers = (
        f"Subject: {subject_header(subject)}\r\n"
        f"From: {sender_header()}\r\n"
        f"Date: {formatdate()}\r\n"
        f"Message-ID: {message_id_for(job_id)}\r\n"
        "MIME-Version: 1.0\r\n"
        f'Content-Type: multipart/alternative; boundary="{BOUNDARY.decode()}"\r\n'
    ).encode()
    # A non-ASCII (SMTPUTF8) mailbox is written as raw UTF-8 (RFC 6532): an
    # RFC 2047 encoded word is not allowed in an address.
    to = b"To: " + (mailbox or delivery_mailbox(email)).encode() + b"\r\n"
    return b"".join(
        (
            headers,
            to,
            b"\r\n",
            _text_part("plain", render_to_string(f"mailer/{template}.txt", context)),
            _text_part("html", render_to_string(f"mailer/{template}.html", context)),
            b"--" + BOUNDARY + b"--\r\n",
        )
    )
