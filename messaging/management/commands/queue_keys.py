"""The keys that seal queued envelopes at rest (messaging/sealing.py, docs/privacy.md):

  queue_keys status        the configured key ids, and how many queued rows each one sealed
  queue_keys new [--write] a new key entry, printed (or, with --write, put first in QUEUE_KEYS_FILE)
  queue_keys rotate        seal every queued row under the current (first) key

A rotation: `new --write` (or add the printed entry first in QUEUE_KEYS), restart every process so
that all seal with the new key, `rotate`, then remove the old entry once `status` shows no row under it.
"""

from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db.models import Count

from messaging.models import QueuedMessage
from messaging.sealing import configured_entries, forget_keys, new_key_entry, queue_keys
from messaging.services import reseal_queued


class Command(BaseCommand):
    help = "Show, add and rotate the keys that seal queued envelopes."

    def add_arguments(self, parser):
        commands = parser.add_subparsers(dest="command", required=True)
        commands.add_parser("status")
        new = commands.add_parser("new")
        new.add_argument("--write", action="store_true", help="put the new key first in QUEUE_KEYS_FILE")
        commands.add_parser("rotate")

    def handle(self, *args, command, **options):
        forget_keys()
        if command == "new":
            self._new(write=options["write"])
        elif command == "rotate":
            resealed, unreadable = reseal_queued()
            self.stdout.write(f"resealed {resealed} queued messages under key {queue_keys().current.id}")
            if unreadable:
                raise CommandError(f"{unreadable} queued messages do not open with any configured key")
        else:
            self._status()

    def _new(self, *, write: bool) -> None:
        ids = [number for number, _ in configured_entries()]
        entry = new_key_entry(ids)
        if not write:
            self.stdout.write(entry)
            return
        if settings.QUEUE_KEYS or not settings.QUEUE_KEYS_FILE:
            raise CommandError("--write needs the keys in QUEUE_KEYS_FILE (QUEUE_KEYS is set, or no file)")
        path = Path(settings.QUEUE_KEYS_FILE)
        path.write_text(entry + "\n" + path.read_text())
        self.stdout.write(f"key {entry.split(':', 1)[0]} is now first in {path}; restart every process, then rotate")

    def _status(self) -> None:
        keys = queue_keys()
        counts = dict(QueuedMessage.objects.values_list("key_id").annotate(rows=Count("id")).order_by())
        for key_id in keys.by_id:
            role = "current" if key_id == keys.current.id else "opens only"
            self.stdout.write(f"key {key_id} ({role}): {counts.pop(key_id, 0)} queued messages")
        for key_id, rows in sorted(counts.items()):
            self.stdout.write(f"key {key_id} (NOT CONFIGURED): {rows} queued messages that cannot be delivered")
