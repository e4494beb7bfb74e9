"""Team mode under Streamlit's AppTest on the real tiny index: every page asks for sign-in first; a wrong
passphrase shows nothing of the index; attempts are rate-limited per session and for the whole server; what a
signed-in person edits records their identity. The rate-limit rules are checked on their own with a clock."""

from __future__ import annotations

import pytest
from streamlit.testing.v1 import AppTest

from backend import access
from backend.team import TeamStore
from tests.test_pages import APP, PAGES, index, rendered, widget  # noqa: F401  (fixtures)

PASSPHRASE = "correct horse battery staple"
LABEL_BOX = "Label (shared with the team; overrides the automatic label everywhere)"


@pytest.fixture()
def team_mode(monkeypatch):
    monkeypatch.setenv(access.TEAM_ENV, "1")
    monkeypatch.setenv(access.PASSPHRASE_ENV, PASSPHRASE)
    access.GLOBAL_BACKOFF.reset()  # process-wide: other tests' failures must not count here
    yield
    access.GLOBAL_BACKOFF.reset()


def open_feature(secrets: dict | None = None) -> AppTest:
    at = AppTest.from_file(str(APP), default_timeout=180)
    for key, value in (secrets or {}).items():
        at.secrets[key] = value
    at.run()
    at.switch_page(str(PAGES / "feature.py"))
    at.query_params["id"] = "3"
    return at.run()


def sign_in(at: AppTest, name: str, passphrase: str) -> AppTest:
    at.text_input(key="sign_in_name").input(name)
    at.text_input(key="sign_in_passphrase").input(passphrase)
    return widget(at.button, "Sign in").click().run()


def shows_the_index(at: AppTest) -> bool:
    return 'class="feature-title"' in rendered(at) or len(at.sidebar.selectbox) > 0


def test_team_mode_shows_nothing_before_sign_in_and_refuses_a_wrong_passphrase(team_mode, index):  # noqa: F811
    at = open_feature()
    assert not at.exception and not shows_the_index(at)
    sign_in(at, "ada", "not the passphrase")
    assert [e.value for e in at.error] == ["That passphrase is not right."]
    assert not shows_the_index(at)


def test_the_right_passphrase_signs_in_and_edits_record_the_identity(team_mode, index):  # noqa: F811
    at = sign_in(open_feature(), "Ada Lovelace", PASSPHRASE)
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert shows_the_index(at)
    assert any("Signed in as **Ada Lovelace**" in c.value for c in at.sidebar.caption)
    assert not [t for t in at.sidebar.text_input if t.label.startswith("Your name")]  # no free-text name box
    widget(at.text_input, LABEL_BOX).input("digits")
    widget(at.button, "Save").click().run()
    assert not at.exception
    label = TeamStore.for_index(index).get_labels([3])[3]
    assert (label.text, label.author) == ("digits", "Ada Lovelace")


def test_wrong_attempts_are_rate_limited_per_session(team_mode, index):  # noqa: F811
    at = open_feature()
    for _ in range(3):
        sign_in(at, "eve", "guess")
    sign_in(at, "eve", PASSPHRASE)  # right, but after three failures: not even compared
    assert at.error[0].value.startswith("Too many wrong passphrases; try again in")
    assert not shows_the_index(at)
    fresh = sign_in(open_feature(), "ada", PASSPHRASE)  # another session is not held back
    assert shows_the_index(fresh)


def test_team_mode_without_any_sign_in_configured_refuses_to_serve(monkeypatch, index):  # noqa: F811
    monkeypatch.setenv(access.TEAM_ENV, "1")
    monkeypatch.delenv(access.PASSPHRASE_ENV, raising=False)
    at = open_feature()
    assert len(at.error) == 1 and access.PASSPHRASE_ENV in at.error[0].value
    assert not shows_the_index(at)


def test_an_oidc_configuration_asks_for_streamlit_login_first(team_mode, index):  # noqa: F811
    auth = {"redirect_uri": "http://localhost:8501/oauth2callback", "cookie_secret": "x" * 32,
            "client_id": "id", "client_secret": "secret",
            "server_metadata_url": "https://accounts.example.com/.well-known/openid-configuration"}
    at = open_feature(secrets={"auth": auth})
    assert not at.exception
    assert [b.label for b in at.button] == ["Sign in"] and not at.text_input  # no passphrase form
    assert not shows_the_index(at)


def test_outside_team_mode_the_name_box_signs_edits(monkeypatch, index):  # noqa: F811
    monkeypatch.delenv(access.TEAM_ENV, raising=False)
    at = open_feature()
    assert shows_the_index(at)
    assert [t.label for t in at.sidebar.text_input] == ["Your name (signs labels and notes)"]


def test_backoff_doubles_after_the_free_attempts_and_forgets_old_failures():
    session, everyone = access.session_backoff(), access.Backoff(free=5, base_s=1, max_s=60, forget_after_s=100)
    for t in range(3):
        assert access.check_passphrase("x", "right one", session, everyone, now=float(t)).message == \
            "That passphrase is not right."
    assert session.wait_s(now=2.0) == pytest.approx(2.0)  # 3 failures, the last at t=2: wait until t=4
    assert not access.check_passphrase("right one", "right one", session, everyone, now=3.0).ok
    assert access.check_passphrase("x", "right one", session, everyone, now=4.0).message.startswith("That")
    assert session.wait_s(now=4.0) == pytest.approx(4.0)  # doubled
    assert access.check_passphrase("right one", "right one", session, everyone, now=8.0).ok
    # the server-wide limit holds back a new session once many sessions failed
    other = access.session_backoff()
    for _ in range(10):
        everyone.record_failure(now=10.0)
    refused = access.check_passphrase("right one", "right one", other, everyone, now=10.5)
    assert not refused.ok and refused.message.startswith("Too many")
    assert access.check_passphrase("right one", "right one", other, everyone, now=200.0).ok  # forgotten


def test_passphrase_compare_is_exact():
    assert access.passphrase_matches("abc", "abc")
    assert not access.passphrase_matches("abc", "abd") and not access.passphrase_matches("ab", "abc")
    assert not access.passphrase_matches("ABC", "abc")
