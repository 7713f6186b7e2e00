from __future__ import annotations

import re
from datetime import timedelta

import pytest

from settings import PROJECT_DIR, Settings, parse_duration


@pytest.mark.parametrize(("text", "seconds"), [
    ("90s", 90), ("15m", 900), ("2h", 7200), ("3d", 259200), ("1.5s", 1.5), (" 7d ", 604800),
])
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == timedelta(seconds=seconds)


@pytest.mark.parametrize("text", ["3", "3 days", "d3", "-1s", "", "1w"])
def test_bad_durations_are_rejected(text: str) -> None:
    with pytest.raises(ValueError, match="unit"):
        parse_duration(text)


def test_env_overrides_policy(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORDERS_PAYMENT_REMINDER_AFTER", "45s")
    monkeypatch.setenv("ORDERS_PARTNER__PORT", "2999")
    settings = Settings()
    assert settings.payment_reminder_after == timedelta(seconds=45)
    assert settings.partner.port == 2999


def test_bad_duration_in_env_names_the_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORDERS_CANCEL_UNPAID_AFTER", "soon")
    with pytest.raises(ValueError, match="cancel_unpaid_after"):
        Settings()


def test_api_keys_parse_and_reject() -> None:
    assert Settings(api_keys="a:client, b:staff").api_key_roles() == {"a": "client", "b": "staff"}
    with pytest.raises(ValueError, match="key:client or key:staff"):
        Settings(api_keys="a:admin").api_key_roles()


def test_example_config_documents_every_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    example = PROJECT_DIR / "orders.example.toml"
    monkeypatch.setenv("ORDERS_CONFIG", str(example))
    Settings()  # parses
    text = example.read_text(encoding="utf-8")
    readme = (PROJECT_DIR / "README.md").read_text(encoding="utf-8")
    for name in Settings.model_fields:
        assert re.search(rf"^#? ?{name} =|^\[{name}\]", text, re.M), name
        assert f"ORDERS_{name.upper()}" in readme, name


@pytest.mark.parametrize(("field", "value", "reason"), [
    ("invoice_number_format", "RE-{number:06d}", "both {year} and {number}"),
    ("credit_note_number_format", "GS-{year}", "both {year} and {number}"),
    ("delivery_note_number_format", "LS-{jahr}-{number}", "not a number format"),
    ("invoice_number_format", "RE-{year}-{number:060d}", "longer than 40"),
])
def test_bad_number_formats_are_rejected(field: str, value: str, reason: str) -> None:
    with pytest.raises(ValueError, match=re.escape(reason)):
        Settings(**{field: value})


def test_number_formats_must_differ() -> None:
    with pytest.raises(ValueError, match="must differ"):
        Settings(credit_note_number_format="RE-{year}-{number:06d}")
    custom = Settings(invoice_number_format="{year}/{number}")
    assert custom.invoice_number_format.format(year=2026, number=7) == "2026/7"
