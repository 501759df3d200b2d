"""The built-in catalog (init-db), sending by key, required variables, notify() and the event bindings."""

from __future__ import annotations

import re

import pytest

from tests.communication_helpers import API, add_members, bodies, make_template

KEYS = {"account.welcome", "account.verify_email", "account.password_reset", "event.registered", "event.reminder",
        "event.changed", "volunteer.application_received", "volunteer.approved", "volunteer.declined",
        "donation.receipt", "submission.approved", "submission.rejected", "security.notice",
        "engagement.we_miss_you", "digest.weekly"}
EVENT = {"event_title": "Garden day", "event_when": "12 June at 10:00", "event_url": "https://example.org/e/1"}


def builtin(key: str):
    from console.blueprints.communication.models import EmailTemplate

    return EmailTemplate.objects.get(key=key)


# --- the catalog -------------------------------------------------------------------------------------------

def test_init_db_installs_every_builtin_with_variables_html_and_text(app):
    from console.blueprints.communication.models import EmailLayout, EmailTemplate, NotificationBinding

    templates = list(EmailTemplate.objects(builtin=True))
    assert {t.key for t in templates} == KEYS
    for template in templates:
        assert template.html_body and template.text_body and template.category and template.description
        assert template.declared and all(v["description"] for v in template.declared)
        assert set(template.sample_data) == {v["name"] for v in template.declared}
    assert builtin("security.notice").category == "security" == builtin("account.password_reset").category
    assert {b.event for b in NotificationBinding.objects} == KEYS
    assert EmailLayout.objects.count() == 1


def test_init_db_is_idempotent_and_keeps_an_admins_edit(api, app):
    from console.blueprints.communication.models import EmailTemplate, EmailTemplateVersion
    from console.cli import prepare_database

    client = api("admin")
    template = builtin("submission.approved")
    edited = {**{k: template[k] for k in ("name", "subject", "html_body", "text_body", "category")},
              "subject": "Yay: {{ title or 'it' }} is live", "version": 1}
    assert client.put(f"{API}/templates/{template.id}", json=edited).status_code == 200
    count = EmailTemplate.objects.count()
    prepare_database()
    prepare_database()
    assert EmailTemplate.objects.count() == count
    again = EmailTemplate.objects.get(id=template.id)
    assert again.subject == "Yay: {{ title or 'it' }} is live" and again.version == 2
    assert EmailTemplateVersion.objects(template_id=template.id).count() == 1


def test_an_untouched_builtin_is_refreshed_to_a_new_revision_but_an_edited_one_is_not(app):
    from console.blueprints.communication import catalog
    from console.blueprints.communication.models import EmailTemplate

    coll = EmailTemplate._get_collection()
    coll.update_one({"key": "digest.weekly"}, {"$set": {"builtin_revision": 0, "subject": "old"}})
    coll.update_one({"key": "event.reminder"}, {"$set": {"builtin_revision": 0, "subject": "mine",
                                                          "updated_by": "admin@x.example.com"}})
    catalog.install()
    assert builtin("digest.weekly").subject == catalog.spec("digest.weekly")["subject"]
    assert builtin("event.reminder").subject == "mine"


def test_a_builtin_comes_in_beside_an_admin_template_that_has_its_name(make_app, servers):
    from console.blueprints.communication.models import EmailTemplate
    from console.cli import prepare_database
    from tests.conftest import clean_state

    clean_state(servers)
    application = make_app()
    with application.app_context():
        EmailTemplate(name="Weekly digest", subject="Mine", html_body="<p>mine</p>", category="digest").save()
        prepare_database()
        assert EmailTemplate.objects.get(name="Weekly digest").subject == "Mine"
        assert builtin("digest.weekly").name == "Weekly digest (built-in)"
        assert EmailTemplate.objects(builtin=True).count() == len(KEYS)


def test_reset_restores_the_builtin_as_a_new_version(api):
    from console.blueprints.communication.catalog import spec

    client = api("admin")
    template = builtin("volunteer.approved")
    body = {"name": template.name, "subject": "Edited", "html_body": "<p>edited</p>", "category": "volunteering"}
    assert client.put(f"{API}/templates/{template.id}", json=body).json["version"] == 2
    reset = client.post(f"{API}/templates/{template.id}/reset", json={})
    assert reset.status_code == 200
    assert reset.json["version"] == 3 and reset.json["subject"] == spec("volunteer.approved")["subject"]
    assert reset.json["declared"] and [v["version"] for v in reset.json["versions"]] == [3, 2, 1]
    custom = make_template()
    assert client.post(f"{API}/templates/{custom.id}/reset", json={}).status_code == 409


