"""Accounts in the admin: Django's user admin for an email-only user."""

from typing import Any

from django.contrib import admin
from django.contrib.auth.admin import UserAdmin as DjangoUserAdmin
from django.contrib.auth.forms import AdminUserCreationForm, UserChangeForm

from .models import User


class CanonicalEmail:
    """Store the address as signups do, so an account made here is the one a signup finds."""

    cleaned_data: dict[str, Any]

    def clean_email(self) -> str:
        return User.objects.normalize_email(self.cleaned_data["email"])


class UserCreationForm(CanonicalEmail, AdminUserCreationForm):
    class Meta:
        model = User
        fields = ("email",)
        field_classes: dict[str, Any] = {}


class UserEditForm(CanonicalEmail, UserChangeForm):
    class Meta:
        model = User
        fields = "__all__"
        field_classes: dict[str, Any] = {}


@admin.register(User)
class UserAdmin(DjangoUserAdmin):
    form = UserEditForm
    add_form = UserCreationForm
    fieldsets = (
        (None, {"fields": ("email", "password")}),
        (
            "Permissions",
            {"fields": ("is_active", "is_staff", "is_superuser", "groups", "user_permissions")},
        ),
        ("Important dates", {"fields": ("last_login", "date_joined")}),
    )
    add_fieldsets = (
        (
            None,
            {
                "classes": ("wide",),
                "fields": ("email", "usable_password", "password1", "password2"),
            },
        ),
    )
    readonly_fields = ("last_login", "date_joined")
    list_display = ("email", "is_staff", "is_active", "date_joined", "last_login")
    list_filter = ("is_staff", "is_superuser", "is_active", "groups")
    search_fields = ("email",)
    # The unique index on email serves this order; the list holds every signup.
    ordering = ("email",)
