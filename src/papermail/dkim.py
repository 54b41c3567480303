"""DKIM signatures (RFC 6376) on finished messages, for operators whose relay does not sign.

Off unless DKIM_SELECTOR is set. Every message papermail sends (digests, confirm and manage
mails) passes through `sign_message` once its bytes are final, just before it becomes an
`OutgoingMail`. The signature covers the headers a receiver judges a newsletter by, including
List-Unsubscribe and List-Unsubscribe-Post: RFC 8058 one-click unsubscribe counts only when a
valid DKIM signature covers both. A header a message lacks (List-Id in a confirmation) is still
named in h=, so nobody can add it later without breaking the signature. Canonicalization is
relaxed/relaxed and there is no l= (a body length would let anyone append to the body).

The key is read and checked once per process (settings refuse a missing or weak one at
start-up, see `Settings`), then cached. dkimpy canonicalizes, hashes and builds the header; for
RSA keys the private-key operation is OpenSSL's (cryptography) instead of dkimpy's pure-Python
modular exponentiation, which took ~11 of its ~14 ms per message (`python -m bench.dkim_cost`).
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from email.utils import parseaddr
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import dkim as dkimpy
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, padding, rsa, utils

from papermail.errors import PapermailError

if TYPE_CHECKING:
    from papermail.settings import Settings

SIGNED_HEADERS = (
    b"from",
    b"to",
    b"subject",
    b"date",
    b"message-id",
    b"mime-version",
    b"content-type",
    b"list-id",
    b"list-unsubscribe",
    b"list-unsubscribe-post",
)
CANONICALIZATION = (b"relaxed", b"relaxed")
MIN_RSA_BITS = 2048


class DkimKeyError(PapermailError):
    """The configured DKIM private key cannot be used."""


@dataclass(frozen=True)
class SigningKey:
    """A checked private key in the form dkimpy takes, with the public half for DNS."""

    algorithm: bytes  # a= tag: b"rsa-sha256" or b"ed25519-sha256"
    private: bytes  # dkimpy's input: PKCS#1 PEM for RSA, the base64 seed for Ed25519
    key_type: Literal["rsa", "ed25519"]  # k= tag of the DNS record
    public: str  # p= tag: base64 of the public key as RFC 6376 / RFC 8463 publish it
    rsa_key: rsa.RSAPrivateKey | None = field(default=None, compare=False, repr=False)

    @property
    def txt_record(self) -> str:
        """The TXT value to publish at `<selector>._domainkey.<domain>`."""
        return f"v=DKIM1; k={self.key_type}; p={self.public}"


def _key_bytes(
    key: rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey,
    private: tuple[serialization.Encoding, serialization.PrivateFormat],
    public: tuple[serialization.Encoding, serialization.PublicFormat],
) -> tuple[bytes, bytes]:
    """The private key (unencrypted) and its public key, each in the encoding and format given."""
    return (
        key.private_bytes(*private, serialization.NoEncryption()),
        key.public_key().public_bytes(*public),
    )


def load_key(pem: bytes) -> SigningKey:
    """Parse a PEM private key (RSA of 2048 bits or more, or Ed25519); refuse anything else."""
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError) as exc:
        raise DkimKeyError(f"not an unencrypted PEM private key ({exc})") from None
    if isinstance(key, rsa.RSAPrivateKey):
        if key.key_size < MIN_RSA_BITS:
            raise DkimKeyError(
                f"an RSA key of {key.key_size} bits: receivers want {MIN_RSA_BITS} or more"
            )
        private, public = _key_bytes(
            key,
            (serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL),
            (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo),
        )
        return SigningKey(b"rsa-sha256", private, "rsa", base64.b64encode(public).decode(), key)
    if isinstance(key, ed25519.Ed25519PrivateKey):
        seed, public = _key_bytes(
            key,
            (serialization.Encoding.Raw, serialization.PrivateFormat.Raw),
            (serialization.Encoding.Raw, serialization.PublicFormat.Raw),
        )
        return SigningKey(
            b"ed25519-sha256", base64.b64encode(seed), "ed25519", base64.b64encode(public).decode()
        )
    raise DkimKeyError(f"a {type(key).__name__}: DKIM signs with RSA or Ed25519 keys")


@lru_cache(maxsize=8)
def read_key(path: str) -> SigningKey:
    """`load_key` of a file, once per process and path."""
    try:
        pem = Path(path).read_bytes()
    except OSError as exc:
        raise DkimKeyError(f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        return load_key(pem)
    except DkimKeyError as exc:
        raise DkimKeyError(f"{path} is {exc}") from None


def generate_key(kind: Literal["rsa", "ed25519"] = "rsa", bits: int = MIN_RSA_BITS) -> bytes:
    """A new private key as unencrypted PKCS#8 PEM (`papermail dkim keygen`)."""
    if kind == "ed25519":
        key: rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey = ed25519.Ed25519PrivateKey.generate()
    else:
        key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


