"""Store existing accounts under their canonical mailbox (mailer/addresses.py).

Before, an address was only stripped, NFC-normalised and lowercased, so one
mailbox could have several accounts ('"ada"@example.com', fullwidth or
ligature domains), and an IDN domain was stored in Unicode. New signups look
accounts up by the canonical mailbox, so a row left in an old spelling would
get a second account on its next signup.

Safe with the unique constraint: in each group of rows that name one mailbox,
at most one row takes the canonical spelling, and only if no row has it
already. That row is the one whose owner chose a password (proof of the
mailbox), else the oldest. The other rows keep their spelling: nothing is
deleted or merged, since an account may own data a migration cannot judge.
Rows that are not deliverable under the new rules stay as they are; their
mails fail at once with the reason. Non-ASCII local parts are kept
(EMAIL_SMTPUTF8 decides at send time).
"""

from collections import defaultdict

from django.contrib.auth.hashers import UNUSABLE_PASSWORD_PREFIX
from django.db import migrations

from mailer.addresses import UndeliverableAddress, canonical_mailbox

BATCH = 2000


def canonicalise_emails(apps, schema_editor):
    User = apps.get_model("signup", "User")
    respelled = defaultdict(list)  # canonical -> [(unusable password, pk)] of other spellings
    rows = User.objects.order_by("pk").values_list("pk", "email", "password")
    for pk, email, password in rows.iterator(chunk_size=BATCH):
        try:
            canonical = canonical_mailbox(email, smtputf8=True)
        except UndeliverableAddress:
            continue
        if canonical != email:
            respelled[canonical].append((password.startswith(UNUSABLE_PASSWORD_PREFIX), pk))
    canonicals = list(respelled)
    for start in range(0, len(canonicals), BATCH):
        batch = canonicals[start : start + BATCH]
        taken = set(User.objects.filter(email__in=batch).values_list("email", flat=True))
        for canonical in batch:
            if canonical not in taken:
                _, pk = min(respelled[canonical])  # A chosen password first, then the oldest.
                User.objects.filter(pk=pk).update(email=canonical)


class Migration(migrations.Migration):
    dependencies = [("signup", "0001_initial")]

    # Backwards: canonical spellings were valid before too.
    operations = [migrations.RunPython(canonicalise_emails, migrations.RunPython.noop)]
