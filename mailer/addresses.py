"""One canonical mailbox per address: what the account, the rate limit and the envelope use.

A mailbox can be written many ways: ``"ada"@example.com``, ``ADA@Example.com``,
a domain in fullwidth letters or with ligatures, a trailing dot. Each way that
reaches the same mailbox must become the same string here, or each would get
its own account and its own share of the per-address mail limit (seen: 14
mails to one mailbox where 3 were allowed). What cannot be delivered
reliably is refused with a reason instead.

Domains are encoded with the ``idna`` package (UTS 46 mapping, IDNA 2008,
non-transitional), not the stdlib's ``idna`` codec: the codec implements
IDNA 2003, which maps ``straße.de`` to ``strasse.de``, a different domain
since IDNA 2008, and accepts symbols that registries no longer allow. UTS 46
non-transitional is what browsers and current MTAs resolve, and its mapping
folds case, fullwidth forms and ligatures, as the transport must.
"""

import functools
import ipaddress
import re
import unicodedata

import idna

MAX_ADDRESS_OCTETS = 254  # RFC 5321 4.5.3.1.3: a path of 256 octets including "<>".
MAX_LOCAL_PART_OCTETS = 64  # RFC 5321 4.5.3.1.1.
MAX_DOMAIN_OCTETS = 253  # RFC 1035, without the trailing dot.
MAX_LABEL_OCTETS = 63  # RFC 1035.

INVALID = "Enter a valid email address."
IP_REFUSED = "Addresses at an IP address are not accepted."

# RFC 5321 Dot-string of atext; RFC 6531 adds any non-ASCII character (checked apart).
ASCII_ATEXT = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]")
# Unicode categories refused anywhere: controls, format characters (zero-width,
# bidi overrides) and line or paragraph separators.
INVISIBLE_CATEGORIES = {"Cc", "Cf", "Zl", "Zp"}


class UndeliverableAddress(ValueError):
    """The address cannot be delivered reliably; ``reason`` says why, for the client.

    Retrying cannot fix an address, so a job that meets one fails at once
    (the runner reads ``transient``).
    """

    transient = False

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def canonical_mailbox(address: str, *, smtputf8: bool) -> str:
    """The one spelling of the mailbox ``address`` names, or UndeliverableAddress.

    The local part is NFC-normalised, lowercased (nearly every provider treats
    it case-insensitively, and one account per mailbox matters more than the
    rare server that does not) and unquoted; the domain is its IDNA ASCII form
    without a trailing dot. Non-ASCII local parts need ``smtputf8`` (RFC 6531).
    Idempotent: a canonical mailbox maps to itself.
    """
    address = unicodedata.normalize("NFC", address.strip())
    if not address:
        raise UndeliverableAddress("This field is required.")
    if any(unicodedata.category(char) in INVISIBLE_CATEGORIES for char in address):
        raise UndeliverableAddress("Must not contain control characters.")
    if len(address) > MAX_ADDRESS_OCTETS:  # Before any parsing: bounds the work.
        raise UndeliverableAddress(f"Must be at most {MAX_ADDRESS_OCTETS} characters.")
    local, at, domain = address.rpartition("@")
    if not at or not local or not domain:
        raise UndeliverableAddress(INVALID)
    mailbox = f"{_canonical_local_part(local, smtputf8)}@{_mail_domain(domain)}"
    if len(mailbox.encode()) > MAX_ADDRESS_OCTETS:
        raise UndeliverableAddress(f"Must be at most {MAX_ADDRESS_OCTETS} characters.")
    return mailbox


def ascii_domain(domain: str) -> str:
    """``domain`` in its IDNA ASCII form (A-labels), lowercase, without a trailing dot."""
    try:
        mapped = idna.uts46_remap(domain, std3_rules=True, transitional=False)
    except (idna.IDNAError, UnicodeError):
        raise UndeliverableAddress(INVALID) from None
    labels = mapped.removesuffix(".").split(".")  # "example.com." is the same domain.
    if "" in labels:
        raise UndeliverableAddress(INVALID)
    lengths = [_a_label_length(label) for label in labels]
    if max(lengths) > MAX_LABEL_OCTETS:
        raise UndeliverableAddress(
            f"Each part of the domain must be at most {MAX_LABEL_OCTETS} characters."
        )
    if sum(lengths) + len(labels) - 1 > MAX_DOMAIN_OCTETS:
        raise UndeliverableAddress(f"The domain must be at most {MAX_DOMAIN_OCTETS} characters.")
    try:
        return idna.encode(".".join(labels), uts46=False).decode("ascii")
    except (idna.IDNAError, UnicodeError):
        raise UndeliverableAddress(INVALID) from None


# Most signups share a few domains, and their IDNA mapping was ~3 % of the
# server CPU under signup load (py-spy; the view and the mail both look):
# each domain is mapped once. A refused one raises, and is not cached.
@functools.lru_cache(maxsize=1024)
def _mail_domain(domain: str) -> str:
    """A recipient's domain: a name with a top-level domain, never an IP address."""
    if domain.startswith("["):  # An address literal: user@[192.0.2.1], user@[IPv6:...].
        raise UndeliverableAddress(IP_REFUSED)
    encoded = ascii_domain(domain)
    if _is_ip_address(encoded):
        raise UndeliverableAddress(IP_REFUSED)
    labels = encoded.split(".")
    if len(labels) < 2 or labels[-1].isdigit():
        raise UndeliverableAddress(INVALID)
    return encoded


def _is_ip_address(domain: str) -> bool:
    try:
        ipaddress.ip_address(domain)
    except ValueError:
        return False
    return True


def _a_label_length(label: str) -> int:
    return len(label) if label.isascii() else len("xn--") + len(label.encode("punycode"))


def _canonical_local_part(local: str, smtputf8: bool) -> str:
    if local.startswith('"'):
        local = _unquoted(local)
    local = unicodedata.normalize("NFC", local.lower())
    if not local.isascii() and not smtputf8:
        raise UndeliverableAddress("Only ASCII characters are accepted before the @.")
    if not _is_dot_string(local):
        raise UndeliverableAddress(INVALID)
    if len(local.encode()) > MAX_LOCAL_PART_OCTETS:
        raise UndeliverableAddress(
            f"The part before the @ must be at most {MAX_LOCAL_PART_OCTETS} characters."
        )
    return local


def _unquoted(quoted: str) -> str:
    """The content of an RFC 5321 Quoted-string, refused unless it needs no quotes."""
    if len(quoted) < 2 or not quoted.endswith('"'):
        raise UndeliverableAddress(INVALID)
    content: list[str] = []
    chars = iter(quoted[1:-1])
    for char in chars:
        if char == "\\":
            char = next(chars, "")  # quoted-pair: the next character stands for itself.
            if not char:
                raise UndeliverableAddress(INVALID)
        elif char == '"':
            raise UndeliverableAddress(INVALID)
        content.append(char)
    unquoted = "".join(content)
    if not _is_dot_string(unquoted.lower()):
        # Spaces, "@", "..." and the like: legal, but many systems mangle or
        # refuse such mailboxes, and they make one mailbox many strings.
        raise UndeliverableAddress("Addresses that need quotes before the @ are not accepted.")
    return unquoted


def _is_dot_string(local: str) -> bool:
    """RFC 5321 Dot-string, with RFC 6531's non-ASCII characters (no spaces)."""
    atoms = local.split(".")
    return all(atoms) and all(_is_atext(char) for atom in atoms for char in atom)


def _is_atext(char: str) -> bool:
    if char.isascii():
        return ASCII_ATEXT.match(char) is not None
    return unicodedata.category(char)[0] not in {"C", "Z"}