def test_a_builtin_cannot_be_deleted_only_disabled(api, servers):
    from console.blueprints.communication.models import EmailQueue

    client = api("admin")
    template = builtin("event.registered")
    refused = client.delete(f"{API}/templates/{template.id}")
    assert refused.status_code == 409 and "disable" in refused.json["detail"]
    assert builtin("event.registered")
    off = client.put(f"{API}/templates/{template.id}/enabled", json={"enabled": False})
    assert off.status_code == 200 and off.json["enabled"] is False
    send = client.post(f"{API}/send-email", json={"template_key": "event.registered", "to": {"email": "a@x.org"},
                                                  "variables": EVENT})
    assert send.status_code == 422 and "disabled" in send.json["title"] + send.json["detail"]
    add_members(1)
    skipped = client.post(f"{API}/notify", json={"event": "event.registered", "user_id": "u0", "data": EVENT})
    assert skipped.status_code == 202 and skipped.json == {"skipped": "template_disabled"}
    assert EmailQueue.objects.count() == 0
    assert client.put(f"{API}/templates/{template.id}/enabled", json={"enabled": True}).json["enabled"] is True


# --- sending by key, required variables ---------------------------------------------------------------------

def test_send_email_by_key_renders_the_builtin_in_the_layout(api, run_jobs, servers):
    add_members(1)
    client = api("admin")
    response = client.post(f"{API}/send-email", json={"template_key": "event.registered", "to": {"user_id": "u0"},
                                                      "variables": {**EVENT, "event_place": "the park"}})
    assert response.status_code == 202
    run_jobs()
    [message] = servers.messages()
    assert message["Subject"] == "You're registered: Garden day"
    text, html = bodies(message)
    assert "Hi Member," in text and "12 June at 10:00 at the park" in text
    assert "Email preferences: http://localhost/p/" in text and "Unsubscribe: http://localhost/u/" in text
    assert 'href="http://localhost/p/' in html and "Garden day" in html


def test_batch_send_by_key(api, run_jobs, servers):
    add_members(3)
    client = api("admin")
    response = client.post(f"{API}/batch-send", json={
        "template_key": "digest.weekly", "recipients": [{"user_id": f"u{i}"} for i in range(3)],
        "variables": {"posts": [{"title": "Seeds", "url": "https://example.org/s"}]}})
    assert response.status_code == 202 and response.json["queued"] == 3
    run_jobs()
    assert sorted(m["Subject"] for m in servers.messages()) == ["This week: 1 posts you might like"] * 3


@pytest.mark.parametrize("body", [
    {"template_key": "no.such", "to": {"email": "a@x.org"}},
    {"template_key": "event.registered", "template_id": "0" * 24, "to": {"email": "a@x.org"}},
    {"template_key": "Not A Key", "to": {"email": "a@x.org"}},
])
def test_bad_template_names_are_422(api, body):
    response = api("admin").post(f"{API}/send-email", json=body)
    assert response.status_code == 422 and response.json["errors"][0]["field"] in ("template_key", "template_id")


def test_a_send_missing_required_variables_is_422_naming_each(api, servers):
    from console.blueprints.communication.models import EmailQueue

    client = api("admin")
    response = client.post(f"{API}/send-email", json={"template_key": "event.registered",
                                                      "to": {"email": "a@x.org"},
                                                      "variables": {"event_title": "Garden day"}})
    assert response.status_code == 422
    assert response.headers["Content-Type"] == "application/problem+json"
    assert sorted(e["field"] for e in response.json["errors"]) == ["variables.event_url", "variables.event_when"]
    assert "event_url" in response.json["detail"] and "event_when" in response.json["detail"]
    assert EmailQueue.objects.count() == 0 and servers.messages() == []


