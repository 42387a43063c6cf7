"""TLS credentials that follow their files: rotated certificates are served without a restart.

Short-lived certificates (SPIFFE SVIDs rotate hourly; cert-manager renews before expiry) are
rewritten in place by an agent. gRPC asks ``CertificateFiles.fetch`` before every new TLS
handshake; it compares the files' stat (cheap) with the last look, and when they changed,
reads and checks them (the chain and key parse, the key is the certificate's, the client CA
parses) before handing them to gRPC. Open connections keep the certificate they were made
with; health is not touched. Files that do not check out (half written, a key that belongs to
another certificate) are not served: the previous certificate stays, and the error is logged
once per change of the files.
"""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path

import grpc

log = logging.getLogger("pdp.server")


class CertificateFiles:
    """The server's certificate chain, key and (for mTLS) client CA, as files that may change."""

    def __init__(self, cert: Path, key: Path, client_ca: Path | None = None):
        self.cert, self.key, self.client_ca = Path(cert), Path(key), Path(client_ca) if client_ca else None
        self._lock = threading.Lock()
        self._seen = self._stat()
        self.initial = self._read()  # raises ValueError: a server does not start on bad files

    def credentials(self) -> grpc.ServerCredentials:
        return grpc.dynamic_ssl_server_credentials(self.initial, self.fetch,
                                                   require_client_authentication=self.client_ca is not None)

    def fetch(self) -> grpc.ServerCertificateConfiguration | None:
        """A new configuration when the files changed and check out; None (keep the current one)
        otherwise. Called by gRPC before each new handshake, from its threads."""
        with self._lock:
            try:
                seen = self._stat()
            except OSError as exc:  # a file is missing for a moment (an agent's replace)
                seen = ("missing", str(exc))
            if seen == self._seen:
                return None
            self._seen = seen
            try:
                config = self._read()
            except (OSError, ValueError) as err:
                log.error("TLS: the new certificate files are not served (%s); still serving the previous "
                          "certificate", err)
                return None
            return config

    def _stat(self) -> tuple:
        return tuple((s.st_dev, s.st_ino, s.st_size, s.st_mtime_ns)
                     for s in (os.stat(p) for p in (self.cert, self.key, self.client_ca) if p is not None))

    def _read(self) -> grpc.ServerCertificateConfiguration:
        from cryptography import x509
        from cryptography.hazmat.primitives import serialization

        cert_pem, key_pem = self.cert.read_bytes(), self.key.read_bytes()
        ca_pem = self.client_ca.read_bytes() if self.client_ca is not None else None
        try:
            chain = x509.load_pem_x509_certificates(cert_pem)
        except ValueError as exc:
            raise ValueError(f"{self.cert}: not a PEM certificate chain ({exc})") from None
        try:
            key = serialization.load_pem_private_key(key_pem, password=None)
        except Exception as exc:  # ValueError, TypeError (encrypted), UnsupportedAlgorithm
            raise ValueError(f"{self.key}: not an unencrypted PEM private key ({exc})") from None
        spki = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        if key.public_key().public_bytes(*spki) != chain[0].public_key().public_bytes(*spki):
            raise ValueError(f"{self.key} is not the key of the certificate in {self.cert}")
        if ca_pem is not None:
            try:
                x509.load_pem_x509_certificates(ca_pem)
            except ValueError as exc:
                raise ValueError(f"{self.client_ca}: not a PEM certificate bundle ({exc})") from None
        log.info("TLS: serving certificate %s (valid until %s)", chain[0].subject.rfc4514_string(),
                 chain[0].not_valid_after_utc.isoformat())
        return grpc.ssl_server_certificate_configuration([(key_pem, cert_pem)], root_certificates=ca_pem)
