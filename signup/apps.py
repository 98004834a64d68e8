from django.apps import AppConfig


class SignupConfig(AppConfig):
    name = "signup"

    def ready(self) -> None:
        from background.housekeeping import housekeeping

        from . import ratelimit, retention

        housekeeping.connect(retention.prune_signup_tables, dispatch_uid="signup.retention")

        # Parse the limits now, so a typo stops the server at startup with a
        # clear message rather than at the first signup.
        ratelimit.signup_rate()
        ratelimit.mail_rate()
