-- migration 7: least privilege: nothing PUBLIC, jobrunner_producer, plugin roles
--
-- v7: least privilege (issue 16, class 4). With privileges.sql after it, nothing of the runner's
-- is PUBLIC any more: a plugin's own role (host/engine/plugin_db.cpp) can neither read the queue
-- nor call jr_enqueue. SQL producers get jr_enqueue through the role jobrunner_producer (GRANT
-- jobrunner_producer TO app_role), created here when the runner's role may create roles (else a
-- NOTICE says so, and the operator creates it and grants it EXECUTE on jr_enqueue).
-- jr_plugin_roles keeps each plugin role's password, readable by the runner's role only.

CREATE TABLE jr_plugin_roles (
  plugin      text PRIMARY KEY,
  role_name   text NOT NULL UNIQUE,
  schema_name text NOT NULL UNIQUE,
  password    text NOT NULL,
  created_at  timestamptz NOT NULL DEFAULT now(),
  updated_at  timestamptz NOT NULL DEFAULT now()
);
-- Functions this role creates from now on are not executable by PUBLIC.
ALTER DEFAULT PRIVILEGES REVOKE EXECUTE ON FUNCTIONS FROM PUBLIC;
DO $jr$
BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'jobrunner_producer') THEN
    IF (SELECT rolsuper OR rolcreaterole FROM pg_roles WHERE rolname = current_user) THEN
      BEGIN
        CREATE ROLE jobrunner_producer NOLOGIN;
        COMMENT ON ROLE jobrunner_producer IS
          'jobrunner: members may call jr_enqueue() to enqueue jobs from SQL';
      EXCEPTION WHEN duplicate_object OR unique_violation THEN
        NULL;  -- created at this moment by a runner of another database on this server
      END;
    ELSE
      RAISE NOTICE 'jobrunner: role jobrunner_producer not created (no CREATEROLE); '
                   'create it and GRANT EXECUTE ON FUNCTION jr_enqueue(text, jsonb, jsonb) to it';
    END IF;
  END IF;
  -- PostgreSQL 15 took CREATE on the public schema away from PUBLIC; older servers did not.
  IF EXISTS (SELECT 1 FROM pg_namespace n, aclexplode(n.nspacl) a
              WHERE n.oid = current_schema()::regnamespace AND a.grantee = 0
                AND a.privilege_type = 'CREATE') THEN
    IF pg_has_role((SELECT nspowner FROM pg_namespace
                     WHERE oid = current_schema()::regnamespace), 'MEMBER') THEN
      EXECUTE format('REVOKE CREATE ON SCHEMA %I FROM PUBLIC', current_schema());
    ELSE
      RAISE WARNING 'jobrunner: every role may create objects in schema %, where the jr_* '
                    'tables are: REVOKE CREATE ON SCHEMA % FROM PUBLIC', current_schema(),
                    current_schema();
    END IF;
  END IF;
END $jr$;
