"""WXBizMsgCrypt against every official vector in wecom-reference.md §9.6."""

from __future__ import annotations

import re
from urllib.parse import parse_qs, urlparse

import pytest

from activities.wecom.crypto import CallbackCrypto, CallbackCryptoError, signature

A = CallbackCrypto(
    "hJqcu3uJ9Tn2gXPmxx2w9kkCkCE2EPYo", "6qkdMrq68nTKduznJYO1A37W2oEgpkMUvkttRToqhUt", "ww1436e0e65a779aee"
)
B = CallbackCrypto("123456", "kWxPEV2UEDyxWpmPdKC3F4dgPDmOvfKX1HGnEUDS1aR", "wx49f0ab532d5d035a")
C2 = CallbackCrypto("kz7Yx62CH8SaLN", "cD0d7jx4tYvVtzqrmh3Dm3QFCXe6f8SlHoMtMh3qQEP", "ww6a112864f8022910")

A2_ENCRYPT = (
    "Kl7kjoSf6DMD1zh7rtrHjFaDapSCkaOnwu3bqLc5tAybhhMl9pFeK8NslNPVdMwmBQTNoW4mY7AIjeLvEl3NyeTkAgGzBhzTtRLNshw2AEew"
    "+kkYcD+Fq72Kt00fT0WnN87hGrW8SqGc+NcT3mu87Ha3dz1pSDi6GaUA6A0sqfde0VJPQbZ9U+3JWcoD4Z5jaU0y9GSh010wsHF8KZD24Yhm"
    "ZH4ch4Ka7ilEbjbfvhKkNL65HHL0J6EYJIZUC2pFrdkJ7MhmEbU2qARR4iQHE7wy24qy0cRX3Mfp6iELcDNfSsPGjUQVDGxQDCWjayJOpcwo"
    "cugux082f49HKYg84EpHSGXAyh+/oxwaWbvL6aSDPOYuPDGOCI8jmnKiypE+"
)


def test_a1_url_verification() -> None:
    echo = "fsi1xnbH4yQh0+PJxcOdhhK6TDXkjMyhEPA7xB2TGz6b+g7xyAbEkRxN/3cNXW9qdqjnoVzEtpbhnFyq6SVHyA=="
    assert A.open("012bc692d0a58dd4b10f8dfe5c4ac00ae211ebeb", "1476416373", "47744683", echo) == b"1288432023552776189"


def test_a2_message() -> None:
    plain = A.open("0c3914025cb4b4d68103f6bfc8db550f79dcf48e", "1476422779", "1597212914", A2_ENCRYPT)
    assert "<Content>你好</Content>" in plain.decode() and "<MsgId>1456453720</MsgId>" in plain.decode()


def test_b1_signature_and_negative_nonce() -> None:
    echo = "4ByGGj+sVCYcvGeQYhaKIk1o0pQRNbRjxybjTGblXrBaXlTXeOo1+bXFXDQQb1o6co6Yh9Bv41n7hOchLF6p+Q=="
    assert B.open("dd6b9c95b495b3f7e2901bfbc76c664930ffdb96", "1411443780", "437374425", echo) == b"5927782489442352469"
    with pytest.raises(CallbackCryptoError) as info:
        B.verify("dd6b9c95b495b3f7e2901bfbc76c664930ffdb96", "1411443780", "437374424", echo)
    assert info.value.code == -40001


def test_b2_deterministic_encryption_byte_for_byte() -> None:
    reply = (
        "<xml>\n<MsgType><![CDATA[text]]></MsgType>\n<Content><![CDATA[test]]></Content>\n"
        "<FromUserName><![CDATA[wx49f0ab532d5d035a]]></FromUserName>\n<ToUserName><![CDATA[messense]]></ToUserName>\n"
        "<AgentID>1</AgentID>\n<CreateTime>1411525903</CreateTime>\n</xml>"
    )
    encrypted, sig = B.seal(reply.encode(), "1411525903", "461056294", random16=b"1234567890123456")
    assert encrypted.startswith("9s4gMv99m88kKTh/H8IdkOiMg6bisoy3ypwy9H4hvSPe9nsGaqyw5hhSjdYbcrKk")
    assert encrypted.endswith("EE8kv3kFxtAGVRe3ypD3WeK2XeFYFMNMpatF9XiKzHo3")
    assert sig == "407518b7649e86ef23978113f92d27afa9296533"
    assert B.decrypt(encrypted) == reply.encode()


