from django.contrib.auth import views as auth_views
from django.urls import path, reverse_lazy
from django.views.generic import RedirectView

from background.views import healthz
from signup.views import register_user

urlpatterns = [
    path("", RedirectView.as_view(pattern_name="signup")),
    path("signup/", register_user, name="signup"),
    path(
        "account/set-password/<uidb64>/<token>/",
        auth_views.PasswordResetConfirmView.as_view(
            success_url=reverse_lazy("password_set_done"),
        ),
        name="password_set",
    ),
    path(
        "account/set-password/done/",
        auth_views.PasswordResetCompleteView.as_view(),
        name="password_set_done",
    ),
    path("healthz", healthz, name="healthz"),
]
