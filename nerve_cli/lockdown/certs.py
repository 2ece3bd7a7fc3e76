"""A local certificate authority and the brokers' certificates, for running a secured city on one's own
machines (a real deployment uses the city's PKI: put its files at the same paths).

RSA 2048 keys (every client library and both brokers take them), SHA-256 signatures, SANs from the
inventory's `hosts`; keys are PKCS#8 PEM without a passphrase, which Kafka's PEM keystore accepts.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from typing import Final

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from nerve_cli.lockdown.vault import Vault

CA_DAYS: Final = 3650
LEAF_DAYS: Final = 825
"""Validity of a broker certificate, days (the longest most TLS clients accept)."""


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Nerve"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _pem_key(key: rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def ensure_ca(vault: Vault) -> bool:
    """Create the CA unless the vault has one; True when a new one was made."""
    if vault.ca_cert.exists() and vault.ca_key.exists():
        return False
    key = _key()
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name("Nerve local CA"))
        .issuer_name(_name("Nerve local CA"))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=CA_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    vault.write(vault.ca_key, _pem_key(key), secret=True)
    vault.write(vault.ca_cert, cert.public_bytes(serialization.Encoding.PEM), secret=False)
    return True


def issue(vault: Vault, common_name: str, hosts: list[str]) -> tuple[bytes, bytes]:
    """A new key and certificate for `common_name`, valid for `hosts` (DNS names or IP addresses), signed
    by the vault's CA, for servers and clients (the Kafka broker also presents it to its controllers).
    Returns (key PEM, certificate PEM)."""
    ca_key = serialization.load_pem_private_key(vault.ca_key.read_bytes(), password=None)
    if not isinstance(ca_key, rsa.RSAPrivateKey):
        raise ValueError(f"{vault.ca_key}: not an RSA key")
    ca_cert = x509.load_pem_x509_certificate(vault.ca_cert.read_bytes())
    names: list[x509.GeneralName] = []
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    key = _key()
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=LEAF_DAYS))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
            critical=False,
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    return _pem_key(key), cert.public_bytes(serialization.Encoding.PEM)


def ensure_broker_certs(vault: Vault, hosts: list[str], *, renew: bool = False) -> list[str]:
    """The Kafka PEM keystore (`tls/kafka.pem`: key + certificate + CA) and Mosquitto's certificate and key,
    unless present (or `renew`); returns the files written."""
    written: list[str] = []
    kafka = vault.path("tls", "kafka.pem")
    if renew or not kafka.exists():
        key, cert = issue(vault, "kafka-broker", hosts)
        vault.write(kafka, key + cert + vault.ca_cert.read_bytes(), secret=True)
        written.append(str(kafka))
    crt, key_file = vault.path("tls", "mosquitto.crt"), vault.path("tls", "mosquitto.key")
    if renew or not (crt.exists() and key_file.exists()):
        key, cert = issue(vault, "mosquitto", hosts)
        vault.write(key_file, key, secret=True)
        vault.write(crt, cert, secret=False)
        written += [str(crt), str(key_file)]
    return written
