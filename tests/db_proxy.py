"""Database outages for tests: a cuttable TCP proxy, and an outage on either engine.

:class:`TcpProxy` listens on a free port of ``127.0.0.1`` and relays every connection to
the target (the local PostgreSQL server) with two threads per connection. While it is
*cut*, every relayed connection is closed at once (the client sees "server closed the
connection unexpectedly" on its next statement) and the listening socket is closed, so a
new connection is refused (ECONNREFUSED), as when a database host goes down. ``restore``
listens again on the same port, so the URL handed to the processes under test stays valid.
While it *hangs*, connections are dropped too but new ones are accepted and never
answered, as when a network drops every packet to the database host.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType

from sqlalchemy import create_engine
from sqlalchemy.engine import Engine, make_url
from sqlmodel import SQLModel

import reminders.data.models  # noqa: F401  (registers the tables)

#: Bytes read at once from either side.
_CHUNK = 65_536


class TcpProxy:
    """A cuttable TCP relay from ``127.0.0.1:port`` to ``target_host:target_port``."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.port = 0
        self._lock = threading.Lock()
        self._listener: socket.socket | None = None
        self._open: set[socket.socket] = set()
        self._stopped = False
        self._hanging = False
        #: Connections accepted and relayed since the start (the test checks the proxy was used).
        self.connections = 0

    # --- life cycle -------------------------------------------------------------------------

    def start(self) -> TcpProxy:
        """Listen (on a free port the first time, on the same port after a cut)."""
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(128)
        self.port = listener.getsockname()[1]
        with self._lock:
            self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()
        return self

    def cut(self) -> None:
        """Drop every relayed connection and refuse new ones until :meth:`restore`."""
        with self._lock:
            listener, self._listener = self._listener, None
            sockets, self._open = self._open, set()
        if listener is not None:
            listener.close()
        for sock in sockets:
            _close(sock)

    def hang(self) -> None:
        """Drop every relayed connection; accept new ones but never answer them."""
        with self._lock:
            self._hanging = True
            sockets, self._open = self._open, set()
        for sock in sockets:
            _close(sock)

    def restore(self) -> None:
        """Accept and relay connections again, on the same port."""
        with self._lock:
            self._hanging = False
            listening = self._listener is not None
        if not listening:
            self.start()

    def close(self) -> None:
        """Stop for good (cut, and never listen again)."""
        self._stopped = True
        self.cut()

    def __enter__(self) -> TcpProxy:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    @property
    def is_cut(self) -> bool:
        """True while new connections are refused."""
        with self._lock:
            return self._listener is None

    # --- relaying ---------------------------------------------------------------------------

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # the listener was closed by cut()
            with self._lock:
                if self._hanging:  # hold it open, silent, until cut or restore
                    self._open.add(client)
                    continue
            try:
                upstream = socket.create_connection(self.target, timeout=5)
                upstream.settimeout(None)
            except OSError:
                _close(client)
                continue
            for sock in (client, upstream):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self._lock:
                if self._listener is not listener:  # cut meanwhile
                    _close(client)
                    _close(upstream)
                    return
                self._open.update((client, upstream))
                self.connections += 1
            threading.Thread(target=self._pump, args=(client, upstream), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while True:
                data = source.recv(_CHUNK)
                if not data:
                    break
                sink.sendall(data)
        except OSError:
            pass
        finally:
            with self._lock:
                self._open.discard(source)
                self._open.discard(sink)
            _close(source)
            _close(sink)


def _close(sock: socket.socket) -> None:
    """Shut both directions (the peer sees the close at once), then release the socket."""
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    with contextlib.suppress(OSError):
        sock.close()


class DatabaseOutage:
    """An outage of the test database, on either engine the suite runs on.

    PostgreSQL: ``url`` goes through a :class:`TcpProxy`; :meth:`cut` drops its
    connections and refuses new ones. SQLite: the database file lives in a directory of
    its own; :meth:`cut` moves that directory away (a new connection then fails with
    "unable to open database file") and closes the pooled connections of the
    ``engines`` given, which would otherwise keep the moved file open.
    """

    def __init__(self, url: str, proxy: TcpProxy | None = None, directory: Path | None = None):
        self.url = url
        self.proxy = proxy
        self.directory = directory

    def cut(self, *engines: Engine) -> None:
        """Make the database unreachable."""
        if self.proxy is not None:
            self.proxy.cut()
            return
        assert self.directory is not None
        for engine in engines:
            engine.dispose()
        self.directory.rename(self.directory.with_name(self.directory.name + "-away"))

    def restore(self) -> None:
        """Make the database reachable again."""
        if self.proxy is not None:
            self.proxy.restore()
            return
        assert self.directory is not None
        self.directory.with_name(self.directory.name + "-away").rename(self.directory)

    def close(self) -> None:
        """Stop the proxy, if any."""
        if self.proxy is not None:
            self.proxy.close()


@contextlib.contextmanager
def database_outage(
    db_engine_name: str, database_url: str, tmp_path: Path
) -> Iterator[DatabaseOutage]:
    """A :class:`DatabaseOutage` for this run's engine, on a database with the schema.

    ``database_url`` is the suite's database for PostgreSQL (reached through a proxy);
    SQLite gets a new file in ``tmp_path``.
    """
    if db_engine_name == "postgresql":
        url = make_url(database_url)
        proxy = TcpProxy(url.host or "127.0.0.1", url.port or 5432).start()
        outage = DatabaseOutage(
            url.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False),
            proxy=proxy,
        )
    else:
        directory = tmp_path / "database"
        directory.mkdir()
        sqlite_url = f"sqlite:///{directory / 'outage.sqlite3'}"
        engine = create_engine(sqlite_url)
        SQLModel.metadata.create_all(engine)
        engine.dispose()
        outage = DatabaseOutage(sqlite_url, directory=directory)
    try:
        yield outage
    finally:
        outage.close()
