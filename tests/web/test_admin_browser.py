"""Every admin page and form, end to end in a real headless Chromium (Debian chromium + chromedriver).

Chromium starts with a fresh profile and every background service off, so it
talks to nothing but the test server on loopback.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import require
from tests.web.helpers import ADMIN, ADMIN_PASSWORD, make_admin

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"

pytestmark = pytest.mark.timeout(240)


@pytest.fixture(scope="module")
def web(tmp_path_factory) -> Iterator[Any]:
    from tests.harness import RunningServer, server_settings

    srv = RunningServer(server_settings(tmp_path_factory.mktemp("web") / "data")).start()
    make_admin(srv)
    srv.add_user("user@example.org", "user-password-1")
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    require(os.access(CHROMIUM, os.X_OK) and os.access(CHROMEDRIVER, os.X_OK),
            "Debian chromium and chromium-driver (scripts/install-test-deps.sh)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="postbote-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage", "--disable-default-apps", "--disable-extensions",
                 "--metrics-recording-only", "--no-default-browser-check", f"--user-data-dir={profile}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def _retry_if_replaced(action: Any, attempts: int = 3) -> Any:
    """Run ``action`` again when Chromium says the element's document was just
    replaced (a page still finishing its load when the test looks at it)."""
    from selenium.common.exceptions import StaleElementReferenceException, WebDriverException

    for attempt in range(attempts):
        try:
            return action()
        except (StaleElementReferenceException, WebDriverException) as exc:
            replaced = isinstance(exc, StaleElementReferenceException) or "does not belong to the document" in str(exc)
            if not replaced or attempt == attempts - 1:
                raise
            time.sleep(0.2)
    return None


class Page:
    """A few verbs over the driver, named after what a person does."""

    def __init__(self, driver: Any, port: int) -> None:
        self.d, self.base = driver, f"http://127.0.0.1:{port}"

    def open(self, path: str) -> "Page":
        self.d.get(self.base + path)
        return self

    def fill(self, field_id: str, value: str) -> "Page":
        from selenium.webdriver.common.by import By

        def type_in() -> None:
            el = self.d.find_element(By.ID, field_id)
            el.clear()
            el.send_keys(value)

        _retry_if_replaced(type_in)
        return self

    def click(self, element_id: str) -> "Page":
        from selenium.webdriver.common.by import By

        return self._navigate(lambda: self.d.find_element(By.ID, element_id))

    def press(self, label: str) -> "Page":
        from selenium.webdriver.common.by import By

        return self._navigate(lambda: self.d.find_element(By.CSS_SELECTOR, f'button[aria-label="{label}"]'))

    def _navigate(self, find: Any) -> "Page":
        """Click, then wait for the next page: every button and link here loads one.

        The old page is marked with a window property rather than remembered by an
        element reference: a reference into a document Chromium is replacing can
        fail in more ways than "stale", while a new document simply lacks the mark.
        """
        from selenium.common.exceptions import WebDriverException
        from selenium.webdriver.support.wait import WebDriverWait

        self.d.execute_script("window.postboteOldPage = true")
        for attempt in range(3):
            try:
                find().click()
                break
            except WebDriverException:
                # Only click again if the click did not start a navigation.
                if attempt == 2 or not self._still_on_old_page():
                    break
                time.sleep(0.2)
        WebDriverWait(self.d, 30, ignored_exceptions=(WebDriverException,)).until(
            lambda d: d.execute_script(
                "return !window.postboteOldPage && document.readyState === 'complete'"
                " && !!document.getElementById('main')"))
        return self

    def _still_on_old_page(self) -> bool:
        from selenium.common.exceptions import WebDriverException

        try:
            return bool(self.d.execute_script("return !!window.postboteOldPage"))
        except WebDriverException:
            return False

    def text(self, element_id: str = "main") -> str:
        from selenium.webdriver.common.by import By

        return _retry_if_replaced(lambda: self.d.find_element(By.ID, element_id).text)

    def has(self, element_id: str) -> bool:
        from selenium.webdriver.common.by import By

        return bool(self.d.find_elements(By.ID, element_id))

    @property
    def path(self) -> str:
        return self.d.current_url[len(self.base):]

    def login(self, user: str = ADMIN, password: str = ADMIN_PASSWORD) -> "Page":
        from selenium.webdriver.support.wait import WebDriverWait

        self.open("/admin/login").fill("username", user).fill("password", password).click("login")
        # A good login is a POST, a 303 and a GET: wait for the end of the chain.
        WebDriverWait(self.d, 30).until(lambda d: self.path != "/admin/login" or self.has("error"))
        WebDriverWait(self.d, 30).until(lambda d: d.execute_script("return document.readyState") == "complete")
        return self

    def logout(self) -> None:
        from selenium.webdriver.common.by import By

        buttons = self.d.find_elements(By.CSS_SELECTOR, 'form[action="/admin/logout"] button')
        if buttons:
            self._navigate(lambda: buttons[0])
            assert self.path == "/admin/login"
        self.d.delete_all_cookies()


@pytest.fixture
def page(web, browser) -> Iterator[Page]:
    p = Page(browser, web.port("http"))
    yield p
    p.logout()


def test_pages_need_a_login(page):
    for path in ("/admin/", "/admin/domains", "/admin/accounts", "/admin/queue", "/admin/transactions",
                 "/admin/accounts/user@example.org"):
        page.open(path)
        assert page.path == "/admin/login", path


def test_bad_password_is_refused_with_a_message(page):
    page.login(password="wrong-password")
    assert page.path == "/admin/login"
    assert page.text("error") == "Wrong address or password."
    page.open("/admin/")
    assert page.path == "/admin/login"


def test_an_account_that_is_not_admin_cannot_log_in(page):
    page.login("user@example.org", "user-password-1")
    assert page.text("error") == "This account is not an administrator."


def test_login_form_with_a_wrong_csrf_token_is_refused(page):
    page.open("/admin/login").fill("username", ADMIN).fill("password", ADMIN_PASSWORD)
    page.d.execute_script("document.querySelector('input[name=csrf]').value = 'forged'")
    page.click("login")
    assert "CSRF" in page.text("error")
    page.open("/admin/")
    assert page.path == "/admin/login"


def test_a_change_with_a_wrong_csrf_token_changes_nothing(page, web):
    page.login().open("/admin/domains").fill("domain-name", "csrf.example")
    page.d.execute_script("document.querySelector('form[action=\"/admin/domains\"] input[name=csrf]').value = 'x'")
    page.click("add-domain")
    assert "Nothing was changed" in page.text("error")
    assert web.run(web.app.store.get_domain("csrf.example")) is None


def test_dashboard_shows_traffic_and_queue(page, web):
    import smtplib

    with smtplib.SMTP("127.0.0.1", web.port("smtp"), timeout=30) as smtp:
        smtp.sendmail("x@sender.test", ["user@example.org"], b"Subject: hi\r\n\r\nhi\r\n")
        with pytest.raises(smtplib.SMTPRecipientsRefused):
            smtp.sendmail("x@sender.test", ["ghost@example.org"], b"Subject: hi\r\n\r\nhi\r\n")
    page.login()
    assert page.path == "/admin/"
    assert int(page.text("received")) >= 1
    assert "entries" in page.text("queue-summary")
    assert "ghost@example.org" in page.text("refusals")


def test_domains_add_validate_show_records_check_and_delete(page, web):
    page.login().open("/admin/domains").fill("domain-name", "not a domain").click("add-domain")
    assert "name:" in page.text("error")
    page.fill("domain-name", "shop.example").click("add-domain")
    assert page.text("note") == "domain shop.example added"
    assert "shop.example" in page.text("domains")
    page.open("/admin/domains/shop.example")
    assert "MX\t10 localhost." in page.d.find_element("id", "records").get_attribute("textContent")
    page.click("run-check")
    checks = page.text("checks")
    assert "MX" in checks and "SPF" in checks and "PTR" in checks and "error" in checks
    page.open("/admin/domains").press("Delete shop.example")
    assert page.text("note") == "domain shop.example deleted"
    page.press("Delete example.org")
    assert "still has accounts" in page.text("error")


def test_accounts_create_reset_quota_app_passwords_aliases_and_delete(page, web):
    page.login().open("/admin/accounts")
    page.fill("new-address", "new@example.org").fill("new-password", "short").click("create-account")
    assert "at least 8" in page.text("error")
    page.fill("new-address", "new@example.org").fill("new-password", "long-enough-1").fill("new-quota", "lots")
    page.click("create-account")
    assert "size like" in page.text("error")
    page.fill("new-password", "long-enough-1").fill("new-quota", "20M").click("create-account")
    assert page.text("note") == "account new@example.org created"
    page.fill("alias-source", "sales@example.org").fill("alias-target", "bad").click("add-alias")
    assert "target:" in page.text("error")
    page.fill("alias-source", "sales@example.org").fill("alias-target", "new@example.org").click("add-alias")
    assert "alias sales@example.org → new@example.org added" == page.text("note")
    page.press("Delete alias sales@example.org to new@example.org")
    assert page.text("note") == "alias sales@example.org deleted"

    page.open("/admin/accounts/new@example.org")
    page.fill("pw", "new-password-1").fill("pw2", "different-1").click("set-password")
    assert page.text("error") == "the two passwords differ"
    page.fill("pw", "new-password-1").fill("pw2", "new-password-1").click("set-password")
    assert page.text("note") == "password changed"
    account = web.run(web.app.accounts.authenticate("new@example.org", "new-password-1", "127.0.0.1"))
    assert account.account.address == "new@example.org"
    page.fill("quota", "2x").click("set-quota")
    assert "size like" in page.text("error")
    page.fill("quota", "1G").click("set-quota")
    assert page.text("note") == "quota set to 1.0 GiB"
    page.fill("app-name", "laptop").click("add-app-password")
    assert "app password laptop created" in page.text("note")
    assert "laptop" in page.text("app-passwords")
    page.press("Revoke laptop")
    assert page.text("note") == "app password laptop revoked"
    page.fill("confirm-delete", "wrong").click("delete-account")
    assert "type the account's address" in page.text("error")
    page.fill("confirm-delete", "new@example.org").click("delete-account")
    assert page.text("note") == "account new@example.org deleted"
    assert web.run(web.app.store.get_account("new@example.org")) is None


def test_queue_inspect_hold_release_retry_delete(page, web):
    from tests.smtp.helpers import submit

    with submit(web, ADMIN, ADMIN_PASSWORD) as smtp:
        smtp.sendmail(ADMIN, ["far@remote.test"], b"Subject: out\r\n\r\nbody\r\n")
    [entry] = web.run(web.app.store.list_outbound())
    qid = entry.queue_id
    page.login().open("/admin/queue")
    assert qid in page.text("queue")
    page.open(f"/admin/queue/{qid}")
    assert "far@remote.test" in page.text()
    page.open("/admin/queue").press(f"Hold {qid}")
    assert page.text("note") == f"hold: 1 queue entries of {qid}"
    assert "held" in page.text("queue")
    page.press(f"Release {qid}")
    assert page.text("note") == f"release: 1 queue entries of {qid}"
    page.press(f"Retry {qid}")
    assert page.text("note") == f"retry: 1 queue entries of {qid}"
    page.press(f"Delete {qid}")
    assert page.text("note") == f"delete: 1 queue entries of {qid}"
    assert page.has("queue-empty")
    page.open("/admin/queue/NOSUCH1")
    assert "no queued message" in page.text("error")


def test_transactions_show_messages_by_queue_id(page, web):
    import smtplib

    with smtplib.SMTP("127.0.0.1", web.port("smtp"), timeout=30) as smtp:
        smtp.sendmail("x@sender.test", ["user@example.org"], b"Subject: log\r\n\r\nhi\r\n")
    page.login().open("/admin/transactions")
    table = page.text("transactions")
    assert "message" in table and "delivered" in table


def test_logout_ends_the_session(page):
    page.login().logout()
    page.open("/admin/")
    assert page.path == "/admin/login"
