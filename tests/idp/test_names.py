"""Names, phones and e-mail addresses: normalisation and the reasons they are refused."""

from __future__ import annotations

import pytest

from idp.names import clean_phone, email_violation, name_key, name_violation, phone_violation


@pytest.mark.parametrize("name", ["张三", "阿卜杜·热合曼", "Zhang  Wei", "𠀀𪚥"])
def test_acceptable_names(name: str) -> None:
    assert name_violation("name", name) is None


@pytest.mark.parametrize(
    ("name", "reason"),
    [("", "required"), ("   ", "required"), ("a\u200bb", "character not allowed"),
     ("x\x07", "character not allowed"), ("名" * 201, "length")],
)  # fmt: skip
def test_refused_names(name: str, reason: str) -> None:
    violation = name_violation("name", name)
    assert violation is not None
    assert violation.description.startswith(reason)


def test_name_key_folds_case_width_and_spaces() -> None:
    assert name_key(" Zhang   WEI ") == name_key("zhang wei") == name_key("ｚｈａｎｇ ｗｅｉ")


def test_phones_and_emails() -> None:
    assert clean_phone("+86 138-1234-5678") == "13812345678"
    assert clean_phone("0086 13812345678") == "13812345678"
    assert phone_violation("phone", "") is None
    assert phone_violation("phone", "12812345678") is not None
    assert phone_violation("phone", "1381234567") is not None
    assert email_violation("email", "a@b.cn") is None
    assert email_violation("email", "nope") is not None
