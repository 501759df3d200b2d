"""The operator's create-admin keeps the same last-super_admin rule as the API."""

from console.accounts import Admin

PASSWORD = "a-long-enough-password-1"


def test_create_admin_cannot_demote_the_last_super_admin(app):
    runner = app.test_cli_runner()
    runner.invoke(args=["create-admin", "root@example.com", "--role", "super_admin", "--password", PASSWORD])
    refused = runner.invoke(args=["create-admin", "root@example.com", "--role", "admin", "--password", PASSWORD])
    assert refused.exit_code != 0 and "last active super_admin" in refused.output
    assert Admin.objects.get(email="root@example.com").roles == ["super_admin"]

    runner.invoke(args=["create-admin", "two@example.com", "--role", "super_admin", "--password", PASSWORD])
    done = runner.invoke(args=["create-admin", "root@example.com", "--role", "admin", "--password", PASSWORD])
    assert done.exit_code == 0, done.output
    assert Admin.objects.get(email="root@example.com").roles == ["admin"]
