"""DKIM signatures (RFC 6376) on finished messages, for operators whose relay does not sign.

Off unless DKIM_SELECTOR is set. Every message papermail sends (digests, confirm and manage
mails) passes through `sign_message` once its bytes are final, just before it becomes an
`OutgoingMail`. The signature covers the headers a receiver judges a newsletter by, including
List-Unsubscribe and List-Unsubscribe-Post: RFC 8058 one-click unsubscribe counts only when a
valid DKIM signature covers both. A header a message lacks (List-Id in a confirmation) is still
named in h=, so nobody can add it later without breaking the signature. Canonicalization is
relaxed/relaxed and there is no l= (a body length would let anyone append to the body).

The key is read and checked once per process (settings refuse a missing or weak one at
start-up, see `Settings`), then cached.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from email.utils import parseaddr
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import dkim as dkimpy
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

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

    @property
    def txt_record(self) -> str:
        """The TXT value to publish at `<selector>._domainkey.<domain>`."""
        return f"v=DKIM1; k={self.key_type}; p={self.public}"


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
        private = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
        public = key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        return SigningKey(b"rsa-sha256", private, "rsa", base64.b64encode(public).decode())
    if isinstance(key, ed25519.Ed25519PrivateKey):
        seed = key.private_bytes(
            serialization.Encoding.Raw,
            serialization.PrivateFormat.Raw,
            serialization.NoEncryption(),
        )
        public = key.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
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


def sign(data: bytes, *, selector: str, domain: str, key: SigningKey) -> bytes:
    """`data` with a DKIM-Signature header in front (CRLF line ends in and out)."""
    header = dkimpy.sign(
        data,
        selector.encode("ascii"),
        domain.encode("ascii"),
        key.private,
        canonicalize=CANONICALIZATION,
        signature_algorithm=key.algorithm,
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
