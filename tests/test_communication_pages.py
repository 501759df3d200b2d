"""Console pages: template editor and preview, versions, the queue, email detail, batches, Mailbox, panels."""

from __future__ import annotations

import json
import re

import pytest

from console.blueprints.communication.models import EmailQueue, EmailTemplate
from tests.communication_helpers import WELCOME, add_members, make_template

pytestmark = pytest.mark.usefixtures("app")


def form(**overrides):
    data = {**WELCOME, **overrides}
    data["sample_data"] = json.dumps(data["sample_data"])
    data.setdefault("text_body", "")
    return data


def test_template_list_and_editor_render(login):
    template = make_template()
    browser = login("content_manager")
    page = browser.get("/communication/templates")
    assert page.status_code == 200 and b"Welcome" in page.data and b"New template" in page.data
    assert browser.get("/communication/templates?q=zzz").status_code == 200
    editor = browser.get(f"/communication/templates/{template.id}")
    assert editor.status_code == 200 and b'hx-post="/communication/templates/preview"' in editor.data
    assert b"Save as version 2" in editor.data and f"/templates/{template.id}/test".encode() not in editor.data
    assert browser.get("/communication/templates/new").status_code == 200
    assert browser.get("/communication/templates/0123").status_code == 404


def test_analyst_sees_a_read_only_editor(login):
    template = make_template()
    browser = login("analyst")
    editor = browser.get(f"/communication/templates/{template.id}")
    assert editor.status_code == 200 and b"<fieldset disabled>" in editor.data and b"Save as" not in editor.data
    assert browser.get("/communication/templates/new").status_code == 403
    assert browser.post("/communication/templates/save", data=form()).status_code == 403
    # Unsaved source needs templates.manage; a viewer's editor previews the saved template, whatever is posted.
    assert browser.post("/communication/templates/preview", data=form()).status_code == 403
    assert f'hx-post="/communication/templates/{template.id}/preview"'.encode() in editor.data
    saved = browser.post(f"/communication/templates/{template.id}/preview",
                         data=form(html_body="<p>{{ 'x' * 99 }}</p>"))
    assert saved.status_code == 200 and b"Hello Ava" in saved.data and b"x" * 99 not in saved.data


def test_preview_renders_sample_data_in_a_sandboxed_iframe(login):
    browser = login("content_manager")
    response = browser.post("/communication/templates/preview",
                            data=form(html_body="<p>Hi {{ first_name }} <script>x()</script></p>",
                                      sample_data={"first_name": "<Ada>"}))
    assert response.status_code == 200
    html = response.data.decode()
    assert 'sandbox=""' in html and "srcdoc=" in html
    assert "&amp;lt;Ada&amp;gt;" in html  # autoescaped by the template, then escaped into the attribute
    assert "<script>" not in html.split("srcdoc=")[0]
    assert 'class="chip chip-var">first_name<' in html
    broken = browser.post("/communication/templates/preview", data=form(html_body="<p>{{ oops </p>"))
    assert broken.status_code == 200 and b"line 1" in broken.data
    bad_json = browser.post("/communication/templates/preview", data=form() | {"sample_data": "[1"})
    assert b"sample data must be a JSON object" in bad_json.data


def test_save_creates_updates_and_reports_conflicts(login):
    browser = login("content_manager")
    created = browser.post("/communication/templates/save", data=form())
    assert created.status_code == 302
    template = EmailTemplate.objects.get(name="Welcome")
    url = f"/communication/templates/{template.id}/save"
    assert browser.post(url, data=form(subject="Two") | {"version": "1"}).status_code == 302
    stale = browser.post(url, data=form(subject="Lost") | {"version": "1"})
    assert stale.status_code == 409 and b"changed since version 1" in stale.data and b"Lost" in stale.data
    invalid = browser.post(url, data=form(html_body="{{ x.__class__ }}") | {"version": "2"})
    assert invalid.status_code == 422 and b"not allowed" in invalid.data
    template.reload()
    assert template.version == 2 and template.subject == "Two"


