"""Where a sweep sends work and results — a Ray cluster's address and an MLflow tracking URI: owns checking
them at planning, before anything is created; never starts Ray and never imports MLflow.

A Ray address is checked for its form (`auto`, HOST:PORT or ray://HOST:PORT), then reached with a plain TCP
connect bounded by `executor.connect_timeout_s` (DNS included): Ray's own `ray.init` retries an unreachable
address for minutes. What the TCP check does not detect: a port that answers but is not a Ray head (Ray
then fails or retries as before). A tracking URI is checked against the schemes MLflow's tracking store
registry accepts (http(s), databricks, uc, sqlite/postgresql/mysql/mssql with an optional +driver, the
file store, and store plugins installed as `mlflow.tracking_store` entry points); a sqlite file's folder
must already exist, so nothing is created for a typo.
"""

from __future__ import annotations

import errno
import os
import re
import socket
import threading
from pathlib import Path
from urllib.parse import urlsplit

from archbench.util.escape import visible

_LABEL = r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_HOSTNAME = re.compile(rf"(?=.{{1,253}}$){_LABEL}(\.{_LABEL})*")
_RAY_FORMS = "'auto', HOST:PORT (e.g. 10.0.0.1:6379) or ray://HOST:PORT"


def split_host_port(text: str) -> tuple[str, int] | None:
    """`host:port`, `[v6]:port` → (host, port); None when it is not that form."""
    m = re.fullmatch(r"\[([0-9A-Fa-f:.]+)\]:(\d{1,5})|([^:\[\]/\s]+):(\d{1,5})", text)
    if m is None:
        return None
    host, port = (m.group(1), m.group(2)) if m.group(1) else (m.group(3), m.group(4))
    if not 1 <= int(port) <= 65535:
        return None
    if not m.group(1) and not _HOSTNAME.fullmatch(host):
        return None
    return host, int(port)


def reach(host: str, port: int, timeout_s: float) -> str | None:
    """None when a TCP connection to host:port opens within `timeout_s`, else why not (one phrase)."""
    outcome: list[str | None] = []

    def attempt() -> None:
        try:
            socket.create_connection((host, port), timeout=timeout_s).close()
            outcome.append(None)
        except socket.gaierror as exc:
            outcome.append(f"the host name does not resolve ({exc.strerror})")
        except TimeoutError:
            outcome.append(f"no answer within {timeout_s:g}s")
        except OSError as exc:
            code = f"{errno.errorcode.get(exc.errno, exc.errno)}: " if exc.errno else ""
            outcome.append(f"{code}{exc.strerror or exc}")

    # A daemon thread bounds the name lookup too (getaddrinfo takes no timeout).
    worker = threading.Thread(target=attempt, daemon=True, name="archbench-reach")
    worker.start()
    worker.join(timeout_s + 1.0)
    return outcome[0] if outcome else f"no answer within {timeout_s:g}s"


def _auto_address() -> str | None:
    """What Ray's `address='auto'` joins: $RAY_ADDRESS, else the cluster `ray start` noted on this machine."""
    env = os.environ.get("RAY_ADDRESS", "").strip()
    if env and env != "auto":
        return env
    noted = Path("/tmp/ray/ray_current_cluster")
    try:
        text = noted.read_text(encoding="utf-8").strip()
    except OSError:
        return None
    return text or None


def ray_address_problems(address: str | None, timeout_s: float) -> list[str]:
    """One line when `executor.address` is malformed or nothing answers there within `timeout_s`."""
    if address is None:
        return []  # a local Ray is started, sized to this machine
    shown = visible(address)
    target = address
    if address == "auto":
        found = _auto_address()
        if found is None:
            return []  # Ray itself says there is no cluster (at once: nothing to wait for)
        target = found
    bare = target[len("ray://") :] if target.startswith("ray://") else target
    hp = split_host_port(bare)
    if hp is None:
        via = f" (auto found {visible(target)!r})" if target != address else ""
        return [f"executor.address {shown!r}{via}: expected {_RAY_FORMS}"]
    why = reach(*hp, timeout_s)
    if why is None:
        return []
    return [
        f"executor.address {shown!r}: no Ray cluster reachable at {hp[0]}:{hp[1]} ({why}; "
        f"executor.connect_timeout_s={timeout_s:g}); start one (`ray start --head`) or give the head's "
        "HOST:PORT"
    ]


