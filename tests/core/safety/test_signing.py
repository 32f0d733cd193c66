from __future__ import annotations

from datetime import UTC, datetime

from core.safety.signing import sign, verify

NOW = datetime(2026, 1, 1, tzinfo=UTC)
TS = int(NOW.timestamp())


def test_verify_when_fresh_and_correct_then_none() -> None:
    assert verify("s", "activate", TS, sign("s", "activate", TS), NOW, 30) is None


def test_verify_when_signed_for_other_action_then_refused() -> None:
    assert (
        verify("s", "deactivate", TS, sign("s", "activate", TS), NOW, 30)
        == "signature does not match"
    )


def test_verify_when_wrong_secret_then_refused() -> None:
    assert verify("s", "activate", TS, sign("other", "activate", TS), NOW, 30) is not None


def test_verify_when_outside_window_then_refused_with_skew() -> None:
    why = verify("s", "activate", TS - 31, sign("s", "activate", TS - 31), NOW, 30)
    assert why is not None
    assert "window 30s" in why


def test_sign_when_known_vector_then_matches_hmac_sha256() -> None:
    import hashlib
    import hmac

    expected = hmac.new(b"k", b"activate:1700000000", hashlib.sha256).hexdigest()
    assert sign("k", "activate", 1700000000) == expected