def test_versions_diff_and_restore(login):
    from console.blueprints.communication.email_templates import update_template

    template = make_template()
    update_template(str(template.id), {**WELCOME, "subject": "Hello again {{ first_name }}"}, 1, "tests")
    browser = login("content_manager")
    page = browser.get(f"/communication/templates/{template.id}/versions")
    assert page.status_code == 200
    assert b'class="diff-del">-Welcome {{ first_name }}!' in page.data
    assert b'class="diff-add">+Hello again {{ first_name }}' in page.data
    restored = browser.post(f"/communication/templates/{template.id}/versions/1/restore")
    assert restored.status_code == 302
    template.reload()
    assert template.version == 3 and template.subject == WELCOME["subject"]
    assert browser.get(f"/communication/templates/{template.id}/versions?old=1&new=9").status_code == 404


def test_send_test_to_me(login, run_jobs, servers):
    template = make_template()
    browser = login("admin", email="me@admins.example.com")
    response = browser.post(f"/communication/templates/{template.id}/test")
    assert response.status_code == 204 and "queued" in json.loads(response.headers["HX-Trigger"])["toast"]["message"]
    run_jobs()
    [message] = servers.messages()
    assert message["To"] == "me@admins.example.com" and message["Subject"] == "Welcome Ava!"
    assert login("content_manager").post(f"/communication/templates/{template.id}/test").status_code == 403


def test_delete_from_the_editor(login):
    template = make_template()
    browser = login("content_manager")
    assert browser.post(f"/communication/templates/{template.id}/delete").status_code == 302
    assert EmailTemplate.objects(builtin__ne=True).count() == 0


def _some_mail(run_jobs):
    from console.blueprints.communication.sending import create_batch, send_email

    template, _ = make_template(), add_members(2)
    send_email(str(template.id), {"user_id": "u0"})
    failed = send_email(str(template.id), {"email": "bounce@example.com"})
    batch = create_batch(str(template.id), [{"user_id": "u0"}, {"user_id": "u1"}])
    run_jobs()
    return failed["email_id"], batch["batch_id"]


def test_queue_table_pages_newest_first(login):
    from console.blueprints.communication.sending import create_batch

    template, members = make_template(), add_members(30)
    create_batch(str(template.id), [{"user_id": m["user_id"]} for m in members])
    browser = login("admin")
    first = browser.get("/communication/queue/table").get_data(as_text=True)
    assert first.count("@members.example.com") == 25 and "u29@members" in first and "u0@members" not in first
    next_url = re.search(r'href="(/communication/queue\?[^"]*cursor=[^"]+)"', first).group(1).replace("&amp;", "&")
    second = browser.get(next_url.replace("/communication/queue?", "/communication/queue/table?"))
    rest = second.get_data(as_text=True)
    assert rest.count("@members.example.com") == 5 and "u0@members" in rest and "u29@members" not in rest
    assert "Next page" not in rest


def test_queue_page_table_and_retry(login, run_jobs):
    failed_id, _batch_id = _some_mail(run_jobs)
    browser = login("admin")
    page = browser.get("/communication/queue")
    assert page.status_code == 200 and b'hx-trigger="every 5s"' in page.data and b"Recent batches" in page.data
    table = browser.get("/communication/queue/table?status=failed")
    assert table.status_code == 200 and b"bounce@example.com" in table.data and b"u0@members" not in table.data
    assert b"Retry" in table.data
    assert browser.get("/communication/queue/table?status=nonsense&cursor=bad").status_code == 200
    retried = browser.post(f"/communication/emails/{failed_id}/retry")
    assert retried.status_code == 204 and EmailQueue.objects.get(id=failed_id).status == "queued"
    assert browser.post(f"/communication/emails/{failed_id}/retry").status_code == 409
    analyst = login("analyst")
    assert analyst.get("/communication/queue").status_code == 200
    assert b"Retry" not in analyst.get("/communication/queue/table?status=queued").data
    assert analyst.post(f"/communication/emails/{failed_id}/retry").status_code == 403


def test_email_detail_shows_the_timeline(login, run_jobs, client):
    failed_id, _ = _some_mail(run_jobs)
    sent = EmailQueue.objects(status="sent").first()
    from console.blueprints.communication.tracking import make_token

    client.get(f"/t/o/{make_token('open', sent.id)}")
    browser = login("analyst")
    page = browser.get(f"/communication/emails/{sent.id}")
    assert page.status_code == 200 and b"Timeline" in page.data and b"approximate" in page.data
    assert b'sandbox=""' in page.data
    failed = browser.get(f"/communication/emails/{failed_id}")
    assert b"550" in failed.data and b"Bounce" in failed.data
    assert browser.get("/communication/emails/nope").status_code == 404


