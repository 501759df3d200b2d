"""Jobs the previous release queued under `console.jobs.*` still run after the move to feature packages."""

from console.blueprints.communication.models import EmailQueue
from console.blueprints.engagement.models import ActivityRollup
from console.queues import get_queue
from tests.communication_helpers import add_members, make_template

TRACK = "/api/phase14/engagement/track-activity"


def test_engagement_job_under_the_old_path_still_runs(client, run_jobs):
    event = {"user_id": "legacy", "event": "login", "timestamp": "2026-01-05T10:00:00Z"}
    assert client.post(TRACK, json=event, headers={"X-Ingest-Key": "test-ingest-key"}).status_code == 202
    job = get_queue("low").enqueue("console.jobs.engagement.rebuild_rollups", "2026-01-05", "2026-01-05")
    run_jobs()
    job.refresh()
    assert job.get_status() == "finished"
    assert job.return_value()["events_replayed"] == 1
    assert ActivityRollup.objects(user_id="legacy").count() == 1


def test_mail_job_under_the_old_path_still_delivers(app, run_jobs, servers):
    from console.blueprints.communication.sending import send_email

    template, _ = make_template(), add_members(1)
    email_id = send_email(str(template.id), {"user_id": "u0"})["email_id"]
    app.extensions["redis"].flushdb()  # drop the new-path job: only the old-path one is left to run
    job = get_queue("high").enqueue("console.jobs.mail.deliver", [email_id])
    run_jobs()
    job.refresh()
    assert job.get_status() == "finished"
    assert EmailQueue.objects.get(id=email_id).status == "sent"
    assert [m["To"] for m in servers.messages()] == ["u0@members.example.com"]


def test_optimize_job_under_the_old_path_still_runs_and_reports(client, login, run_jobs):
    from console.blueprints.hardening.optimize import job_status

    job = get_queue("low").enqueue("console.jobs.hardening.optimize", ["ensure_indexes"], {})
    run_jobs()
    status = job_status(job.id)
    assert status["status"] == "finished" and status["result"]["tasks"]["ensure_indexes"]["status"] == "done"
