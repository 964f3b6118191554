"""The results store: an embedded SQLite database of sessions (one per ``run`` / ``compare`` grid) and
their results, kept like pytest-benchmark's ``.benchmarks`` in the working directory by default.

Each result is stored as its JSON record (``Result.to_dict``), with the axes beside it in columns for
queries. Every write is its own short ``BEGIN IMMEDIATE`` transaction in WAL mode, so a result is on
disk the moment its cell ends, and two cnnbench processes writing to one database wait for each other
(up to ``BUSY_TIMEOUT_S``) instead of losing anything.

The database carries its schema version in ``meta``; opening an older database migrates it one
version at a time, in one transaction, so a failed migration leaves it as it was.
"""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import sys
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Iterator

from cnnbench.config import StoreError, UsageError
from cnnbench.plural import count
from cnnbench.results.record import Result

#: Where results go when neither ``--db`` nor ``CNNBENCH_DB`` says otherwise (relative to the cwd).
DEFAULT_DB = os.path.join(".cnnbench", "results.sqlite")
#: How long a write waits for another process holding the database before giving up.
BUSY_TIMEOUT_S = 30.0

#: The schema, one script per version: MIGRATIONS[k] turns version k into version k + 1.
MIGRATIONS: tuple[str, ...] = (
    # 0 -> 1: sessions and their results
    """
    CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
    CREATE TABLE sessions (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        started TEXT NOT NULL,
        finished TEXT,
        command TEXT NOT NULL,
        argv TEXT NOT NULL,
        state TEXT NOT NULL,
        cells_planned INTEGER NOT NULL,
        hostname TEXT,
        pid INTEGER,
        cnnbench_version TEXT,
        settings TEXT NOT NULL DEFAULT '{}'
    );
    CREATE TABLE results (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        session_id INTEGER NOT NULL REFERENCES sessions(id),
        position INTEGER NOT NULL,
        stored TEXT NOT NULL,
        framework TEXT NOT NULL,
        network TEXT NOT NULL,
        batch_size INTEGER NOT NULL,
        device TEXT NOT NULL,
        precision TEXT NOT NULL,
        kernels TEXT NOT NULL,
        threads INTEGER,
        status TEXT NOT NULL,
        record TEXT NOT NULL
    );
    CREATE INDEX results_session ON results(session_id, position);
    """,
    # 1 -> 2: the planned cells (configs and network specs), so an interrupted grid can be resumed
    """
    ALTER TABLE sessions ADD COLUMN plan TEXT;
    ALTER TABLE sessions ADD COLUMN resumed INTEGER NOT NULL DEFAULT 0;
    CREATE UNIQUE INDEX results_cell ON results(session_id, position);
    """,
)
SCHEMA_VERSION = len(MIGRATIONS)
#: What a Session is read from (not the plan, which holds a network spec per cell).
_SESSION_COLUMNS = ("id, started, finished, command, argv, state, cells_planned, hostname, pid, cnnbench_version, "
                    "settings, resumed")
#: Session states; a "running" session whose process is gone is shown as "ended abruptly".
STATES = ("running", "complete", "interrupted")
#: (database, session id) of the sessions this process is running: begun or claimed and not yet ended.
_RUNNING_HERE: set[tuple[str, int]] = set()



def default_path() -> str:
    return os.environ.get("CNNBENCH_DB") or DEFAULT_DB


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