def test_batch_page_polls_until_complete(login, run_jobs):
    _failed, batch_id = _some_mail(run_jobs)
    browser = login("moderator")
    page = browser.get(f"/communication/batches/{batch_id}")
    assert page.status_code == 200 and b"100% \xc2\xb7 2 of 2 done" in page.data
    progress = browser.get(f"/communication/batches/{batch_id}/progress")
    assert progress.status_code == 286  # htmx stops polling
    assert browser.get("/communication/batches/nope").status_code == 404


def test_batch_progress_keeps_polling_while_sending(login):
    from console.blueprints.communication.sending import create_batch

    template, _ = make_template(), add_members(2)
    batch_id = create_batch(str(template.id), [{"user_id": "u0"}, {"user_id": "u1"}])["batch_id"]
    response = login("admin").get(f"/communication/batches/{batch_id}/progress")
    assert response.status_code == 200 and b'hx-trigger="every 1s"' in response.data


def test_mailbox_lists_caught_mail(login, run_jobs, servers):
    _some_mail(run_jobs)
    browser = login("analyst")
    page = browser.get("/communication/mailbox")
    assert page.status_code == 200 and b"Welcome Member!" in page.data and b'sandbox=""' in page.data
    key = servers.maildir.joinpath("new").iterdir().__next__().name.split(":")[0]
    fragment = browser.get(f"/communication/mailbox/{key}")
    assert fragment.status_code == 200 and b"List-Unsubscribe" in fragment.data
    assert browser.get("/communication/mailbox/..%2F..%2Fetc").status_code == 404
    assert browser.get("/communication/mailbox/nope").status_code == 404
    assert b"Welcome" not in browser.get("/communication/mailbox?q=zzzz").data.split(b"mailbox-list")[-1]
    assert login("content_manager").get("/communication/mailbox").status_code == 403


def test_mailbox_is_absent_without_a_sink(make_app, servers):
    app = make_app(MAILBOX_DIR=None)
    assert "communication.mailbox_page" not in [i.endpoint for i in app.extensions["console_nav"]]


def test_member_panels_and_widget(login, run_jobs):
    _some_mail(run_jobs)
    browser = login("analyst")
    prefs = browser.get("/communication/members/u0/preferences")
    assert prefs.status_code == 200 and b"Security" in prefs.data and b"always on" in prefs.data
    history = browser.get("/communication/members/u0/history")
    assert history.status_code == 200 and b"Welcome" in history.data
    assert b"No notifications yet" in browser.get("/communication/members/ghost/history").data
    widget = browser.get("/communication/widgets/queue")
    assert widget.status_code == 200 and b"Failed" in widget.data
    assert login("content_manager").get("/communication/widgets/queue").status_code == 403
    from console.ui import MemberPanel

    panels = browser.application.extensions["console_member_panels"]
    assert MemberPanel("Notification preferences", "communication.member_prefs_panel", "communication.view",
                       40) in panels


def test_nav_shows_communication_by_permission(login):
    assert b"Email templates" in login("content_manager").get("/").data
    analyst = login("analyst").get("/").data
    assert b"Mail queue" in analyst and b"Email templates" in analyst
    assert b"Mail queue" not in login("content_manager", email="cm2@x.example.com").get("/").data


def test_demo_seeder_is_idempotent(app):
    import random

    from console.blueprints.communication.demo import seed_communication
    from console.blueprints.platform.demo import seed_members
    from console.timeutil import utcnow

    seed_members(random.Random(1), utcnow())
    templates = EmailTemplate.objects.count()
    first = seed_communication(random.Random(2), utcnow())
    assert first.endswith("emails of history") and EmailTemplate.objects.count() == templates  # the catalog's
    used = set(EmailQueue.objects.distinct("template_name"))
    assert used and used <= {t.name for t in EmailTemplate.objects(builtin=True)}
    count = EmailQueue.objects.count()
    assert seed_communication(random.Random(2), utcnow()) == "history already there"
    assert EmailQueue.objects.count() == count > 0
