"""WeCom callback crypto (WXBizMsgCrypt): signatures and AES-256-CBC envelopes.

The algorithm, exactly as wecom-reference.md §8 describes it: the AES key is the
base64-decoded 43-character EncodingAESKey, the IV its first 16 bytes, plaintext is
``random16 + len (4 bytes, big-endian) + message + receiveid`` padded PKCS#7-style to a
multiple of 32, and ``msg_signature = sha1(sorted([token, timestamp, nonce, encrypt]))``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import re
import struct
from dataclasses import dataclass

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

_KEY = re.compile(r"^[A-Za-z0-9]{43}$")
_BLOCK = 32


class CallbackCryptoError(Exception):
    """A callback failed verification or decryption.

    Attributes:
        code: The official library's error code (-40001 signature, -40005 receiveid, ...).
    """

    def __init__(self, code: int, message: str) -> None:
        self.code = code
        super().__init__(message)


def signature(token: str, timestamp: str, nonce: str, encrypted: str) -> str:
    """``hex(sha1(''.join(sorted([token, timestamp, nonce, encrypted]))))``."""
    return hashlib.sha1("".join(sorted([token, timestamp, nonce, encrypted])).encode()).hexdigest()  # noqa: S324


@dataclass(frozen=True)
class CallbackCrypto:
    """Signs, verifies, encrypts and decrypts callback payloads for one app.

    Args:
        token: The callback token.
        encoding_aes_key: The 43-character EncodingAESKey.
        receive_id: The corp id (internal apps), checked on every decrypted message.
    """

    token: str
    encoding_aes_key: str
    receive_id: str

    def __post_init__(self) -> None:
        if not _KEY.match(self.encoding_aes_key or ""):
            raise CallbackCryptoError(-40004, "EncodingAESKey must be exactly 43 letters and digits")

    @property
    def _key(self) -> bytes:
        return base64.b64decode(self.encoding_aes_key + "=")

    def verify(self, msg_signature: str, timestamp: str, nonce: str, encrypted: str) -> None:
        """Check a signature (constant-time).

        Raises:
            CallbackCryptoError: -40001 when it does not match.
        """
        expected = signature(self.token, timestamp, nonce, encrypted)
        if not hmac.compare_digest(expected.encode(), (msg_signature or "").lower().encode()):
            raise CallbackCryptoError(-40001, "callback signature does not match")

    def decrypt(self, encrypted: str) -> bytes:
        """Decrypt an ``Encrypt`` value (or echostr) and check its receiveid.

        Raises:
            CallbackCryptoError: Bad base64 (-40010), bad cipher text or layout (-40007),
                or a receiveid other than ours (-40005).
        """
        try:
            raw = base64.b64decode(encrypted, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise CallbackCryptoError(-40010, "callback payload is not base64") from exc
        if not raw or len(raw) % 16:
            raise CallbackCryptoError(-40007, "callback payload is not a whole number of AES blocks")
        key = self._key
        decryptor = Cipher(algorithms.AES(key), modes.CBC(key[:16])).decryptor()
        plain = decryptor.update(raw) + decryptor.finalize()
        pad = plain[-1]
        if not 1 <= pad <= _BLOCK or len(plain) < 20 + pad:
            raise CallbackCryptoError(-40007, "callback payload has invalid padding")
        body = plain[16 : len(plain) - pad]  # never decode the random prefix: it is binary
        (length,) = struct.unpack(">I", body[:4])
        if length > len(body) - 4:
            raise CallbackCryptoError(-40008, "callback payload length is inconsistent")
        message, receive_id = body[4 : 4 + length], body[4 + length :]
        if receive_id.decode(errors="replace") != self.receive_id:
            raise CallbackCryptoError(-40005, "callback is for another corp (receiveid mismatch)")
        return message

    def encrypt(self, message: bytes, *, random16: bytes | None = None) -> str:
        """Encrypt a message the way WeCom does (for passive replies and the fake's sender)."""
        prefix = random16 if random16 is not None else os.urandom(16)
        plain = prefix + struct.pack(">I", len(message)) + message + self.receive_id.encode()
        pad = _BLOCK - len(plain) % _BLOCK
        plain += bytes([pad]) * pad
        key = self._key
        encryptor = Cipher(algorithms.AES(key), modes.CBC(key[:16])).encryptor()
        return base64.b64encode(encryptor.update(plain) + encryptor.finalize()).decode()

    def open(self, msg_signature: str, timestamp: str, nonce: str, encrypted: str) -> bytes:
        """Verify then decrypt (the order WeCom's samples use)."""
        self.verify(msg_signature, timestamp, nonce, encrypted)
        return self.decrypt(encrypted)

    def seal(self, message: bytes, timestamp: str, nonce: str, *, random16: bytes | None = None) -> tuple[str, str]:
        """Encrypt and sign: returns ``(encrypt, msg_signature)``."""
        encrypted = self.encrypt(message, random16=random16)
        return encrypted, signature(self.token, timestamp, nonce, encrypted)
