-- The task table, its partial indexes, and the NOTIFY trigger.

CREATE TYPE kubetasks_state AS ENUM ('READY', 'RUNNING', 'SUCCESSFUL', 'FAILED', 'CANCELLED');

CREATE TABLE kubetasks_tasks (
    id                bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    queue_name        text NOT NULL CHECK (queue_name <> ''),
    task_name         text NOT NULL CHECK (task_name <> ''),
    priority          smallint NOT NULL DEFAULT 0 CHECK (priority BETWEEN -100 AND 100),
    args              jsonb NOT NULL DEFAULT '[]',
    kwargs            jsonb NOT NULL DEFAULT '{}',
    context           jsonb NOT NULL DEFAULT '{}',
    state             kubetasks_state NOT NULL DEFAULT 'READY',
    run_after         timestamptz NOT NULL DEFAULT now(),
    expected_at       timestamptz,
    enqueued_at       timestamptz NOT NULL DEFAULT now(),
    started_at        timestamptz,
    last_attempted_at timestamptz,
    finished_at       timestamptz,
    attempts          integer NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    max_attempts      integer NOT NULL DEFAULT 1 CHECK (max_attempts >= 1),
    lost_count        integer NOT NULL DEFAULT 0,
    -- The current claim: a fresh uuid per claim fences every write of the claiming worker.
    claim_id          uuid,
    worker_pod        text,
    worker_pod_uid    text,
    worker_nonce      text,
    heartbeat_at      timestamptz,
    worker_ids        text[] NOT NULL DEFAULT '{}',
    return_value      jsonb,
    errors            jsonb NOT NULL DEFAULT '[]',
    CONSTRAINT kubetasks_deadline_after_run_after
        CHECK (expected_at IS NULL OR expected_at >= run_after),
    CONSTRAINT kubetasks_running_has_claim
        CHECK ((state = 'RUNNING') = (claim_id IS NOT NULL))
);

-- Claim order, on READY rows only: finished rows never slow the hot path.
CREATE INDEX kubetasks_tasks_claim_order ON kubetasks_tasks
    (queue_name, priority DESC, expected_at ASC NULLS LAST, run_after, id)
    WHERE state = 'READY';

CREATE INDEX kubetasks_tasks_running ON kubetasks_tasks (queue_name, worker_pod_uid)
    WHERE state = 'RUNNING';

CREATE UNIQUE INDEX kubetasks_tasks_claim ON kubetasks_tasks (claim_id)
    WHERE claim_id IS NOT NULL;

CREATE INDEX kubetasks_tasks_finished ON kubetasks_tasks (finished_at)
    WHERE state IN ('SUCCESSFUL', 'FAILED', 'CANCELLED');

-- Learned run time per task name, for the scaler's deadline term.
CREATE TABLE kubetasks_durations (
    task_name    text PRIMARY KEY,
    mean_seconds double precision NOT NULL CHECK (mean_seconds >= 0),
    samples      bigint NOT NULL DEFAULT 1,
    updated_at   timestamptz NOT NULL DEFAULT now()
);

-- One notification per queue and statement, payload = queue name.
CREATE FUNCTION kubetasks_notify_enqueued() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('kubetasks', q.queue_name)
    FROM (SELECT DISTINCT queue_name FROM new_rows WHERE state = 'READY') AS q;
    RETURN NULL;
END;
$$;

CREATE TRIGGER kubetasks_notify_enqueued
    AFTER INSERT ON kubetasks_tasks
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION kubetasks_notify_enqueued();
