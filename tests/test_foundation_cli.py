"""The command-line tasks an operator runs."""

from console.accounts import Admin
from console.audit import AuditLog
from console.authz import Role
from console.members import Member
from console.security import verify_password


def test_create_admin_then_token_then_bearer_call(app, client):
    runner = app.test_cli_runner()
    result = runner.invoke(args=["create-admin", "ops@example.com", "--role", "analyst",
                                 "--password", "a-long-enough-secret"])
    assert result.exit_code == 0, result.output
    assert "Created ops@example.com" in result.output
    token = client.post("/api/auth/token", json={"email": "ops@example.com",
                                                 "password": "a-long-enough-secret"}).json["token"]
    me = client.get("/api/auth/me", headers={"Authorization": f"Bearer {token}"})
    assert me.status_code == 200 and me.json["roles"] == ["analyst"]


def test_create_admin_prompts_for_the_password(app):
    runner = app.test_cli_runner()
    result = runner.invoke(args=["create-admin", "Prompted@Example.com", "--role", "moderator"],
                           input="quiet-harbor-91\nquiet-harbor-91\n")
    assert result.exit_code == 0, result.output
    admin = Admin.objects.get(email="prompted@example.com")
    assert verify_password(admin.password_hash, "quiet-harbor-91")


def test_create_admin_updates_an_existing_admin(app):
    runner = app.test_cli_runner()
    runner.invoke(args=["create-admin", "x@example.com", "--role", "analyst", "--password", "first-secret-1"])
    result = runner.invoke(args=["create-admin", "x@example.com", "--role", "admin", "--password",
                                 "second-secret-2"])
    assert "Updated" in result.output
    assert Admin.objects.get(email="x@example.com").roles == ["admin"]
    assert AuditLog.objects(target="x@example.com", action="admin.updated").first().before == {"roles": ["analyst"]}


def test_create_admin_rejects_unknown_roles_and_weak_passwords(app):
    runner = app.test_cli_runner()
    unknown = runner.invoke(args=["create-admin", "y@example.com", "--role", "wizard", "--password",
                                  "good-password-1"])
    assert unknown.exit_code != 0 and "unknown role(s): wizard" in unknown.output
    weak = runner.invoke(args=["create-admin", "y@example.com", "--role", "analyst", "--password", "short"])
    assert weak.exit_code != 0 and "at least 10 characters" in weak.output
    assert Admin.objects(email="y@example.com").count() == 0


def test_seed_demo_is_idempotent(app):
    app.config["DEMO_PASSWORD"] = "demo-password-for-tests"
    runner = app.test_cli_runner()
    first = runner.invoke(args=["seed-demo"])
    assert first.exit_code == 0, first.output
    counts = (Member.objects.count(), Admin.objects.count(), Role.objects.count())
    second = runner.invoke(args=["seed-demo"])
    assert second.exit_code == 0, second.output
    assert (Member.objects.count(), Admin.objects.count(), Role.objects.count()) == counts
    assert counts[0] == 500
    assert sorted(role for admin in Admin.objects for role in admin.roles) == sorted(
        ["super_admin", "admin", "content_manager", "moderator", "analyst"])
    assert "demo-password-for-tests" in first.output
    emails = Member.objects.distinct("email")
    assert len(emails) == 500 and all("@" in e for e in emails)
