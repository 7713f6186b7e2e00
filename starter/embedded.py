"""The partner servers of the embedded stack: an SMTP catcher and an FTP drop.

Both run in a background thread of the calling process, so ``make run`` (starter/dev.py)
and the tests use the same classes:

- ``MailCatcher``: accepts every message over SMTP and writes it, raw bytes as received,
  to ``<directory>/<UTC time>-<random>.eml`` (sortable by arrival, written to a hidden
  temporary file and renamed, so a reader never sees half a message).
- ``FtpDrop``: an FTP server with one user who has full permissions on ``root``; this is
  where the fulfillment partner's inbox lives in development.

Neither is meant for the internet: no TLS, no authentication on SMTP, plain FTP.
"""

from __future__ import annotations

import email
import email.policy
import logging
import os
import threading
import uuid
from datetime import UTC, datetime
from email.message import EmailMessage
from pathlib import Path
from typing import Any, cast

from aiosmtpd.controller import Controller
from pyftpdlib.authorizers import DummyAuthorizer
from pyftpdlib.handlers import FTPHandler
from pyftpdlib.ioloop import IOLoop
from pyftpdlib.servers import FTPServer

__all__ = ["FtpDrop", "MailCatcher"]

log = logging.getLogger(__name__)

FULL_PERMISSIONS = "elradfmwMT"  # pyftpdlib: list, retrieve, store, rename, delete, mkdir, ...


# --- SMTP ------------------------------------------------------------------------------


class _SaveToDirectory:
    """aiosmtpd handler: one ``.eml`` file per message."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        raw: bytes = envelope.original_content or envelope.content or b""
        path = write_atomically(self.directory, message_filename(), raw)
        log.info("mail from %s to %s -> %s", envelope.mail_from,
                 ", ".join(envelope.rcpt_tos), path.name)
        return "250 Message accepted for delivery"


def message_filename() -> str:
    """``20261125T091400123456Z-<12 hex>.eml``: sorts by arrival time, never collides."""
    return f"{datetime.now(UTC):%Y%m%dT%H%M%S%fZ}-{uuid.uuid4().hex[:12]}.eml"


def write_atomically(directory: Path, name: str, data: bytes) -> Path:
    """Write ``data`` to ``directory/name`` via a hidden temporary file and a rename."""
    final = directory / name
    temporary = directory / f".{name}.tmp"
    with temporary.open("wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, final)
    return final


class MailCatcher:
    """An SMTP server on ``host:port`` that stores every message in ``directory``."""

    def __init__(self, host: str, port: int, directory: Path | str) -> None:
        self.host = host
        self.port = port
        self.directory = Path(directory)
        self._controller: Controller | None = None

    def start(self) -> None:
        if self._controller is not None:
            return
        self.directory.mkdir(parents=True, exist_ok=True)
        controller = Controller(_SaveToDirectory(self.directory), hostname=self.host,
                                port=self.port, enable_SMTPUTF8=True)
        controller.start()  # returns once the server answers
        self._controller = controller
        log.info("SMTP catcher on %s:%s -> %s", self.host, self.port, self.directory)

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def __enter__(self) -> MailCatcher:
        self.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    def files(self) -> list[Path]:
        """The stored messages, oldest first."""
        return sorted(self.directory.glob("*.eml"))

    def messages(self) -> list[EmailMessage]:
        """The stored messages, oldest first, parsed with ``email.policy.default``."""
        return [
            cast(EmailMessage, email.message_from_bytes(path.read_bytes(),
                                                        policy=email.policy.default))
            for path in self.files()
        ]


# --- FTP -------------------------------------------------------------------------------


class FtpDrop:
    """An FTP server on ``host:port`` with one user who may do everything under ``root``.

    ``received`` lists the local paths of every upload the server completed (STOR),
    in order, so tests can count what actually went over the wire.
    """

    poll_interval = 0.05  # seconds; also how long stop() may wait for the serving thread
    auth_failed_delay = 3.0  # seconds before answering a wrong password (pyftpdlib default)

    def __init__(self, host: str, port: int, root: Path | str, user: str,
                 password: str) -> None:
        self.host = host
        self.port = port
        self.root = Path(root)
        self.user = user
        self.password = password
        self.received: list[str] = []
        self._server: FTPServer | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()

    def start(self) -> None:
        if self._server is not None:
            return
        self.root.mkdir(parents=True, exist_ok=True)
        _quiet_pyftpdlib_defaults()
        authorizer = DummyAuthorizer()
        authorizer.add_user(self.user, self.password, str(self.root), perm=FULL_PERMISSIONS)
        received = self.received

        class Handler(FTPHandler):  # a class per server: pyftpdlib keeps config on the class
            def on_file_received(self, file: str) -> None:
                received.append(file)

        Handler.authorizer = authorizer
        Handler.banner = "Auftragsmanager FTP drop ready."
        Handler.auth_failed_timeout = self.auth_failed_delay
        # An IOLoop of its own: the default is a process-wide singleton, and two drops (or a
        # test and `make run`) must not share one across threads.
        server = FTPServer((self.host, self.port), Handler, ioloop=IOLoop())
        self.port = int(server.address[1])  # the real one when port 0 was asked for
        self._server = server
        self._stopping.clear()
        self._thread = threading.Thread(target=self._serve, name=f"ftp-drop-{self.port}",
                                        daemon=True)
        self._thread.start()
        log.info("FTP drop on %s:%s -> %s (user %s)", self.host, self.port, self.root, self.user)

    def _serve(self) -> None:
        server = self._server
        assert server is not None
        try:
            while not self._stopping.is_set():
                server.ioloop.loop(timeout=self.poll_interval, blocking=False)
        finally:
            server.close_all()  # in the serving thread: pyftpdlib's loop is not thread-safe

    def stop(self) -> None:
        if self._server is None:
            return
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._server = None
        self._thread = None

    def __enter__(self) -> FtpDrop:
        self.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()


def _quiet_pyftpdlib_defaults() -> None:
    """pyftpdlib configures the *root* logger on its first loop unless logging already has
    a handler; a NullHandler on its own logger keeps it from touching global state (its
    records still propagate to whatever the application configured)."""
    logger = logging.getLogger("pyftpdlib")
    if not any(isinstance(h, logging.NullHandler) for h in logger.handlers):
        logger.addHandler(logging.NullHandler())
