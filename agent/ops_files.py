"""Provisioning's file side: reading the current config and secrets, writing the new ones
atomically with their modes, and preparing the state directory and device identity.

Owns the on-disk promises: config 0640 and secrets 0600 (owned by the service user when run as
root, so the sandboxed agent can read them), each replaced in one rename so a power cut leaves
the old file or the new one, never half of one; the device identity is created once and kept.
"""

from __future__ import annotations

import os
import pwd
import tempfile
import uuid
from pathlib import Path
from typing import Any

from agent.config import ConfigError, ShopEdgeConfig
from agent.db import migrate, open_state_db
from agent.provisioning import SECRETS_NAME, Plan, ProvisionError
from agent.state import get_setting, put_setting
from base import config as base_config

__all__ = ["IDENTITY_KEY", "read_existing", "read_toml", "setup_state", "write_files"]

IDENTITY_KEY = "device_identity"
SERVICE_USER = "shopedge"


def read_toml(path: Path, what: str) -> dict[str, Any]:
    try:
        return base_config.read_toml(path, what)
    except ConfigError as exc:
        raise ProvisionError(exc.problems) from None


def read_existing(config_path: Path) -> dict[str, Any]:
    """The current config merged with its secrets file, as raw TOML data ({} on a new device)."""
    if not config_path.exists():
        return {}
    data = read_toml(config_path, "config file")
    name = data.get("secrets_file")
    if isinstance(name, str):
        secrets_path = config_path.parent / name
        if secrets_path.exists():
            for section, body in read_toml(secrets_path, "secrets file").items():
                if isinstance(body, dict):
                    data.setdefault(section, {}).update(body)
    return data


def _resolve_owner(owner: str | None) -> tuple[int, int] | None:
    """(uid, gid) of the service user, or None when not root / no such user (development)."""
    if os.geteuid() != 0:
        return None
    name = owner or SERVICE_USER
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        if owner is not None:
            raise ProvisionError(
                [f"--owner {owner}: no such user (deploy/install-pi.sh creates it)"]
            ) from None
        return None
    return entry.pw_uid, entry.pw_gid


def _atomic_write(
    path: Path, text: str, mode: int, owner: tuple[int, int] | None, *, group_only: bool
) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.fchmod(fd, mode)
        if owner is not None:
            # Config: root-owned, group-readable by the service; secrets: owned by the service.
            os.fchown(fd, 0 if group_only else owner[0], owner[1])
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def write_files(config_dir: Path, plan: Plan, *, owner: str | None) -> tuple[int, int] | None:
    """Write config.toml (0640) and secrets.toml (0600); returns the owner used."""
    ids = _resolve_owner(owner)
    config_dir.mkdir(mode=0o750, parents=True, exist_ok=True)
    if ids is not None:
        os.chown(config_dir, 0, ids[1])
    _atomic_write(config_dir / SECRETS_NAME, plan.secrets_text, 0o600, ids, group_only=False)
    _atomic_write(config_dir / "config.toml", plan.config_text, 0o640, ids, group_only=True)
    return ids


def setup_state(config: ShopEdgeConfig, *, owner: tuple[int, int] | None) -> tuple[str, bool]:
    """Create the state dir and DB (migrated); returns (device identity, whether it is new)."""
    state = config.storage.state_dir
    state.mkdir(mode=0o750, parents=True, exist_ok=True)
    db = open_state_db(config.db_path)
    try:
        migrate(db)
        identity = get_setting(db, IDENTITY_KEY)
        created = identity is None
        if identity is None:
            identity = str(uuid.uuid4())
            put_setting(db, IDENTITY_KEY, identity)
    finally:
        db.close()
    if owner is not None:
        for path in [state, *state.iterdir()]:
            os.chown(path, owner[0], owner[1])
    return identity, created