def test_a_batch_with_one_recipient_lacking_a_variable_sends_nothing(api):
    from console.blueprints.communication.models import EmailBatch, EmailQueue

    add_members(2)
    response = api("admin").post(f"{API}/batch-send", json={
        "template_key": "donation.receipt", "variables": {"donated_on": "1 Dec"},
        "recipients": [{"user_id": "u0", "variables": {"amount": "€5", "receipt_number": "R1"}},
                       {"user_id": "u1", "variables": {"amount": "€7"}}]})
    assert response.status_code == 422
    assert [e["field"] for e in response.json["errors"]] == ["recipients.1.variables.receipt_number"]
    assert EmailQueue.objects.count() == 0 and EmailBatch.objects.count() == 0


def test_required_means_used_without_a_fallback_or_declared_required(api):
    client = api("admin")
    body = {"name": "Probe", "category": "product", "subject": "{{ a }} {{ b or 'x' }}",
            "html_body": "<p>{{ c|default('y') }} {% if d %}{{ d }}{% endif %} {{ e.title }} {{ first_name }}</p>"
                         "{% for p in posts %}{{ p }}{% endfor %}",
            "declared": [{"name": "b", "description": "declared required despite the fallback", "required": True}]}
    created = client.post(f"{API}/templates", json=body)
    assert created.status_code == 201
    assert created.json["required_variables"] == ["a", "b", "e", "posts"]
    missing = client.post(f"{API}/send-email", json={"template_id": created.json["id"], "to": {"email": "a@x.org"},
                                                     "variables": {"a": 1, "e": {"title": "t"}, "posts": []}})
    assert missing.status_code == 422 and [e["field"] for e in missing.json["errors"]] == ["variables.b"]
    ok = client.post(f"{API}/send-email", json={"template_id": created.json["id"], "to": {"email": "a@x.org"},
                                                "variables": {"a": 1, "b": 2, "e": {"title": "t"}, "posts": []}})
    assert ok.status_code == 202


def test_the_editor_shows_which_variables_are_required(login):
    browser = login("content_manager")
    page = browser.get(f"/communication/templates/{builtin('event.registered').id}").get_data(as_text=True)
    table = page.split('id="declared-variables"')[1].split("</table>")[0]
    rows = dict(re.findall(r"<code>(\w+)</code>.*?<td>(?:<span class=\"[^\"]+\">)?(required|optional)", table))
    assert rows == {"event_title": "required", "event_when": "required", "event_place": "optional",
                    "event_url": "required"}
    assert "Reset to built-in" in page and "Delete template" not in page
    preview = browser.post("/communication/templates/preview", data={
        "name": "x", "category": "product", "subject": "{{ must }}", "html_body": "<p>{{ maybe or 'x' }}</p>",
        "sample_data": "{}"}).get_data(as_text=True)
    assert 'id="required-variables"' in preview and "<code>must</code>" in preview.split("required-variables")[1]


# --- the layout ---------------------------------------------------------------------------------------------

def test_the_layout_is_edited_once_and_every_email_wears_it(api, run_jobs, servers):
    client = api("admin")
    layout = client.get(f"{API}/layout").json
    broken = client.put(f"{API}/layout", json={"html": "<div>{{ content }}</div>", "text": layout["text"]})
    assert broken.status_code == 422
    assert {e["message"] for e in broken.json["errors"]} == {
        "the html layout must contain {{ unsubscribe_url }}", "the html layout must contain {{ preferences_url }}"}
    html = layout["html"].replace("{{ brand }}</td>", "{{ brand }} · Spring edition</td>")
    saved = client.put(f"{API}/layout", json={"html": html, "text": layout["text"], "version": layout["version"]})
    assert saved.status_code == 200 and saved.json["version"] == layout["version"] + 1
    stale = client.put(f"{API}/layout", json={"html": html, "text": layout["text"], "version": layout["version"]})
    assert stale.status_code == 409
    template = make_template()
    client.post(f"{API}/send-email", json={"template_id": str(template.id), "to": {"email": "a@x.org"}})
    run_jobs()
    assert "Spring edition" in bodies(servers.messages()[0])[1]


