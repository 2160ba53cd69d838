"""Two rotation functions for PostgreSQL, written to AWS's documented contract.

A rotation function is invoked by Secrets Manager four times per rotation, with
``{"Step": ..., "SecretId": ..., "ClientRequestToken": ..., "RotationToken": ...}``:

- ``createSecret``: put a new version (VersionId = the token) labelled AWSPENDING,
  unless it exists already (every step must be safe to run twice);
- ``setSecret``: make the database accept the pending credential;
- ``testSecret``: log in with the pending credential;
- ``finishSecret``: move AWSCURRENT to the pending version (AWSPREVIOUS follows).

These are the customer's functions, played by the test host: they read and write secret
values through the ordinary Secrets Manager API. rotationd itself never does.

The secret value is the JSON shape AWS's database templates use:
``{"engine": "postgres", "host", "port", "username", "password", "dbname"}``, plus
``masterarn`` (the superuser secret) for alternating users.
"""

import json

import pg8000.native
from pg8000.native import identifier, literal

CLONE_SUFFIX = "_clone"
EXCLUDE = "/@\"'\\"


class StepError(Exception):
    """A step failed; the message is what the function would raise (no secret values)."""


def connect(value, timeout=5):
    return pg8000.native.Connection(
        user=value["username"],
        password=value["password"],
        host=value["host"],
        port=int(value["port"]),
        database=value.get("dbname", "postgres"),
        timeout=timeout,
    )


def try_connect(value):
    """A connection, or None when the database refuses these credentials."""
    try:
        return connect(value)
    except pg8000.native.DatabaseError as e:
        # 28P01: invalid_password; 28000: invalid_authorization_specification.
        code = e.args[0].get("C") if e.args and isinstance(e.args[0], dict) else None
        if code in ("28P01", "28000"):
            return None
        raise


class Function:
    """The steps common to both strategies; subclasses decide the new username and how
    the database learns the new password."""

    def __init__(self, sm):
        self.sm = sm

    # -- helpers over the Secrets Manager API (the function's own permissions) --
    def value(self, arn, stage, token=None):
        kw = {"SecretId": arn, "VersionStage": stage}
        if token:
            kw["VersionId"] = token
        return json.loads(self.sm.get_secret_value(**kw)["SecretString"])

    def __call__(self, event):
        step, arn, token = event["Step"], event["SecretId"], event["ClientRequestToken"]
        meta = self.sm.describe_secret(SecretId=arn)
        versions = meta.get("VersionIdsToStages", {})
        if step != "createSecret":
            # AWS's templates: the token must name a version, AWSPENDING unless finished.
            if token not in versions:
                raise StepError(f"secret version {token} has no stage for rotation of secret {arn}")
            if "AWSCURRENT" in versions[token]:
                return
            if "AWSPENDING" not in versions[token]:
                raise StepError(f"secret version {token} not set as AWSPENDING for rotation of secret {arn}")
        getattr(self, step)(arn, token, versions)

    def createSecret(self, arn, token, versions):
        current = self.value(arn, "AWSCURRENT")
        try:
            self.value(arn, "AWSPENDING", token)
            return  # already created by an earlier invocation
        except self.sm.exceptions.ResourceNotFoundException:
            pass
        pending = dict(current)
        pending["username"] = self.next_username(current)
        pending["password"] = self.sm.get_random_password(
            PasswordLength=24, ExcludeCharacters=EXCLUDE
        )["RandomPassword"]
        self.sm.put_secret_value(
            SecretId=arn,
            ClientRequestToken=token,
            SecretString=json.dumps(pending),
            VersionStages=["AWSPENDING"],
        )

    def testSecret(self, arn, token, versions):
        pending = self.value(arn, "AWSPENDING", token)
        conn = try_connect(pending)
        if conn is None:
            raise StepError(f"testSecret: unable to log into the database with the pending secret of {arn}")
        try:
            conn.run("SELECT now()")
        finally:
            conn.close()

    def finishSecret(self, arn, token, versions):
        current = next((v for v, s in versions.items() if "AWSCURRENT" in s), None)
        if current == token:
            return
        self.sm.update_secret_version_stage(
            SecretId=arn,
            VersionStage="AWSCURRENT",
            MoveToVersionId=token,
            RemoveFromVersionId=current,
        )


class SingleUser(Function):
    """One user whose password changes in place (ALTER ROLE ... PASSWORD)."""

    def next_username(self, current):
        return current["username"]

    def setSecret(self, arn, token, versions):
        pending = self.value(arn, "AWSPENDING", token)
        conn = try_connect(pending)
        if conn is not None:
            conn.close()
            return  # already set by an earlier invocation
        conn = try_connect(self.value(arn, "AWSCURRENT"))
        if conn is None:
            try:
                conn = try_connect(self.value(arn, "AWSPREVIOUS"))
            except self.sm.exceptions.ResourceNotFoundException:
                conn = None
        if conn is None:
            raise StepError(f"setSecret: unable to log into the database with the current or previous secret of {arn}")
        try:
            conn.run(
                f"ALTER ROLE {identifier(pending['username'])} WITH PASSWORD {literal(pending['password'])}"
            )
        finally:
            conn.close()


class AlternatingUsers(Function):
    """Two users that alternate: the superuser secret (``masterarn``) creates the clone
    with the same grants, and each rotation sets the other user's password."""

    def next_username(self, current):
        name = current["username"]
        if name.endswith(CLONE_SUFFIX):
            return name[: -len(CLONE_SUFFIX)]
        return name + CLONE_SUFFIX

    def setSecret(self, arn, token, versions):
        pending = self.value(arn, "AWSPENDING", token)
        conn = try_connect(pending)
        if conn is not None:
            conn.close()
            return
        current = self.value(arn, "AWSCURRENT")
        master_arn = current.get("masterarn")
        if not master_arn:
            raise StepError(f"setSecret: {arn} has no masterarn: alternating users need a superuser secret")
        master = json.loads(self.sm.get_secret_value(SecretId=master_arn)["SecretString"])
        conn = try_connect(master)
        if conn is None:
            raise StepError(f"setSecret: unable to log into the database with the superuser secret {master_arn}")
        try:
            user, base = pending["username"], current["username"]
            exists = conn.run("SELECT 1 FROM pg_roles WHERE rolname = :u", u=user)
            if not exists:
                conn.run(f"CREATE ROLE {identifier(user)} WITH LOGIN")
                # The clone gets the grants of the user it alternates with.
                conn.run(f"GRANT {identifier(base)} TO {identifier(user)}")
            conn.run(f"ALTER ROLE {identifier(user)} WITH PASSWORD {literal(pending['password'])}")
        finally:
            conn.close()


FUNCTIONS = {"single-user": SingleUser, "alternating-users": AlternatingUsers}