@dataclass(frozen=True)
class _Signature:
    signature: bytes


@dataclass(frozen=True)
class _OpenSSLRSA:
    """Signs a SHA-256 digest with RSASSA-PKCS1-v1_5, the shape dkimpy's Ed25519 keys have."""

    key: rsa.RSAPrivateKey

    def sign(self, digest: bytes) -> _Signature:
        prehashed = utils.Prehashed(hashes.SHA256())
        return _Signature(self.key.sign(digest, padding.PKCS1v15(), prehashed))


class _Signer(dkimpy.DKIM):
    """dkimpy's DKIM whose RSA signature comes from OpenSSL. `gen_header` hashes the headers,
    then signs with `RSASSA_PKCS1_v1_5_sign` (pure Python) for rsa-sha256, or with
    `pk.sign(digest).signature` for ed25519-sha256 (same SHA-256 hasher): the RSA case is
    routed through the second branch with an OpenSSL key. The a= tag is already written by
    then; tests verify the result with dkimpy's own verifier."""

    rsa_key: rsa.RSAPrivateKey | None = None

    def gen_header(self, fields, include_headers, canon_policy, header_name, pk, *args):
        if self.rsa_key is None or self.signature_algorithm != b"rsa-sha256":
            return super().gen_header(fields, include_headers, canon_policy, header_name, pk, *args)
        self.signature_algorithm = b"ed25519-sha256"
        try:
            signer = _OpenSSLRSA(self.rsa_key)
            return super().gen_header(
                fields, include_headers, canon_policy, header_name, signer, *args
            )
        finally:
            self.signature_algorithm = b"rsa-sha256"


def sign(data: bytes, *, selector: str, domain: str, key: SigningKey) -> bytes:
    """`data` with a DKIM-Signature header in front (CRLF line ends in and out)."""
    signer = _Signer(data, signature_algorithm=key.algorithm)
    signer.rsa_key = key.rsa_key
    header = signer.sign(
        selector.encode("ascii"),
        domain.encode("ascii"),
        key.private,
        canonicalize=CANONICALIZATION,
        include_headers=list(SIGNED_HEADERS),
        length=False,
    )
    return header + data


def from_domain(settings: Settings) -> str:
    """The domain of the From address: DMARC aligns every check against it."""
    return parseaddr(settings.mail_from)[1].rpartition("@")[2].lower()


def signing_domain(settings: Settings) -> str:
    """d= of the signature: DKIM_DOMAIN, else the From domain (aligned for DMARC)."""
    return (settings.dkim_domain or from_domain(settings)).lower()


def configured_key(settings: Settings) -> SigningKey | None:
    """The key settings name, or None when signing is off."""
    if not settings.dkim_selector or settings.dkim_private_key_file is None:
        return None
    return read_key(str(settings.dkim_private_key_file))


def sign_message(settings: Settings, data: bytes) -> bytes:
    """The bytes to send: signed when DKIM_SELECTOR is set, else `data` as it is."""
    key = configured_key(settings)
    if key is None:
        return data
    return sign(data, selector=settings.dkim_selector, domain=signing_domain(settings), key=key)