_REST = ("http", "https")
_DATABRICKS = ("databricks", "databricks-uc", "uc")
_DATABASES = ("postgresql", "mysql", "sqlite", "mssql")
_ACCEPTED = "http(s)://HOST:PORT, sqlite:///PATH.db, postgresql://…, mysql://…, mssql://…, databricks"


def _plugin_schemes() -> set[str]:
    """Tracking-store schemes added by installed MLflow plugins (read from entry points, nothing imported)."""
    from importlib.metadata import entry_points

    return {ep.name for ep in entry_points(group="mlflow.tracking_store")}


def _sqlite_problem(uri: str, key: str, output_dir: Path | None = None) -> str | None:
    """A sqlite URI's database file: its folder must exist (MLflow would create it), or be inside the
    sweep's `output_dir` (archbench creates that before tracking starts), and it is no folder."""
    rest = uri.split("://", 1)[1]
    if rest in ("", "/") or rest.startswith("/:memory:"):
        return None  # an in-memory database
    path = Path(rest[1:].split("?", 1)[0]).expanduser()  # sqlite:///rel.db, sqlite:////abs.db
    if path.is_dir():
        return f"{key} {visible(uri)!r}: {visible(path)} is a folder; expected a database file (…/mlflow.db)"
    if output_dir is not None and path.parent.resolve().is_relative_to(Path(output_dir).resolve()):
        return None
    if not path.parent.is_dir():
        return (
            f"{key} {visible(uri)!r}: folder {visible(path.parent)} does not exist (nothing is created for a "
            "tracking URI); create it or fix the path"
        )
    return None


def _file_store_problem(uri: str, key: str) -> str | None:
    if os.environ.get("MLFLOW_ALLOW_FILE_STORE", "").strip().lower() not in ("1", "true", "yes"):
        return (
            f"{key} {visible(uri)!r} is a file store (a plain path or file:), which MLflow refuses unless "
            f"MLFLOW_ALLOW_FILE_STORE=true; give one of {_ACCEPTED}"
        )
    path = Path(urlsplit(uri).path if uri.startswith("file:") else uri).expanduser()
    if path.exists() and not path.is_dir():
        return f"{key} {visible(uri)!r}: {visible(path)} is a file; expected a folder for the file store"
    if not path.parent.is_dir():
        return (
            f"{key} {visible(uri)!r}: folder {visible(path.parent)} does not exist; create it or fix the path"
        )
    return None


def tracking_uri_problems(
    uri: str, key: str = "tracking.mlflow.uri", output_dir: Path | None = None
) -> list[str]:
    """One line when no MLflow tracking store accepts `uri`, or its local database has no folder (a sqlite
    file inside `output_dir`, which a run creates, is fine)."""
    if visible(uri) != uri or not uri.strip():
        return [f"{key} {visible(uri)!r}: not a URI (empty, or holds control characters)"]
    parts = urlsplit(uri)
    scheme = uri if uri in _DATABRICKS else parts.scheme.lower()  # bare `databricks`, as MLflow reads it
    if len(scheme) == 1:  # C:\… is a Windows path, as MLflow reads it
        scheme = ""
    engine = scheme.split("+", 1)[0] if scheme.count("+") <= 1 else scheme
    problem: str | None = None
    if scheme in ("", "file"):
        problem = _file_store_problem(uri, key)
    elif scheme in _REST:
        if not parts.hostname:
            problem = f"{key} {visible(uri)!r}: expected {scheme}://HOST[:PORT] of a tracking server"
    elif engine in _DATABASES:
        if engine == "sqlite":
            problem = _sqlite_problem(uri, key, output_dir)
        elif not parts.hostname:
            problem = f"{key} {visible(uri)!r}: expected {engine}://USER:PASSWORD@HOST[:PORT]/DATABASE"
    elif scheme not in _DATABRICKS and scheme not in _plugin_schemes():
        problem = (
            f"{key} {visible(uri)!r}: scheme '{visible(scheme)}' is not one MLflow accepts; give one of "
            f"{_ACCEPTED}"
        )
    return [problem] if problem else []


__all__ = ["ray_address_problems", "reach", "split_host_port", "tracking_uri_problems"]