@dataclass
class Session:
    id: int
    started: str
    finished: str | None
    command: str
    argv: list[str]
    state: str
    cells_planned: int
    hostname: str | None
    pid: int | None
    cnnbench_version: str | None
    settings: dict[str, Any] = field(default_factory=dict)
    #: How many times the session was resumed (``compare --resume``).
    resumed: int = 0
    cells_stored: int = 0
    statuses: dict[str, int] = field(default_factory=dict)
    #: The frameworks and networks of the plan, in grid order (of the stored cells for a run without a plan).
    frameworks: list[str] = field(default_factory=list)
    networks: list[str] = field(default_factory=list)
    #: Whether this process is running the session (read only where ``pid`` is this process's).
    _running_here: bool = field(default=False, repr=False, compare=False)

    @property
    def shown_state(self) -> str:
        """The state, except that a "running" session whose process is gone, or that this process began
        and has stopped running (its end could not be written: a full disk), ended abruptly."""
        if self.state == "running" and self.hostname == socket.gethostname() and self.pid:
            running = self._running_here if self.pid == os.getpid() else _alive(self.pid)
            if not running:
                return "ended abruptly"
        return self.state

    def command_line(self) -> str:
        import shlex

        return "cnnbench " + " ".join(shlex.quote(a) for a in self.argv)

    def to_dict(self) -> dict[str, Any]:
        from dataclasses import asdict

        record = {**asdict(self), "state": self.shown_state}
        del record["_running_here"]
        return record


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _explain(path: str, exc: sqlite3.Error) -> StoreError:
    text = str(exc)
    if "locked" in text or "busy" in text:
        why = f"it is locked by another process (waited {BUSY_TIMEOUT_S:g} s)"
    elif "full" in text:
        why = "the disk is full"
    elif "not a database" in text or "malformed" in text:
        why = "it is not a cnnbench results database (or it is damaged)"
    elif "readonly" in text or "unable to open" in text:
        why = f"it cannot be written here ({text})"
    else:
        why = text
    return StoreError(f"results database {path}: {why}")


