"""How a Nerve process proves who it is to the brokers: TLS trust and credentials, as settings sections.

`KafkaAuth` and `MqttAuth` are mixed into the Kafka and MQTT sections of every process's config (edge,
brain, departments). A password comes from the config, the environment (`NERVE_EDGE_KAFKA__PASSWORD`, …)
or a file (`password_file`, read once at start); it is a `SecretStr`, so it never shows in a repr, a
validation message or a log line. `aiokafka_options` and `faust_credentials` turn a section into what
the client libraries take; `MqttAuth.apply` configures a paho client.
"""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Final, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, SecretStr, StringConstraints, model_validator
from pydantic_core import PydanticCustomError

if TYPE_CHECKING:
    import paho.mqtt.client as mqtt

KafkaProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
SaslMechanism = Literal["SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN"]
UserName = Annotated[str, StringConstraints(min_length=1, max_length=128)]

MAX_PASSWORD_FILE_BYTES: Final = 4096


def _problem(detail: str) -> PydanticCustomError:
    return PydanticCustomError("broker_auth", "{detail}", {"detail": detail})


def read_password_file(path: Path) -> SecretStr:
    """The password in `path` (its first line, without the line break); raises ValueError naming the file."""
    try:
        raw = path.read_bytes()[: MAX_PASSWORD_FILE_BYTES + 1]
    except OSError as exc:
        raise ValueError(f"cannot read password file {path}: {exc.strerror or exc}") from None
    if len(raw) > MAX_PASSWORD_FILE_BYTES:
        raise ValueError(f"password file {path} is larger than {MAX_PASSWORD_FILE_BYTES} bytes")
    text = raw.decode("utf-8", errors="strict").splitlines()
    if not text or not text[0]:
        raise ValueError(f"password file {path} is empty")
    return SecretStr(text[0])


def tls_context(ca_file: Path | None, *, check_hostname: bool = True) -> ssl.SSLContext:
    """A client TLS context trusting `ca_file` (PEM), or the system's CAs when None; TLS 1.2 at least."""
    context = ssl.create_default_context(cafile=str(ca_file) if ca_file is not None else None)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.check_hostname = check_hostname
    return context


class _Credentials(BaseModel):
    """A user name with a password given inline (env) or in a file; the file is read at validation."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    username: UserName | None = None
    password: SecretStr | None = None
    password_file: Path | None = Field(
        default=None, description="A file whose first line is the password (mode 0600); read at start."
    )

    @model_validator(mode="after")
    def _read_password(self) -> Self:
        if self.password_file is not None:
            if self.password is not None:
                raise _problem("give password or password_file, not both")
            try:
                secret = read_password_file(self.password_file)
            except (ValueError, UnicodeDecodeError) as exc:
                raise _problem(str(exc)) from None
            # Frozen: set the derived value through __dict__, as pydantic itself does during validation.
            self.__dict__["password"] = secret
        return self

    def secret(self) -> str | None:
        """The password in clear, for handing to a client library only."""
        return None if self.password is None else self.password.get_secret_value()


class KafkaAuth(_Credentials):
    """Kafka client security: PLAINTEXT by default; SASL_SSL with SCRAM-SHA-512 in a secured city."""

    security_protocol: KafkaProtocol = "PLAINTEXT"
    sasl_mechanism: SaslMechanism = "SCRAM-SHA-512"
    ca_file: Path | None = Field(
        default=None, description="PEM CA bundle that signed the brokers' certificates; None: system CAs."
    )

    @model_validator(mode="after")
    def _complete(self) -> Self:
        if self.security_protocol.startswith("SASL") and (self.username is None or self.password is None):
            raise _problem(f"security_protocol {self.security_protocol} needs username and password")
        return self

    @property
    def uses_tls(self) -> bool:
        return self.security_protocol in ("SSL", "SASL_SSL")

    def ssl_context(self) -> ssl.SSLContext | None:
        """The TLS context for SSL/SASL_SSL, None for plaintext protocols."""
        return tls_context(self.ca_file) if self.uses_tls else None


def aiokafka_options(auth: KafkaAuth) -> dict[str, Any]:
    """Keyword arguments for aiokafka's producers, consumers and admin client."""
    options: dict[str, Any] = {"security_protocol": auth.security_protocol}
    context = auth.ssl_context()
    if context is not None:
        options["ssl_context"] = context
    if auth.security_protocol.startswith("SASL"):
        options.update(
            sasl_mechanism=auth.sasl_mechanism,
            sasl_plain_username=auth.username,
            sasl_plain_password=auth.secret(),
        )
    return options


def faust_credentials(auth: KafkaAuth) -> Any:
    """`broker_credentials` for `faust.App`: None (plaintext), SSL or SASL credentials."""
    import faust

    if auth.security_protocol == "PLAINTEXT":
        return None
    if auth.security_protocol == "SSL":
        return faust.SSLCredentials(auth.ssl_context())
    # faust picks SASL_SSL when it gets a TLS context and SASL_PLAINTEXT otherwise.
    return faust.SASLCredentials(
        username=auth.username,
        password=auth.secret(),
        ssl_context=auth.ssl_context(),
        mechanism=auth.sasl_mechanism,
    )


class MqttAuth(_Credentials):
    """MQTT client security: TLS (with the CA that signed the broker's certificate) and a user."""

    tls: bool = Field(default=False, description="Connect with TLS (the broker's TLS listener).")
    ca_file: Path | None = Field(
        default=None, description="PEM CA bundle that signed the broker's certificate; None: system CAs."
    )

    def apply(self, client: mqtt.Client) -> None:
        """Set TLS and credentials on a paho client before it connects."""
        if self.tls:
            client.tls_set_context(tls_context(self.ca_file))
        if self.username is not None:
            client.username_pw_set(self.username, self.secret())


AUTH_PATH_KEYS: Final = ("ca_file", "password_file")


def resolve_auth_paths(section: Any, folder: Path) -> Any:
    """A settings file's broker section with relative `ca_file`/`password_file` made relative to `folder`."""
    if not isinstance(section, dict):
        return section
    out = dict(section)
    for key in AUTH_PATH_KEYS:
        if isinstance(out.get(key), str):
            out[key] = str((folder / out[key]).resolve())
    return out
