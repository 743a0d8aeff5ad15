"""TLS 1.3 under the node handshake: confidentiality, bound to the member keys.

Each transport makes an ephemeral self-signed certificate (ECDSA P-256, ``cryptography``)
and serves TLS 1.3 with it (Python's ``ssl``). Nobody checks that certificate against a
CA; instead the node handshake that runs inside the TLS channel signs it: both sides fold
the SHA-256 of the listener's certificate (RFC 5929 ``tls-server-end-point``) into the
network digest their ``Auth`` signatures and session id are computed over. A machine in
the middle has to present its own certificate to the dialer, so the two sides sign
different digests and each refuses the other's ``Auth``: the channel is pinned to the
member keys of the genesis file, without a certificate authority.

Envelopes stay signed inside the channel (the ledger and the replay rules need
per-message signatures anyway); TLS adds confidentiality and 22 bytes per record.
"""

from __future__ import annotations

import datetime
import hashlib
import ssl
import tempfile
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

_BINDING = b"fedledger/net/tls-server-end-point/v1\x00"


@dataclass(frozen=True)
class TlsContexts:
    """A transport's TLS contexts and the DER bytes of its listening certificate."""

    server: ssl.SSLContext
    client: ssl.SSLContext
    certificate: bytes

    @property
    def own_binding(self) -> bytes:
        return end_point(self.certificate)


def end_point(certificate_der: bytes) -> bytes:
    """The channel binding of a listener's certificate."""
    return hashlib.sha256(_BINDING + certificate_der).digest()


def bound_network(network: bytes, binding: bytes) -> bytes:
    """The digest both sides sign in the handshake: the network's, bound to the channel
    (``binding`` empty: no TLS, the network digest itself)."""
    if not binding:
        return network
    return hashlib.sha256(_BINDING + network + binding).digest()


def peer_binding(writer: object) -> bytes:
    """The binding of the certificate the listener at the other end of ``writer`` showed."""
    obj = writer.get_extra_info("ssl_object")  # type: ignore[attr-defined]
    der = obj.getpeercert(binary_form=True) if obj is not None else None
    if not der:
        raise ssl.SSLError("the listener showed no certificate")
    return end_point(der)


def make_tls() -> TlsContexts:
    """Fresh TLS 1.3 contexts with an ephemeral certificate (valid for ten years)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "fedledger node")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=3650))
        .sign(key, hashes.SHA256())
    )
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.minimum_version = ssl.TLSVersion.TLSv1_3
    with tempfile.TemporaryDirectory() as tmp:
        cert_file, key_file = Path(tmp) / "cert.pem", Path(tmp) / "key.pem"
        cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        key_file.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        key_file.chmod(0o600)
        server.load_cert_chain(cert_file, key_file)
    client = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    client.minimum_version = ssl.TLSVersion.TLSv1_3
    client.check_hostname = False  # the handshake inside pins the peer (module docstring)
    client.verify_mode = ssl.CERT_NONE
    return TlsContexts(server, client, cert.public_bytes(serialization.Encoding.DER))
