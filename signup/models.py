from typing import Any

from django.contrib.auth.base_user import AbstractBaseUser, BaseUserManager
from django.contrib.auth.models import PermissionsMixin
from django.db import models
from django.utils import timezone

from mailer.addresses import UndeliverableAddress, canonical_mailbox


class UserManager(BaseUserManager["User"]):
    use_in_migrations = True

    @classmethod
    def normalize_email(cls, email: str | None) -> str:
        """The canonical mailbox, as signups store it, so one address is one account.

        An address mail cannot go to (an operator's ``admin@localhost``) only
        gets its domain lowercased, as Django's default does.
        """
        try:
            return canonical_mailbox(email or "", smtputf8=True)
        except UndeliverableAddress:
            return super().normalize_email(email)

    def create_user(self, email: str, password: str | None = None, **fields: Any) -> "User":
        """``email`` must be canonical already: signups pass it so (signup/validation.py)."""
        # A password of None makes it unusable: the account gets one through
        # the link in its welcome mail.
        user = self.model(email=email, **fields)
        user.set_password(password)
        user.save(using=self._db)
        return user

    def create_superuser(self, email: str, password: str | None = None, **fields: Any) -> "User":
        """For ``createsuperuser``, where the operator may spell the address any way."""
        return self.create_user(
            self.normalize_email(email), password, is_staff=True, is_superuser=True, **fields
        )

    def get_by_natural_key(self, username: str | None) -> "User":
        # How a login finds its account: in any spelling of the address.
        return super().get_by_natural_key(self.normalize_email(username))


class User(AbstractBaseUser, PermissionsMixin):
    """An account, identified by its email address (stored normalised, lowercase)."""

    email = models.EmailField(unique=True, max_length=254)
    is_active = models.BooleanField(default=True)
    is_staff = models.BooleanField(default=False)
    date_joined = models.DateTimeField(default=timezone.now)

    USERNAME_FIELD = "email"
    EMAIL_FIELD = "email"
    REQUIRED_FIELDS: list[str] = []

    objects = UserManager()

    def __str__(self) -> str:
        return self.email


class RateWindow(models.Model):
    """Hits of one rate-limit key in one fixed time window, shared by all workers."""

    key = models.CharField(max_length=100)
    window_start = models.BigIntegerField()  # Epoch seconds.
    hits = models.PositiveIntegerField(default=0)
    expires_at = models.BigIntegerField(db_index=True)  # Epoch seconds.

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["key", "window_start"], name="rate_window_key")
        ]
