"""A content manager writes a template with a live preview; an admin watches the mail queue."""

from __future__ import annotations

import re

from tests.communication_helpers import add_members, make_template
from tests.conftest import work_queued_jobs as _work


def test_editor_preview_follows_typing(live, page, sign_in, output_dir):
    template = make_template(sample_data={"first_name": "Ava", "steps": ["one", "two"]})
    sign_in("content_manager")
    page.goto(f"{live.live_url}/communication/templates/{template.id}")
    preview = page.frame_locator("#preview iframe")
    assert preview.locator("h1").inner_text() == "Hello Ava"
    assert page.locator("#preview .chip-var").all_inner_texts() == ["first_name"]

    body = page.locator("textarea[name=html_body]")
    body.fill("<h1>Bonjour {{ first_name }}</h1>\n<ul>{% for s in steps %}<li>{{ s }}</li>{% endfor %}</ul>")
    page.wait_for_function("() => document.querySelectorAll('#preview .chip-var').length === 2")
    assert preview.locator("h1").inner_text() == "Bonjour Ava"
    assert preview.locator("li").all_inner_texts() == ["one", "two"]
    page.screenshot(path=str(output_dir / "communication-editor.png"), full_page=True)

    page.click("#preview [data-tab=preview-text]")
    assert "Bonjour Ava" in page.locator("#preview-text").inner_text()

    body.fill("<h1>Bonjour {{ first_name </h1>")
    page.wait_for_selector("#preview .preview-errors")
    assert "line 1" in page.locator("#preview .preview-errors").inner_text()
    page.screenshot(path=str(output_dir / "communication-editor-error.png"), full_page=True)

    body.fill("<h1>Bonjour {{ first_name }}</h1>")
    page.click("#template-form button[type=submit]")
    page.wait_for_selector(".flash-success")
    assert "Saved version 2" in page.locator(".flash-success").inner_text()
    page.goto(f"{live.live_url}/communication/templates/{template.id}/versions")
    assert page.locator(".diff-add").first.is_visible()
    page.screenshot(path=str(output_dir / "communication-versions.png"), full_page=True)
    assert not page.js_errors, page.js_errors


def test_read_only_editor_previews_the_saved_template(live, page, sign_in):
    template = make_template()
    sign_in("analyst")
    page.goto(f"{live.live_url}/communication/templates/{template.id}")
    assert page.locator("textarea[name=html_body]").is_disabled()
    assert page.frame_locator("#preview iframe").locator("h1").inner_text() == "Hello Ava"
    assert page.locator("#preview .preview-errors").count() == 0
    assert not page.js_errors, page.js_errors


def test_queue_page_counts_retries_and_refreshes(live, page, sign_in, output_dir):
    from console.blueprints.communication.sending import create_batch, send_email

    template, _ = make_template(), add_members(6)
    send_email(str(template.id), {"user_id": "u0"})
    failed = send_email(str(template.id), {"email": "bounce@example.com"})
    batch = create_batch(str(template.id), [{"user_id": f"u{i}"} for i in range(1, 6)])
    _work(live)
    sign_in("admin")
    page.goto(f"{live.live_url}/communication/queue")
    assert page.locator(".count-sent .count-value").inner_text() == "6"
    assert page.locator(".count-failed .count-value").inner_text() == "1"
    assert page.locator(".batch-row .badge").inner_text() == "complete"
    page.screenshot(path=str(output_dir / "communication-queue.png"), full_page=True)

    row = page.locator("tr", has_text="bounce@example.com")
    row.get_by_role("button", name="Retry").click()
    page.wait_for_selector(".toast", state="visible")
    assert "Queued again" in page.locator(".toast").first.inner_text()

    send_email(str(template.id), {"email": "late@example.com"}, priority="high")
    page.wait_for_selector("text=late@example.com", timeout=8000)  # the table refreshes itself every 5 s
    assert page.locator(".count-queued .count-value").inner_text() == "2"

    page.goto(f"{live.live_url}/communication/emails/{failed['email_id']}")
    assert page.locator(".timeline .tl").count() >= 2
    page.screenshot(path=str(output_dir / "communication-email.png"), full_page=True)

    page.goto(f"{live.live_url}/communication/batches/{batch['batch_id']}")
    assert re.search(r"100% · 5 of 5 done", page.locator(".progress-label").inner_text())
    page.screenshot(path=str(output_dir / "communication-batch.png"), full_page=True)

    page.goto(f"{live.live_url}/communication/mailbox")
    assert page.locator(".mailbox-item").count() == 6
    page.locator(".mailbox-item").nth(1).click()
    page.wait_for_selector("#mailbox-message iframe")
    page.screenshot(path=str(output_dir / "communication-mailbox.png"), full_page=True)
    assert not page.js_errors, page.js_errors


def test_batch_progress_bar_updates_live(live, page, sign_in):
    from console.blueprints.communication.sending import create_batch

    template, _ = make_template(), add_members(3)
    batch = create_batch(str(template.id), [{"user_id": f"u{i}"} for i in range(3)])
    sign_in("moderator")
    page.goto(f"{live.live_url}/communication/batches/{batch['batch_id']}")
    assert page.locator("#batch-progress .badge").inner_text() == "queued"
    assert page.locator(".progress").get_attribute("aria-valuenow") == "0"
    _work(live)
    page.wait_for_selector("#batch-progress .badge-complete", timeout=5000)  # polled every second
    assert page.locator(".progress").get_attribute("aria-valuenow") == "100"
    assert not page.js_errors, page.js_errors