def test_c1_url_verify_with_percent_encoding_and_negative() -> None:
    crypto = CallbackCrypto(
        "kjr2TKI8umCBfVF3wAHk8JiPwma5VBme", "4Ma3YBrSBbX2aez8MJpXGBne5LSDwgGqHbhM9WPYIws", "ww6a112864f8022910"
    )
    url = (
        "/?echostr=6KmUQuPVu7UhjyVqRdbo5SfcRqaHvbUlKSHFvBV2ZuR6TIlKsygcfeSd1GDplg1C5KSKr6UPHCaC%2FnIX3ZNt9w%3D%3D"
        "&msg_signature=1ba3cb09c0d2c2b3ed6900d37f91a6efae6cb011&timestamp=1583940690&nonce=VHh7ymSeb0jc4lSb"
    )
    q = {k: v[0] for k, v in parse_qs(urlparse(url).query).items()}
    assert crypto.open(q["msg_signature"], q["timestamp"], q["nonce"], q["echostr"]) == b"94966531020182955848408"
    with pytest.raises(CallbackCryptoError):
        crypto.verify(q["msg_signature"][:-1] + "0", q["timestamp"], q["nonce"], q["echostr"])


def test_c2_binary_random_prefix_and_c3_receiveid_mismatch() -> None:
    body = re.search(r"<Encrypt><!\[CDATA\[(.*?)\]\]>", C2_BODY).group(1)  # type: ignore[union-attr]
    plain = C2.open("f265ae551b1932727204c3d707628d01376a6940", "1583995625", "1584392382", body).decode()
    assert "<Content><![CDATA[x123]]></Content>" in plain
    C2.verify("a44d1b7dc3dc4b02edd99dc32afa6a26be7c92f6", "1583995625", "1584392382", C3_ENCRYPT)
    with pytest.raises(CallbackCryptoError) as info:
        C2.decrypt(C3_ENCRYPT)
    assert info.value.code == -40005


def test_d_change_external_contact_vector() -> None:
    plain = A.open("509929d6604828d0656af7108e12019c86ad95e3", "1700000000", "1234567890", D_ENCRYPT).decode()
    assert "<WelcomeCode><![CDATA[WELCOMECODE]]></WelcomeCode>" in plain
    assert signature(A.token, "1700000000", "1234567890", D_ECHO) == "a5960d13b09338bb2b7823c2cff4802e01712a88"
    assert A.decrypt(D_ECHO) == b"1288432023552776189"


@pytest.mark.parametrize(
    "key",
    [
        "",
        "1234567890" * 4 + "12",
        "1234567890" * 4 + "1234",
        "4Ma3YBrSBbX2aez8MJpXGBne5LSDwgGqHbhM9WPYIw=",
        "4Ma3YBrSBbX2aez8MJpXGBne5LSDwgGqHbhM9WPYIw$",
    ],
)
def test_malformed_keys_are_rejected(key: str) -> None:
    with pytest.raises(CallbackCryptoError) as info:
        CallbackCrypto("t", key, "ww1")
    assert info.value.code == -40004


def test_garbage_is_refused_not_crashed() -> None:
    for bad in ("not base64!", "", "AAAA", A2_ENCRYPT[:-8] + "AAAAAAA="):
        with pytest.raises(CallbackCryptoError):
            A.decrypt(bad)


