-- kubetasks migration 0004: unique tasks, paused queues, queue limits.

-- Unique tasks: a key, per task name, held by one live task at a time. A task holds its key
-- while READY and not yet started ('ready'), or while READY or RUNNING ('ready_or_running',
-- retries and put-backs included, since it never leaves the index until it finishes).
ALTER TABLE kubetasks_tasks
    ADD COLUMN unique_key text CHECK (unique_key <> ''),
    ADD COLUMN unique_while text CHECK (unique_while IN ('ready', 'ready_or_running')),
    ADD CONSTRAINT kubetasks_unique_key_has_mode
        CHECK ((unique_key IS NULL) = (unique_while IS NULL));

-- The predicate is repeated by enqueue_tasks' ON CONFLICT clause (a unit test holds them equal).
CREATE UNIQUE INDEX kubetasks_tasks_unique_live ON kubetasks_tasks (task_name, unique_key)
    WHERE unique_key IS NOT NULL
      AND (state = 'READY' AND (started_at IS NULL OR unique_while = 'ready_or_running')
           OR state = 'RUNNING' AND unique_while = 'ready_or_running');

-- Per-queue settings every worker reads at claim time: paused, a cap on RUNNING tasks across
-- all workers, and a rate of starts kept as a token bucket (tokens as of tokens_at). A queue
-- without a row has none of them.
CREATE TABLE kubetasks_queues (
    queue_name  text PRIMARY KEY CHECK (queue_name <> ''),
    paused      boolean NOT NULL DEFAULT false,
    max_running integer CHECK (max_running >= 1),
    rate_limit  integer CHECK (rate_limit >= 1),
    rate_period interval CHECK (rate_period > interval '0'),
    tokens      double precision NOT NULL DEFAULT 0,
    tokens_at   timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT kubetasks_queues_rate_whole CHECK ((rate_limit IS NULL) = (rate_period IS NULL))
);
