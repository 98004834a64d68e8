from django.apps import AppConfig


class MailerConfig(AppConfig):
    name = "mailer"

    def ready(self) -> None:
        from background.runner import runner_stopped

        from .transport import close_transports

        runner_stopped.connect(close_transports, dispatch_uid="mailer.close_transports")