def test_the_layout_page_saves_refuses_and_resets(login):
    from console.blueprints.communication.catalog import LAYOUT
    from console.blueprints.communication.layout import get_layout

    browser = login("content_manager")
    page = browser.get("/communication/layout").get_data(as_text=True)
    assert "Save layout" in page and "preferences_url" in page
    layout = get_layout()
    refused = browser.post("/communication/layout", data={"html": "<p>{{ content }}</p>", "text": layout["text"],
                                                          "version": layout["version"]})
    assert refused.status_code == 422 and "must contain {{ unsubscribe_url }}" in refused.get_data(as_text=True)
    html = layout["html"].replace("Email preferences", "Your settings")
    saved = browser.post("/communication/layout", data={"html": html, "text": layout["text"],
                                                        "version": layout["version"]})
    assert saved.status_code == 302 and "Your settings" in get_layout()["html"]
    browser.post("/communication/layout", data={"action": "reset"})
    assert get_layout()["html"] == LAYOUT["html"]
    assert login("analyst").post("/communication/layout", data={"action": "reset"}).status_code == 403


# --- notify and bindings ------------------------------------------------------------------------------------

def test_notify_sends_the_bound_template_once_per_event_id(api, run_jobs, servers):
    add_members(1)
    client = api("admin")
    body = {"event": "submission.approved", "user_id": "u0", "event_id": "sub-42",
            "data": {"title": "Photos from the fair", "url": "https://example.org/p/42"}}
    first = client.post(f"{API}/notify", json=body)
    assert first.status_code == 202 and first.json["email_id"] and first.json["status"] == "queued"
    second = client.post(f"{API}/notify", json=body)
    assert second.status_code == 202 and second.json["email_id"] == first.json["email_id"]
    assert second.json["duplicate"] is True
    run_jobs()
    [message] = servers.messages()
    assert message["Subject"] == "Approved: Photos from the fair"
    tracking = client.get(f"{API}/tracking/{first.json['email_id']}").json
    assert tracking["status"] == "sent" and tracking["template"] == "Submission approved"


def test_notify_honours_preferences_suppressions_and_quiet_hours(api, servers):
    from console.blueprints.communication import notify
    from console.blueprints.communication.prefs import save_preferences
    from console.blueprints.communication.suppressions import add

    add_members(4)
    save_preferences("u0", {"categories": {"submissions": False}})
    add("u1@members.example.com", "manual", "test")
    save_preferences("u2", {"quiet_hours": {"start": "00:00", "end": "23:59", "timezone": "UTC"}})
    data = {"reason": "Off topic"}
    assert notify("submission.rejected", user_id="u0", data=data)["skipped"] == "opted_out"
    assert notify("submission.rejected", user_id="u1", data=data)["skipped"] == "suppressed"
    assert notify("submission.rejected", user_id="u2", data=data)["status"] == "deferred"
    security = notify("security.notice", user_id="u0", data={"time": "09:00 UTC", "reset_url": "https://x.org/r"})
    assert security["status"] == "queued"  # security notices ignore category opt-outs
    save_preferences("u3", {"frequency_cap": {"max": 1, "period_hours": 24}})
    assert notify("volunteer.approved", user_id="u3")["status"] == "queued"
    assert notify("volunteer.declined", user_id="u3")["skipped"] == "frequency_capped"


def test_notify_refuses_unknown_events_and_missing_variables(api):
    from console.blueprints.communication.models import EmailQueue

    client = api("admin")
    unknown = client.post(f"{API}/notify", json={"event": "no.such", "email": "a@x.org", "data": {}})
    assert unknown.status_code == 422 and unknown.json["errors"][0]["field"] == "event"
    missing = client.post(f"{API}/notify", json={"event": "event.reminder", "email": "a@x.org", "data": {}})
    assert missing.status_code == 422
    assert {e["field"] for e in missing.json["errors"]} == {"variables.event_title", "variables.event_when",
                                                            "variables.event_url"}
    both = client.post(f"{API}/notify", json={"event": "event.reminder", "email": "a@x.org", "user_id": "u"})
    assert both.status_code == 422
    assert EmailQueue.objects.count() == 0
    assert api("analyst").post(f"{API}/notify", json={"event": "event.reminder", "email": "a@x.org"}).status_code \
        == 403