class Store:
    """One open results database. Use as a context manager, or call ``close()``."""

    def __init__(self, path: str | os.PathLike | None = None, create: bool = True):
        self.path = str(path or default_path())
        self._key = os.path.realpath(self.path)
        if os.path.isdir(self.path):
            raise StoreError(f"results database {self.path}: is a directory; give a file path to --db")
        if not os.path.exists(self.path):
            if not create:
                raise StoreError(f"results database {self.path}: does not exist; runs are stored there by "
                                 "'cnnbench run' and 'cnnbench compare' (or give --db PATH)")
            parent = os.path.dirname(os.path.abspath(self.path))
            try:
                os.makedirs(parent, exist_ok=True)
            except OSError as exc:
                raise StoreError(f"results database {self.path}: cannot create its folder: {exc.strerror}") from None
        try:
            # Autocommit mode: every transaction below is explicit and short.
            self.db = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None)
        except sqlite3.Error as exc:
            raise _explain(self.path, exc) from None
        try:
            self.db.row_factory = sqlite3.Row
            self._migrate()
        except sqlite3.Error as exc:
            self.db.close()
            raise _explain(self.path, exc) from None
        except BaseException:
            self.db.close()
            raise

    # -- plumbing -----------------------------------------------------------------------------------

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        try:
            self.db.execute("BEGIN IMMEDIATE")
            try:
                yield self.db
            except BaseException:
                # SQLite may have rolled back already (a full disk, an I/O error): a second ROLLBACK
                # would raise and hide the real error
                if self.db.in_transaction:
                    self.db.execute("ROLLBACK")
                raise
            self.db.execute("COMMIT")
        except sqlite3.Error as exc:
            if self.db.in_transaction:
                self.db.execute("ROLLBACK")
            raise _explain(self.path, exc) from None

    def _version(self) -> int:
        has_meta = self.db.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name='meta'").fetchone()
        if not has_meta:
            tables = self.db.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
            if tables:
                raise StoreError(f"results database {self.path}: it is a SQLite database, but not cnnbench's")
            return 0
        row = self.db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
        return int(row[0]) if row else 0

    def _migrate(self) -> None:
        if self._version() == SCHEMA_VERSION:
            return
        # WAL lets readers go on while one process writes; the mode is kept in the file. Switching needs
        # the database to itself for a moment, and SQLite may answer "locked" at once rather than wait
        # while another process creates or migrates the same database: retry for as long as a write would.
        import time

        deadline = time.monotonic() + BUSY_TIMEOUT_S
        while True:
            try:
                self.db.execute("PRAGMA journal_mode=WAL")
                break
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        with self._write() as db:
            version = self._version()  # again, under the lock: another process may have migrated
            if version > SCHEMA_VERSION:
                raise StoreError(f"results database {self.path}: schema version {version} is newer than this "
                                 f"cnnbench reads ({SCHEMA_VERSION}); upgrade cnnbench")
            for script in MIGRATIONS[version:]:
                for statement in script.split(";"):
                    if statement.strip():
                        db.execute(statement)
            db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))

    def _read(self, sql: str, params: tuple = ()) -> list[sqlite3.Row]:
        try:
            return self.db.execute(sql, params).fetchall()
        except sqlite3.Error as exc:
            raise _explain(self.path, exc) from None

    # -- writing ------------------------------------------------------------------------------------

    def begin_session(self, command: str, argv: list[str], plan: list[dict[str, Any]],
                      settings: dict[str, Any] | None = None) -> int:
        """A new session of ``plan`` (one JSON-able dict per cell, in grid order); returns its id."""
        import cnnbench

        with self._write() as db:
            cursor = db.execute(
                "INSERT INTO sessions (started, command, argv, state, cells_planned, hostname, pid, "
                "cnnbench_version, settings, plan) VALUES (?, ?, ?, 'running', ?, ?, ?, ?, ?, ?)",
                (now(), command, json.dumps(argv), len(plan), socket.gethostname(), os.getpid(),
                 cnnbench.__version__, json.dumps(settings or {}, default=str), json.dumps(plan)),
            )
            session_id = int(cursor.lastrowid)
        _RUNNING_HERE.add((self._key, session_id))
        return session_id

    def claim_session(self, session_id: int) -> None:
        """Mark a session running again, in this process: checked and claimed in one transaction, so two
        processes resuming one run cannot both run its missing cells."""
        with self._write() as db:
            row = db.execute(f"SELECT {_SESSION_COLUMNS} FROM sessions WHERE id = ?", (session_id,)).fetchone()
            session = self._session(row)
            if session.shown_state == "running":
                raise UsageError(f"run {session_id} is running in process {session.pid} on {session.hostname}; "
                                 "resume it once that process has ended")
            db.execute("UPDATE sessions SET state = 'running', finished = NULL, pid = ?, hostname = ?, "
                       "resumed = resumed + 1 WHERE id = ?", (os.getpid(), socket.gethostname(), session_id))
        _RUNNING_HERE.add((self._key, session_id))

    def plan(self, session_id: int) -> list[dict[str, Any]] | None:
        """The planned cells of a session; None for sessions stored before plans were kept (schema 1)."""
        row = self._read("SELECT plan FROM sessions WHERE id = ?", (session_id,))
        return json.loads(row[0]["plan"]) if row and row[0]["plan"] else None

    def add_result(self, session_id: int, position: int, result: Result) -> None:
        record = json.dumps(result.to_dict(), default=str)
        with self._write() as db:
            db.execute(
                "INSERT INTO results (session_id, position, stored, framework, network, batch_size, device, "
                "precision, kernels, threads, status, record) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (session_id, position, now(), result.framework, result.network, result.batch_size, result.device,
                 result.precision, result.kernels, result.threads, result.status, record),
            )

    def end_session(self, session_id: int, state: str) -> None:
        try:
            with self._write() as db:
                db.execute("UPDATE sessions SET state = ?, finished = ? WHERE id = ?", (state, now(), session_id))
        finally:
            _RUNNING_HERE.discard((self._key, session_id))

    # -- reading ------------------------------------------------------------------------------------

    def sessions(self, limit: int | None = None) -> list[Session]:
        """The sessions, newest first."""
        sql = f"SELECT {_SESSION_COLUMNS} FROM sessions ORDER BY id DESC" + (" LIMIT ?" if limit else "")
        rows = self._read(sql, (limit,) if limit else ())
        return [self._session(row) for row in rows]

    def _session(self, row: sqlite3.Row) -> Session:
        session = Session(
            id=row["id"], started=row["started"], finished=row["finished"], command=row["command"],
            argv=json.loads(row["argv"]), state=row["state"], cells_planned=row["cells_planned"],
            hostname=row["hostname"], pid=row["pid"], cnnbench_version=row["cnnbench_version"],
            settings=json.loads(row["settings"] or "{}"), resumed=row["resumed"],
            _running_here=(self._key, row["id"]) in _RUNNING_HERE,
        )
        for r in self._read("SELECT status, count(*) AS n FROM results WHERE session_id = ? GROUP BY status",
                            (session.id,)):
            session.statuses[r["status"]] = r["n"]
        session.cells_stored = sum(session.statuses.values())
        for column, target in (("framework", session.frameworks), ("network", session.networks)):
            target.extend(self._planned(session.id, column) or [r[0] for r in self._read(
                f"SELECT {column} FROM results WHERE session_id = ? GROUP BY {column} ORDER BY min(position)",
                (session.id,))])
        return session

    def _planned(self, session_id: int, column: str) -> list[str]:
        """The frameworks or networks of a session's plan, in grid order: what it set out to measure, not
        only what finished (an interrupted run's history line names every framework it planned). []
        for a session stored before plans were, or an SQLite without JSON functions."""
        try:
            rows = self.db.execute(
                f"SELECT json_extract(cell.value, '$.config.{column}') AS name FROM sessions, "
                "json_each(sessions.plan) AS cell WHERE sessions.id = ? AND name IS NOT NULL "
                "GROUP BY name ORDER BY min(CAST(cell.key AS INTEGER))", (session_id,)).fetchall()
        except sqlite3.OperationalError:
            return []
        return [r[0] for r in rows]

    def resolve(self, ref: str) -> Session:
        """A session by reference: its id, ``latest`` (or ``last``), or ``-K`` (the K-th newest)."""
        text = str(ref).strip()
        ids = [r[0] for r in self._read("SELECT id FROM sessions ORDER BY id DESC")]
        if not ids:
            raise UsageError(f"no runs stored in {self.path} yet; 'cnnbench run' and 'cnnbench compare' store them")
        valid = f"valid choices: a run id ({_ranges(sorted(ids))}), latest, or -K for the K-th newest"
        if text in ("latest", "last"):
            session_id = ids[0]
        elif text.startswith("-") and text[1:].isdigit() and int(text[1:]) >= 1:
            back = int(text[1:])
            if back > len(ids):
                raise UsageError(f"run '{text}': only {count(len(ids), 'run')} {'is' if len(ids) == 1 else 'are'} stored in {self.path}; {valid}")
            session_id = ids[back - 1]
        elif text.isdigit() and int(text) in ids:
            session_id = int(text)
        else:
            raise UsageError(f"no run '{text}' in {self.path}; {valid}")
        return self._session(self._read(f"SELECT {_SESSION_COLUMNS} FROM sessions WHERE id = ?", (session_id,))[0])

    def results(self, session_id: int) -> list[tuple[int, Result]]:
        """(position, Result) of a session's stored cells, in grid order; older records are migrated."""
        rows = self._read("SELECT position, record FROM results WHERE session_id = ? ORDER BY position, id",
                          (session_id,))
        return [(row["position"], Result.from_dict(json.loads(row["record"]))) for row in rows]

    def find(self, framework: str, network: str, status: str = "ok") -> list[tuple[int, Result]]:
        """(session id, Result) of every stored cell of ``framework`` on ``network`` with ``status``, oldest first."""
        rows = self._read("SELECT session_id, record FROM results WHERE framework = ? AND network = ? AND status = ? "
                          "ORDER BY id", (framework, network, status))
        return [(row["session_id"], Result.from_dict(json.loads(row["record"]))) for row in rows]

    def names(self) -> tuple[list[str], list[str]]:
        """The frameworks and the networks that have stored cells (for error messages)."""
        return ([r[0] for r in self._read("SELECT DISTINCT framework FROM results ORDER BY 1")],
                [r[0] for r in self._read("SELECT DISTINCT network FROM results ORDER BY 1")])


def _ranges(ids: list[int]) -> str:
    """``[1, 2, 3, 7]`` -> ``"1-3, 7"``."""
    parts: list[str] = []
    start = prev = ids[0]
    for i in ids[1:] + [None]:  # type: ignore[list-item]
        if i is not None and i == prev + 1:
            prev = i
            continue
        parts.append(str(start) if start == prev else f"{start}-{prev}")
        if i is not None:
            start = prev = i
    return ", ".join(parts)


def warn(text: str) -> None:
    print(f"cnnbench: {text}", file=sys.stderr, flush=True)