C2_BODY = (
    "<xml><ToUserName><![CDATA[ww6a112864f8022910]]></ToUserName><Encrypt><![CDATA["
    "EUCt7xMcNiyASzZj0Hjc5yDjFQrCum6AfQ3ntHiUzjGQ51xieKmbvtrZ40/EcB2W/W8yH0n4Lqx48gJl/T9HD/R309I0P/r5pIZucK3lyEn48FYM"
    "r4YdE0QdL2jIJ3xkcXUr6uzefzCxG6lMvwpAJaOyVCzN7sRRw47njfxy5EIqU6R9ZBhlTzfdnhhOhK/nTwzrZX3SoGlXFA9OBeZ6ru1NWpXFk76x"
    "9DUMe0lcxPPiUqK8ctnQcYXSGUHVqC6DfG7E7mab0OmruNN8cBZY5d3dYOBA4OgaH55Q0AJmUpdT8vNiXpXx+6TxT3TIjySXpDrHVyrsb772aYyw"
    "gg/Nu4kUmGkALwFZlzhjNegR7wDwb9lr4ERXsSSS8JZ8lbBmaQ3F2Tq584xoPj5rIhXAF734ynm4no1g+SdHiNqR328="
    "]]></Encrypt><AgentID><![CDATA[1000002]]></AgentID></xml>"
)
C3_ENCRYPT = (
    "fyVN9BUnH6xNl0/VCHTCg6XGxxvoFdyZ7VQbAbBcQ79dVccYvdIyJYZSMMhkPy8LPaoe+V27qjoQ553fXavmrPOgxzHrKKf3YIu63pB4/nN0LY4S"
    "+GzUFi/LLFj1TI1sOh0q2jT5u1nYz5G3HFNLd3DFUvJVLtZl8mVMwUOzBpzKZhhmCvIJLVlvym9tt+VYwG06MSbmnf9AzYFKhm1BIy+95Q824ilY"
    "6Wy8l+vkFqEdASl2k83jMXvlkVRSB3hmNptWTbq8ygDdLtkCyA4UEiZvfTskqqVkbYwLptRl/1F+DVL9SH/TWt2j3dCm4rzY5jQG+fA+2xh2Kk+O"
    "rVgafqtQCfhjq8C38A2IwCcg2BONKk8s5ijFxQoszmXvJQ3zLYbjzRWQ40xhryDyPNNse7/slKVW2QMBEUPNOxUcX9k="
)
D_ENCRYPT = (
    "scEag1243Fmy/fYz4Ux8D6+rfTnOn/tstrx8NrXGyJjvU12tJJOMiSpJqXJw6XHyUxpBpr5SfH0600mCgQnokICykznTzTWd1utOsxgYvvFT/6kW"
    "goJw1L2B26TNmOZjSkrXgwvz5crUgC2Nuze3F1Am91ph/Ux6SwHN4q0RpnlgTfe4YLimsNWgvo4PcoSDX+JH2gBY8MVIUvY8SCvhq+Q4b8V+9iw8"
    "eD8US8jxM4+QVfe1sjmFqCwBUcnnQMRrHtVKUguzLzVhc1WReWQvNIil+xwjVw/cCb59oZoUsi0tWmPYYhG3uSQ9c5Ta4qmROPSfI5j4pNpkjPhA"
    "nsvDF6g9I/SQahjgx+WpIzeIG1zlyhm6i4XAn96EWCK6e9e5g0kK/1iYxXB4mWY+zg2MjfpZv2XpxNGLIJZ5IWiCC13pPNy5y0pW7eUjrwyg0RpN"
    "zPQXJ0OVjsiiJ1dL1Bt5Myg34phZFdTrr4u6DqmsK7u0u6At1GDwIdxcFKPZZaUIoSCoDN0Lpup3HQuyFDrSLaG6+5GVVFgJ++0wwaxd1dtni+wE"
    "U5/n9qlvmxUe/CAKRph9c9xqpv5gagDvIsl1Hv9kjcrdFWCwyvJ27Nou5lhJYe+uucCl+TR/101Jf4pAgAWo3t5744Mr3GOOBIRoZem7WXZYNjf8"
    "1UYeYGErL0zf9UUiSkjrfXHUWmSjE5v6gioMmyZDofxJKMJ/AGEKRQ=="
)
D_ECHO = "scEag1243Fmy/fYz4Ux8D4VyGL33CiZE7jU1zRSmEGf1QEuv4Uke00LeCC6A9XqAL/CRiFLUBaaGd0woYuQxiw=="
