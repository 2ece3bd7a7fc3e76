"""The secured city's folder (`var/secure` by default): generated passwords, keys and broker files.

Everything secret is written with mode 0600 inside folders of mode 0700, atomically (a temporary file in
the same folder, then a rename), so a reader never sees half a key. Layout:

    ca/ca.pem ca/ca.key                         the local certificate authority
    tls/kafka.pem                               the Kafka brokers' key + certificate chain (PEM keystore)
    tls/mosquitto.crt tls/mosquitto.key         Mosquitto's certificate and key
    passwords/<principal>                       one password per principal, no line break
    mosquitto/passwd mosquitto/acl              Mosquitto's password file (hashed) and ACL file
    kafka/admin.properties                      client properties of the admin principal, for Java tools
"""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path
from typing import Final

from pydantic import SecretStr

from schemas.credentials import read_password_file

PASSWORD_BYTES: Final = 32
"""Random bytes per generated password (URL-safe base64, 43 characters)."""


class Vault:
    """The secured city's folder; see the module docstring."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def path(self, *parts: str) -> Path:
        return self.root.joinpath(*parts)

    @property
    def ca_cert(self) -> Path:
        return self.path("ca", "ca.pem")

    @property
    def ca_key(self) -> Path:
        return self.path("ca", "ca.key")

    def password_file(self, principal: str) -> Path:
        return self.path("passwords", principal)

    def password(self, principal: str) -> SecretStr:
        """The stored password of `principal`; raises ValueError when there is none."""
        return read_password_file(self.password_file(principal))

    def ensure_password(self, principal: str) -> bool:
        """Generate a password for `principal` unless it has one; True when a new one was made."""
        if self.password_file(principal).exists():
            return False
        self.new_password(principal)
        return True

    def new_password(self, principal: str) -> SecretStr:
        """Generate and store a fresh password for `principal` (rotation); returns it."""
        secret = secrets.token_urlsafe(PASSWORD_BYTES)
        # No line break: Kafka's DirectoryConfigProvider (docker-compose.yml) takes the file's bytes as they are.
        self.write(self.password_file(principal), secret, secret=True)
        return SecretStr(secret)

    def write(self, path: Path, text: str | bytes, *, secret: bool) -> None:
        """Write `path` atomically; mode 0600 when `secret`, else 0644; its folder is made 0700."""
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(path.parent, 0o700)
        data = text.encode() if isinstance(text, str) else text
        tmp = path.with_name(f".{path.name}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600 if secret else 0o644)
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(data)
                out.flush()
                os.fsync(out.fileno())
            os.chmod(tmp, 0o600 if secret else 0o644)
            os.replace(tmp, path)
        finally:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
