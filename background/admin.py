"""The job ledger in Django's admin: which job failed and why, and running it again.

Jobs are never saved from here: a model save writes every column, and would
overwrite a claim or an outcome a runner wrote since the page was loaded.
So the detail page is read-only, and the admin changes jobs only through the
ledger's own conditional UPDATEs ("Run again now") or by deleting them.
"""

from datetime import datetime

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.dateparse import parse_datetime
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString
from django.utils.timezone import localtime

from . import ledger
from .models import Job
from .runner import active_runner

# How much of a reason fits in the job list's column.
LISTED_REASON_CHARS = 120


def _last_error(job: Job) -> dict[str, str] | None:
    return job.errors[-1] if job.errors else None


def error_reason(error: dict[str, str]) -> str:
    """The one-line reason of an error record: its exception's short name and first line.

    Taken from the traceback's line that names the exception (the last such
    line: a chained traceback names the exception it caused last), e.g.
    ``DeliveryError: recipients refused (550 5.1.1 unknown user)``.
    """
    path = error.get("exception_class_path", "")
    name = path.rsplit(".", 1)[-1]
    lines = error.get("traceback", "").splitlines()
    for line in reversed(lines):
        for prefix in (f"{path}:", f"{name}:"):
            if line.startswith(prefix):
                return f"{name}:{line.removeprefix(prefix)}"
        if line in (path, name):
            return name
    return name or "unknown error"


def recipients(job: Job) -> str | None:
    """Where a mail job sends to, from its arguments (mailer/tasks.py).

    Every task of this service is a mail: a message Django queued has a
    ``recipients`` list (``send_stored_message``), an account's mail takes
    the address first (``send_welcome_email``). Anything else has none.
    """
    listed = job.kwargs.get("recipients")
    if isinstance(listed, list):
        return ", ".join(str(address) for address in listed)
    if job.args and isinstance(job.args[0], str):
        return job.args[0]
    return None


def error_time(error: dict[str, str]) -> datetime | None:
    """When the error happened (``ledger.record_failure`` stamps it), if recorded."""
    stamp = error.get("failed_at")
    return parse_datetime(stamp) if stamp else None


class TaskFilter(admin.SimpleListFilter):
    """Filter by task, named by the function's name rather than its whole path."""

    title = "task"
    parameter_name = "task"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, str]]:
        paths = Job.objects.order_by("task_path").values_list("task_path", flat=True).distinct()
        return [(path, _short_task(path)) for path in paths]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Job]) -> QuerySet[Job]:
        return queryset.filter(task_path=self.value()) if self.value() else queryset


def _short_task(path: str) -> str:
    return path.rsplit(".", 1)[-1]


def _jobs(count: int) -> str:
    return f"{count} job" if count == 1 else f"{count} jobs"


@admin.register(Job)
class JobAdmin(admin.ModelAdmin):
    list_display = (
        "short_id",
        "status",
        "task",
        "recipient",
        "attempts",
        "next_run",
        "last_error",
        "last_error_at",
    )
    list_filter = ("status", TaskFilter)
    # The id exactly; an address in the arguments (as text: any part of it),
    # or among a stored message's recipients, not in its base64 body.
    search_fields = ("=id", "args", "kwargs__recipients")
    search_help_text = "A job's whole id, or (part of) an address."
    ordering = ("-enqueued_at",)
    list_per_page = 50
    actions = ("run_again_now",)
    fieldsets = (
        (None, {"fields": ("id", ("status", "attempts"), "task_path", ("args", "kwargs"))}),
        ("Errors", {"fields": ("error_history",)}),
        (
            "Schedule",
            {
                "fields": (
                    ("enqueued_at", "run_after"),
                    ("started_at", "last_attempted_at", "finished_at"),
                    ("priority", "queue_name", "backend"),
                )
            },
        ),
        ("Lease", {"fields": (("lease_owner", "lease_expires_at"), "worker_ids")}),
        ("Result", {"fields": ("return_value",)}),
    )
    readonly_fields = ("error_history",)

    # -- the job list ---------------------------------------------------------

    @admin.display(description="id", ordering="id")
    def short_id(self, job: Job) -> str:
        # Enough to tell jobs apart on a page; the whole id is on the job's page.
        return f"{job.id[:8]}…"

    @admin.display(description="task", ordering="task_path")
    def task(self, job: Job) -> str:
        return _short_task(job.task_path)

    @admin.display(description="recipient")
    def recipient(self, job: Job) -> str | None:
        return recipients(job)

    @admin.display(description="next run", ordering="run_after")
    def next_run(self, job: Job) -> datetime | None:
        # Only a READY job runs at run_after; for others it is history.
        return job.run_after if job.status == ledger.READY else None

    @admin.display(description="last error")
    def last_error(self, job: Job) -> str | None:
        error = _last_error(job)
        if error is None:
            return None
        reason = error_reason(error)
        if len(reason) > LISTED_REASON_CHARS:
            reason = reason[: LISTED_REASON_CHARS - 1] + "…"
        return reason

    @admin.display(description="last error at")
    def last_error_at(self, job: Job) -> datetime | None:
        error = _last_error(job)
        return error_time(error) if error is not None else None

    # -- the detail page ------------------------------------------------------

    @admin.display(description="newest first")
    def error_history(self, job: Job) -> SafeString | str:
        if not job.errors:
            return "none"
        count = len(job.errors)
        return format_html_join(
            "",
            "<div><p><strong>{} of {}</strong>{}: {}</p><pre>{}</pre></div>",
            (
                (
                    count - index,
                    count,
                    format_html(" at {}", f"{localtime(stamp):%Y-%m-%d %H:%M:%S %Z}")
                    if (stamp := error_time(error))
                    else "",
                    error_reason(error),
                    error.get("traceback", ""),
                )
                for index, error in enumerate(reversed(job.errors))
            ),
        )

    # -- what the admin may do ------------------------------------------------

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # Jobs come from enqueueing a task.

    def has_change_permission(self, request: HttpRequest, obj: Job | None = None) -> bool:
        return False  # See the module's docstring: a save would undo a runner's writes.

    def has_run_permission(self, request: HttpRequest) -> bool:
        """Who may run jobs again: those given "change job" (superusers have it)."""
        return request.user.has_perm(f"{Job._meta.app_label}.change_job")

    @admin.action(description="Run again now", permissions=["run"])
    def run_again_now(self, request: HttpRequest, queryset: QuerySet[Job]) -> None:
        chosen = queryset.count()
        due = ledger.run_again_now(queryset)
        runner = active_runner()
        if due and runner is not None:
            runner.wake_from_thread()
        self.message_user(request, f"{_jobs(due)} will run now.", messages.SUCCESS)
        if chosen > due:
            self.message_user(
                request,
                f"{_jobs(chosen - due)} left as they were: running, or delivered already.",
                messages.WARNING,
            )