def test_bindings_api_changes_template_priority_and_switch(api, run_jobs, servers):
    from console.audit import AuditLog

    client = api("admin")
    listed = client.get(f"{API}/bindings").json["items"]
    assert {b["event"] for b in listed} == KEYS
    changed = client.put(f"{API}/bindings/submission.approved", json={"template_key": "account.welcome",
                                                                      "priority": "high", "category": "product"})
    assert changed.status_code == 200
    assert changed.json["template_key"] == "account.welcome" and changed.json["priority"] == "high"
    assert AuditLog.objects(action="binding.update", target="binding:submission.approved").count() == 1
    sent = client.post(f"{API}/notify", json={"event": "submission.approved", "email": "a@x.org",
                                              "data": {"profile_url": "https://x.org/me"}})
    assert sent.status_code == 202
    run_jobs()
    assert servers.messages()[0]["Subject"].startswith("Welcome to the community")
    assert client.put(f"{API}/bindings/submission.approved", json={"enabled": False}).json["enabled"] is False
    assert client.post(f"{API}/notify", json={"event": "submission.approved", "email": "a@x.org"}).json[
        "skipped"] == "binding_disabled"
    assert client.put(f"{API}/bindings/submission.approved", json={"template_key": "nope"}).status_code == 422
    new = client.put(f"{API}/bindings/badge.earned", json={"template_key": "account.welcome"})
    assert new.status_code == 200 and new.json["builtin"] is False
    assert client.get(f"{API}/bindings/badge.earned").json["template_key"] == "account.welcome"
    assert client.get(f"{API}/bindings/nothing.here").status_code == 404
    assert api("analyst").put(f"{API}/bindings/badge.earned", json={"enabled": False}).status_code == 403


def test_bindings_page_lists_and_saves(login):
    browser = login("admin")
    page = browser.get("/communication/bindings").get_data(as_text=True)
    assert "submission.approved" in page and "Bind a new event" in page
    saved = browser.post("/communication/bindings", data={"event": "event.reminder", "template_key": "event.reminder",
                                                          "priority": "high", "category": "", "enabled": "on"})
    assert saved.status_code == 302
    from console.blueprints.communication.bindings import get_binding

    assert get_binding("event.reminder")["priority"] == "high"
    viewer = login("analyst").get("/communication/bindings").get_data(as_text=True)
    assert "submission.approved" in viewer and "Bind a new event" not in viewer


def test_notify_is_what_the_package_offers_other_features(app):
    import console.blueprints.communication as communication

    assert "notify(event, user_id=None, email=None, data=None, event_id=None)" in communication.__doc__
    add_members(1)
    result = communication.notify("volunteer.approved", user_id="u0", data={"opportunity": "Fair"},
                                  event_id="vol-1")
    assert result["status"] == "queued"
    assert communication.notify("volunteer.approved", user_id="u0", event_id="vol-1")["duplicate"] is True


# --- batches in bounded chunks -------------------------------------------------------------------------------

def test_batch_send_writes_in_chunks_and_a_late_render_failure_leaves_nothing(make_app, servers):
    from console.blueprints.communication.models import EmailBatch, EmailQueue, NotificationHistory
    from console.blueprints.communication.sending import create_batch
    from console.cli import prepare_database
    from console.errors import ApiError
    from tests.conftest import clean_state

    clean_state(servers)
    application = make_app(MAIL_CHUNK_SIZE=3)
    with application.app_context():
        prepare_database()
        add_members(7)
        template = make_template(html_body="<p>{{ 10 / n }}</p>", sample_data={"n": 1})
        recipients = [{"user_id": f"u{i}", "variables": {"n": 0 if i == 5 else 1}} for i in range(7)]
        from console.blueprints.communication.prefs import save_preferences

        save_preferences("u1", {"categories": {"product": False}})  # one skipped, with a history entry
        with pytest.raises(ApiError) as refused:
            create_batch(str(template.id), recipients)
        assert refused.value.status == 422 and refused.value.errors[0]["field"] == "recipients.5.variables"
        assert EmailQueue.objects.count() == 0 and EmailBatch.objects.count() == 0
        assert NotificationHistory.objects(kind__ne="preference").count() == 0

        for item in recipients:
            item["variables"]["n"] = 1
        result = create_batch(str(template.id), recipients)
        assert result["queued"] == 6 and result["skipped"] == 1
        jobs = application.extensions["queues"]["low"].jobs
        assert sorted(len(job.args[0]) for job in jobs) == [1, 2, 3]
        assert len({doc.job_id for doc in EmailQueue.objects}) == 3
