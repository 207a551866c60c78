-- kubetasks migration 0005: schedules, cancelling running tasks, and the trace context of a task.

-- Schedules, from code (registered by the workers that import them) and from TaskQueues
-- (registered by the operator). The row is the one source of truth for when a schedule fires
-- next: a firer advances next_tick with a conditional UPDATE (WHERE next_tick = the tick it
-- read), so of any number of workers and operators exactly one fires each tick.
CREATE TABLE kubetasks_schedules (
    name          text PRIMARY KEY CHECK (name <> ''),
    queue_name    text NOT NULL CHECK (queue_name <> ''),
    task_name     text NOT NULL CHECK (task_name <> ''),
    cron          text,
    every_seconds double precision CHECK (every_seconds >= 1),
    timezone      text NOT NULL DEFAULT 'UTC',
    args          jsonb NOT NULL DEFAULT '[]',
    kwargs        jsonb NOT NULL DEFAULT '{}',
    priority      smallint NOT NULL DEFAULT 0 CHECK (priority BETWEEN -100 AND 100),
    max_attempts  integer NOT NULL DEFAULT 1 CHECK (max_attempts >= 1),
    missed        text NOT NULL DEFAULT 'skip' CHECK (missed IN ('skip', 'run_once')),
    -- Who declared it: 'code', or 'TaskQueue <namespace>/<name>' (whose edits replace it).
    source        text NOT NULL,
    next_tick     timestamptz NOT NULL,
    last_tick     timestamptz,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT kubetasks_schedules_cron_or_every CHECK ((cron IS NULL) <> (every_seconds IS NULL))
);

CREATE INDEX kubetasks_schedules_due ON kubetasks_schedules (queue_name, next_tick);

-- The task a schedule fired, and for which tick: at most one task per (schedule, tick), a
-- second guard behind the conditional UPDATE.
ALTER TABLE kubetasks_tasks ADD COLUMN schedule_name text, ADD COLUMN schedule_tick timestamptz;
CREATE UNIQUE INDEX kubetasks_tasks_schedule_tick ON kubetasks_tasks (schedule_name, schedule_tick)
    WHERE schedule_name IS NOT NULL;

-- Cancelling a RUNNING task: the request is recorded here, the worker running it learns of it
-- with its next heartbeat, and the task ends CANCELLED. A READY task is cancelled at once.
ALTER TABLE kubetasks_tasks ADD COLUMN cancelled_at timestamptz, ADD COLUMN cancelled_by text;

-- The W3C trace context (traceparent, tracestate) current at enqueue, when OpenTelemetry is
-- installed and a span was active: the worker's span for the run is its child.
ALTER TABLE kubetasks_tasks ADD COLUMN trace_context jsonb;
