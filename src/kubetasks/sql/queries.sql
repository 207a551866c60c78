-- Every statement kubetasks sends, by name. Loaded once by kubetasks.queries.
-- Parameters use psycopg's %(name)s style.

-- name: enqueue_tasks
-- Many tasks in one statement; identity values follow the input order. Each parameter is an
-- array with one element per task, named for its column (Store.ENQUEUE_COLUMNS).
INSERT INTO kubetasks_tasks
    (queue_name, task_name, priority, args, kwargs, context, run_after, expected_at, max_attempts,
     unique_key, unique_while, trace_context)
SELECT queue_name, task_name, priority, args, kwargs, context,
       -- "now" is the database's: a deadline the client set a moment ago may already be older.
       coalesce(run_after, least(now(), expected_at)), expected_at, max_attempts,
       unique_key, unique_while, trace_context
FROM unnest(
    %(queue_name)s::text[], %(task_name)s::text[], %(priority)s::smallint[],
    %(args)s::jsonb[], %(kwargs)s::jsonb[], %(context)s::jsonb[],
    %(run_after)s::timestamptz[], %(expected_at)s::timestamptz[], %(max_attempts)s::integer[],
    %(unique_key)s::text[], %(unique_while)s::text[], %(trace_context)s::jsonb[]
) WITH ORDINALITY AS r(queue_name, task_name, priority, args, kwargs, context,
                       run_after, expected_at, max_attempts, unique_key, unique_while,
                       trace_context, ord)
ORDER BY ord
-- A task whose unique key a live task holds is not written (the store then reads the holder).
-- A concurrent transaction that holds the key uncommitted is waited for. The predicate is the
-- index kubetasks_tasks_unique_live's (a unit test holds them equal).
ON CONFLICT (task_name, unique_key)
    WHERE unique_key IS NOT NULL
      AND (state = 'READY' AND (started_at IS NULL OR unique_while = 'ready_or_running')
           OR state = 'RUNNING' AND unique_while = 'ready_or_running')
    DO NOTHING
-- Only what the database decided: the caller has the rest (decoding every column back was a
-- third of a bulk enqueue's time).
RETURNING id, task_name, unique_key, run_after, enqueued_at;

-- name: enqueue_rows_ids
-- A large batch without unique keys is written by COPY straight into the task table
-- (enqueue_rows_copy), which has no RETURNING: its ids are drawn first, in order, with the
-- transaction's now(), which the rows' enqueued_at default and run_after take (as
-- enqueue_tasks' coalesce(run_after, least(now(), expected_at)), computed by the client).
SELECT now() AS now, array(
    SELECT nextval(pg_get_serial_sequence('kubetasks_tasks', 'id'))
    FROM generate_series(1, %(count)s)) AS ids;

-- name: enqueue_rows_copy
-- The rows are written once: COPY into a temporary table and an INSERT ... SELECT from it wrote
-- them twice, sorted them and sent five columns of each back (it was half the time of sending
-- enqueue_tasks' twelve arrays, and this is a tenth less again: bench/RESULTS-compare.md).
-- COPY writes the ids given even to a GENERATED ALWAYS identity column (PostgreSQL's CREATE
-- TABLE: "In the COPY command, user-specified values are always used regardless of this
-- setting"): no migration, and every other insert still leaves the id to the sequence.
-- nextval() needs USAGE on the sequence, and COPY refuses a table with row-level security:
-- there the batch goes by enqueue_tasks (Store.COPY_REFUSED).
COPY kubetasks_tasks (id, queue_name, task_name, priority, args, kwargs, context, run_after,
                      expected_at, max_attempts, trace_context) FROM STDIN;

-- name: enqueue_task
-- One task: enqueue_tasks for a single row, without the cost of packing arrays (a fifth of a
-- one-at-a-time enqueue's time). The conflict clause is enqueue_tasks' (a unit test holds them
-- equal).
INSERT INTO kubetasks_tasks
    (queue_name, task_name, priority, args, kwargs, context, run_after, expected_at, max_attempts,
     unique_key, unique_while, trace_context)
VALUES (%(queue_name)s::text, %(task_name)s::text, %(priority)s::smallint, %(args)s::jsonb,
        %(kwargs)s::jsonb, %(context)s::jsonb,
        coalesce(%(run_after)s::timestamptz, least(now(), %(expected_at)s::timestamptz)),
        %(expected_at)s::timestamptz, %(max_attempts)s::integer, %(unique_key)s::text,
        %(unique_while)s::text, %(trace_context)s::jsonb)
ON CONFLICT (task_name, unique_key)
    WHERE unique_key IS NOT NULL
      AND (state = 'READY' AND (started_at IS NULL OR unique_while = 'ready_or_running')
           OR state = 'RUNNING' AND unique_while = 'ready_or_running')
    DO NOTHING
RETURNING id, task_name, unique_key, run_after, enqueued_at;

-- name: unique_holders
-- The live tasks holding these (task name, unique key) pairs.
SELECT t.* FROM unnest(%(task_names)s::text[], %(unique_keys)s::text[]) AS k(task_name, unique_key)
JOIN kubetasks_tasks AS t USING (task_name, unique_key)
WHERE t.unique_key IS NOT NULL
  AND (t.state = 'READY' AND (t.started_at IS NULL OR t.unique_while = 'ready_or_running')
       OR t.state = 'RUNNING' AND t.unique_while = 'ready_or_running');

-- name: get_task
SELECT * FROM kubetasks_tasks WHERE id = %(id)s;

-- name: list_tasks
SELECT * FROM kubetasks_tasks
WHERE (%(queue_name)s::text IS NULL OR queue_name = %(queue_name)s)
  AND (%(state)s::kubetasks_state IS NULL OR state = %(state)s)
ORDER BY id DESC
LIMIT %(limit)s;

-- name: limited_queues
-- The queues that have a cap or a rate: their claims take the lock first (Store.claim).
SELECT queue_name FROM kubetasks_queues
WHERE max_running IS NOT NULL OR rate_limit IS NOT NULL;

-- name: lock_limited_queues
-- The first statement of a claim's transaction: the settings rows of the claimed queues that
-- have a cap or a rate, locked until the claim commits, so claimers of a limited queue take
-- turns and each one's claim_tasks (a later statement: a later snapshot) counts the RUNNING
-- tasks of the claims before it. Queues without limits lock nothing and claim side by side.
SELECT queue_name FROM kubetasks_queues
WHERE queue_name = ANY(%(queue_names)s::text[])
  AND (max_running IS NOT NULL OR rate_limit IS NOT NULL)
ORDER BY queue_name
FOR UPDATE;

-- name: claim_tasks
-- Each queue's claim-order index is walked through LATERAL, then the best `limit` rows across
-- the queues are claimed. (With `queue_name = ANY(...)` the planner sorts every ready row, so a
-- claim would cost more as the backlog grows.) SKIP LOCKED inside the LATERAL lets concurrent
-- claimers pass each other. Each claimed row carries its rank in claim order (UPDATE returns rows
-- in no particular order).
-- Paused queues and queues with a cap or a rate are left out: those are claimed by
-- claim_limited_tasks, under their lock (Store.claim).
WITH picked AS (
    SELECT id, claim_rank FROM (
        SELECT c.id, row_number() OVER (
            ORDER BY c.priority DESC, c.expected_at ASC NULLS LAST, c.run_after, c.id) AS claim_rank
        FROM unnest(%(queue_names)s::text[]) AS q(queue_name)
        CROSS JOIN LATERAL (
            SELECT id, priority, expected_at, run_after FROM kubetasks_tasks
            WHERE state = 'READY' AND queue_name = q.queue_name AND run_after <= now()
            ORDER BY priority DESC, expected_at ASC NULLS LAST, run_after, id
            LIMIT %(limit)s
            FOR UPDATE SKIP LOCKED
        ) AS c
        WHERE NOT EXISTS (
            SELECT 1 FROM kubetasks_queues AS s
            WHERE s.queue_name = q.queue_name
              AND (s.paused OR s.max_running IS NOT NULL OR s.rate_limit IS NOT NULL))
    ) AS ranked
    WHERE claim_rank <= %(limit)s
)
UPDATE kubetasks_tasks AS t
SET state = 'RUNNING',
    claim_id = gen_random_uuid(),
    worker_pod = %(pod_name)s,
    worker_pod_uid = %(pod_uid)s,
    worker_nonce = %(nonce)s,
    worker_ids = array_append(t.worker_ids, %(worker_id)s),
    attempts = t.attempts + 1,
    started_at = coalesce(t.started_at, now()),
    last_attempted_at = now(),
    heartbeat_at = now()
FROM picked
WHERE t.id = picked.id
-- The columns of a TaskRecord, in the order of its fields (Store builds it from the row's
-- positions), then the rank. The rows come back in binary; the state as text, as an enum has
-- no binary loader.
RETURNING t.id, t.queue_name, t.task_name, t.priority, t.args, t.kwargs, t.context,
    t.state::text AS state, t.run_after, t.expected_at, t.enqueued_at, t.started_at,
    t.last_attempted_at, t.finished_at, t.attempts, t.max_attempts, t.lost_count, t.claim_id,
    t.worker_pod, t.worker_pod_uid, t.worker_nonce, t.heartbeat_at, t.worker_ids, t.return_value,
    t.errors, t.cancelled_at, t.cancelled_by, t.trace_context, picked.claim_rank;

-- name: claim_limited_tasks
-- claim_tasks for queues among which some have settings, sent after lock_limited_queues in
-- the same transaction. Each queue gets a quota: nothing while paused; at most max_running
-- minus its RUNNING tasks; at most the whole tokens of its rate bucket (refilled by rate_limit
-- per rate_period, up to rate_limit), which `spent` then takes for the tasks claimed.
-- (The quotas are not known when the statement is planned, so the claimed ids are matched
-- through the primary key explicitly: the planner would otherwise scan the table.)
WITH queues AS (
    SELECT q.queue_name, s.rate_limit, b.tokens, b.at,
           CASE WHEN s.queue_name IS NULL THEN %(limit)s
                WHEN s.paused THEN 0
                ELSE least(%(limit)s,
                           CASE WHEN s.max_running IS NULL THEN %(limit)s
                                ELSE s.max_running - (
                                    SELECT count(*) FROM kubetasks_tasks AS r
                                    WHERE r.state = 'RUNNING' AND r.queue_name = q.queue_name)
                           END,
                           coalesce(floor(b.tokens)::integer, %(limit)s))
           END AS quota
    FROM unnest(%(queue_names)s::text[]) AS q(queue_name)
    LEFT JOIN kubetasks_queues AS s USING (queue_name)
    CROSS JOIN LATERAL (
        SELECT clock_timestamp() AS at,
               least(s.rate_limit::float8, s.tokens + s.rate_limit * extract(epoch FROM
                   greatest(clock_timestamp() - s.tokens_at, interval '0'))
                   / extract(epoch FROM s.rate_period)) AS tokens
    ) AS b
), picked AS (
    SELECT id, claim_rank FROM (
        SELECT c.id, row_number() OVER (
            ORDER BY c.priority DESC, c.expected_at ASC NULLS LAST, c.run_after, c.id) AS claim_rank
        FROM queues AS q
        CROSS JOIN LATERAL (
            SELECT id, priority, expected_at, run_after FROM kubetasks_tasks
            WHERE state = 'READY' AND queue_name = q.queue_name AND run_after <= now()
            ORDER BY priority DESC, expected_at ASC NULLS LAST, run_after, id
            LIMIT greatest(q.quota, 0)
            FOR UPDATE SKIP LOCKED
        ) AS c
    ) AS ranked
    WHERE claim_rank <= %(limit)s
), claimed AS (
    UPDATE kubetasks_tasks AS t
    SET state = 'RUNNING',
        claim_id = gen_random_uuid(),
        worker_pod = %(pod_name)s,
        worker_pod_uid = %(pod_uid)s,
        worker_nonce = %(nonce)s,
        worker_ids = array_append(t.worker_ids, %(worker_id)s),
        attempts = t.attempts + 1,
        started_at = coalesce(t.started_at, now()),
        last_attempted_at = now(),
        heartbeat_at = now()
    FROM picked
    WHERE t.id = picked.id AND t.id = ANY (ARRAY(SELECT id FROM picked))
    -- As claim_tasks returns them: a TaskRecord's fields in order, then the rank.
    RETURNING t.id, t.queue_name, t.task_name, t.priority, t.args, t.kwargs, t.context,
        t.state::text AS state, t.run_after, t.expected_at, t.enqueued_at, t.started_at,
        t.last_attempted_at, t.finished_at, t.attempts, t.max_attempts, t.lost_count, t.claim_id,
        t.worker_pod, t.worker_pod_uid, t.worker_nonce, t.heartbeat_at, t.worker_ids, t.return_value,
        t.errors, t.cancelled_at, t.cancelled_by, t.trace_context, picked.claim_rank
), spent AS (
    UPDATE kubetasks_queues AS s
    SET tokens = q.tokens - p.started, tokens_at = q.at
    FROM (SELECT queue_name, count(*) AS started FROM claimed GROUP BY queue_name) AS p
    JOIN queues AS q USING (queue_name)
    WHERE s.queue_name = p.queue_name AND q.rate_limit IS NOT NULL
)
SELECT * FROM claimed;

-- name: complete_tasks
-- Fenced on the claim: a write for a claim that was taken away changes nothing. The claims and
-- the durations are sent in binary (%b): a fifth of the client's cost of the statement in text.
WITH done AS (
    UPDATE kubetasks_tasks AS t
    SET state = 'SUCCESSFUL', return_value = r.return_value, finished_at = now(),
        claim_id = NULL, heartbeat_at = NULL
    FROM unnest(%(claim_ids)b::uuid[], %(return_values)s::jsonb[], %(durations)b::float8[])
        AS r(claim_id, return_value, seconds)
    WHERE t.claim_id = r.claim_id AND t.state = 'RUNNING'
    RETURNING t.task_name, r.claim_id, r.seconds
), learned AS (
    INSERT INTO kubetasks_durations AS d (task_name, mean_seconds, samples)
    -- The names in `learn` only (all when it is null): a worker folds each name at most once a
    -- second, so that workers finishing thousands of tasks a second do not queue on its row.
    SELECT task_name, avg(seconds), count(*) FROM done
    WHERE %(learn)s::text[] IS NULL OR task_name = ANY(%(learn)s::text[])
    GROUP BY task_name
    ON CONFLICT (task_name) DO UPDATE
    -- A running mean over the first samples, then an exponential one that follows change.
    SET mean_seconds = d.mean_seconds + (excluded.mean_seconds - d.mean_seconds)
            * least(1.0, greatest(0.05, excluded.samples::float8 / (d.samples + excluded.samples))),
        samples = d.samples + excluded.samples,
        updated_at = now()
)
-- The claims that were taken away, whose outcome was not recorded: none, nearly always, so
-- that the client has nothing to read back.
SELECT claim_id FROM unnest(%(claim_ids)b::uuid[]) AS r(claim_id)
EXCEPT SELECT claim_id FROM done;

-- name: fail_task
UPDATE kubetasks_tasks
SET state = 'FAILED', errors = errors || jsonb_build_array(%(error)s::jsonb),
    finished_at = now(), claim_id = NULL, heartbeat_at = NULL
WHERE claim_id = %(claim_id)s AND state = 'RUNNING'
RETURNING id;

-- name: retry_task
-- A task whose cancellation was asked for meanwhile is not retried: it ends CANCELLED.
UPDATE kubetasks_tasks
SET state = CASE WHEN cancelled_at IS NULL THEN 'READY' ELSE 'CANCELLED' END::kubetasks_state,
    finished_at = CASE WHEN cancelled_at IS NOT NULL THEN now() END,
    errors = errors || jsonb_build_array(%(error)s::jsonb),
    run_after = %(run_after)s, claim_id = NULL, heartbeat_at = NULL
WHERE claim_id = %(claim_id)s AND state = 'RUNNING'
RETURNING id;

-- name: postpone_task
-- Back to READY without counting the attempt and without an error: not this worker's to run.
-- A task whose cancellation was asked for ends CANCELLED instead (as release_tasks does).
UPDATE kubetasks_tasks
SET state = CASE WHEN cancelled_at IS NULL THEN 'READY' ELSE 'CANCELLED' END::kubetasks_state,
    finished_at = CASE WHEN cancelled_at IS NOT NULL THEN now() END,
    attempts = greatest(attempts - 1, 0), run_after = %(run_after)s,
    claim_id = NULL, heartbeat_at = NULL
WHERE claim_id = %(claim_id)s AND state = 'RUNNING'
RETURNING id;

-- name: heartbeat
-- Also tells the worker which of its tasks someone asked to cancel (cancel_task).
UPDATE kubetasks_tasks SET heartbeat_at = now()
WHERE claim_id = ANY(%(claim_ids)s) AND state = 'RUNNING'
RETURNING claim_id, cancelled_at IS NOT NULL AS cancel_requested;

-- name: release_tasks
-- Put back unfinished work on a clean shutdown: the attempt did not happen.
-- A task whose cancellation was asked for ends CANCELLED instead.
UPDATE kubetasks_tasks
SET state = CASE WHEN cancelled_at IS NULL THEN 'READY' ELSE 'CANCELLED' END::kubetasks_state,
    finished_at = CASE WHEN cancelled_at IS NOT NULL THEN now() END,
    attempts = greatest(attempts - 1, 0), claim_id = NULL, heartbeat_at = NULL
WHERE claim_id = ANY(%(claim_ids)s) AND state = 'RUNNING'
RETURNING id, queue_name;

-- name: claims_of_pod
-- Claims held by a pod instance: all of them, all but those of one live process (nonce), or
-- those made before its current container started (a restart).
SELECT claim_id FROM kubetasks_tasks
WHERE state = 'RUNNING' AND worker_pod_uid = %(pod_uid)s
  AND (%(except_nonce)s::text IS NULL OR worker_nonce <> %(except_nonce)s)
  AND (%(claimed_before)s::timestamptz IS NULL OR last_attempted_at < %(claimed_before)s);

-- name: claims_of_absent_pods
-- Only pods whose names carry the prefix (one Deployment's pods): workers elsewhere that serve
-- the same queue are left to the heartbeat sweep.
SELECT claim_id FROM kubetasks_tasks
WHERE state = 'RUNNING' AND queue_name = %(queue_name)s
  AND starts_with(worker_pod, %(pod_name_prefix)s)
  AND worker_pod_uid IS NOT NULL AND worker_pod_uid <> ALL(%(live_pod_uids)s::text[])
  AND last_attempted_at < now() - %(min_age)s::interval;

-- name: claims_with_stale_heartbeat
SELECT claim_id FROM kubetasks_tasks
WHERE state = 'RUNNING' AND heartbeat_at < now() - %(timeout)s::interval
  AND (%(queue_name)s::text IS NULL OR queue_name = %(queue_name)s);

-- name: running_tasks_to_requeue
-- What `kubetasks requeue` puts back (or, with --dry-run, would): RUNNING tasks of one pod,
-- or with a heartbeat older than the timeout; in id order, to be put back in batches. Only
-- the columns it shows and needs: decoding whole rows took most of the time of a large requeue.
SELECT id, queue_name, task_name, claim_id, worker_pod, lost_count FROM kubetasks_tasks
WHERE state = 'RUNNING'
  AND (%(pod_uid)s::text IS NULL OR worker_pod_uid = %(pod_uid)s)
  AND (%(timeout)s::interval IS NULL OR heartbeat_at < now() - %(timeout)s::interval)
  AND (%(queue_name)s::text IS NULL OR queue_name = %(queue_name)s)
ORDER BY id;

-- name: requeue_lost
-- The claiming process is gone: put the task back, or fail it once it was lost too often.
-- %(error)s is the TaskLost error as Python shapes it (TaskError.to_json); each row adds what
-- only it knows: its attempt, the worker that held it, and how often it was lost.
UPDATE kubetasks_tasks
SET state = CASE WHEN cancelled_at IS NOT NULL THEN 'CANCELLED'
                 WHEN lost_count + 1 > %(max_lost)s THEN 'FAILED' ELSE 'READY' END::kubetasks_state,
    finished_at = CASE WHEN cancelled_at IS NOT NULL OR lost_count + 1 > %(max_lost)s THEN now() END,
    lost_count = lost_count + 1,
    attempts = greatest(attempts - 1, 0),
    errors = errors || jsonb_build_array(%(error)s::jsonb || jsonb_build_object(
        'message', (%(error)s::jsonb ->> 'message') || CASE WHEN lost_count + 1 > %(max_lost)s
            THEN format(' (lost %%s times, more than maxLost=%%s)', lost_count + 1, %(max_lost)s)
            ELSE '' END,
        'attempt', attempts,
        'worker_id', worker_pod || '/' || worker_nonce)),
    claim_id = NULL, heartbeat_at = NULL
WHERE claim_id = ANY(%(claim_ids)s) AND state = 'RUNNING'
-- attempt: the one that was lost (attempts, as returned, no longer counts it).
RETURNING id, queue_name, task_name, state, attempts + 1 AS attempt;

-- name: planner_rows
-- How many rows the planner believes the task table holds (-1: never analyzed).
SELECT reltuples::bigint AS planner_rows FROM pg_class WHERE oid = 'kubetasks_tasks'::regclass;

-- name: analyze_sample
-- Sent before analyze_tasks, in its transaction: it samples 3,000 rows instead of 30,000. The
-- planner's row count comes out as before and the claim's plan the same, in a quarter of the
-- time (20,000 tasks: 7-9 ms against 33-43 ms); autovacuum's own ANALYZE takes a full sample.
SET LOCAL default_statistics_target = 10;

-- name: analyze_tasks
-- Without statistics the planner takes a fresh backlog for a few rows and serves the claim from
-- the run_after index, sorting every ready row of the queue (17 ms a claim at 30,000, growing
-- with the backlog) until autovacuum's ANALYZE, up to a minute later. Skipped with a warning,
-- not an error, where the role does not own the table. Only the columns the claim and the
-- statistics filter and order by: the jsonb ones took half of it (50,000 tasks: 0.07-0.14 s
-- against 0.26-0.31 s for every column, an eighth of the enqueue_many before it); autovacuum
-- still analyzes them all.
ANALYZE kubetasks_tasks (queue_name, state, priority, expected_at, run_after);

-- name: notify_queues
SELECT pg_notify(%(channel)s, q) FROM unnest(%(queue_names)s::text[]) AS q;

-- name: cancel_task
-- A READY task ends CANCELLED at once. For a RUNNING one the request is recorded: its worker
-- learns of it with its next heartbeat, stops the task and ends it CANCELLED (cancel_running).
UPDATE kubetasks_tasks
SET state = CASE WHEN state = 'READY' THEN 'CANCELLED' ELSE state END::kubetasks_state,
    finished_at = CASE WHEN state = 'READY' THEN now() END,
    cancelled_at = now(), cancelled_by = %(by)s
WHERE id = %(id)s AND (state = 'READY' OR (state = 'RUNNING' AND cancelled_at IS NULL))
RETURNING id;

-- name: cancel_running
-- The worker stopped a task whose cancellation was asked for (fenced on its claim).
UPDATE kubetasks_tasks
SET state = 'CANCELLED', finished_at = now(), claim_id = NULL, heartbeat_at = NULL
WHERE claim_id = %(claim_id)s AND state = 'RUNNING'
RETURNING id;

-- name: rerun_task
-- A FAILED or CANCELLED task run again (the admin's "retry"): due now (its deadline, if that
-- is earlier, keeps its claim order), one more attempt than it had, its lost count forgiven;
-- its errors stay as the history of the earlier attempts. Its cancellation goes: a worker
-- would otherwise read it as asked for again, at the first heartbeat of the new attempt.
UPDATE kubetasks_tasks
SET state = 'READY', run_after = least(now(), expected_at), finished_at = NULL,
    return_value = NULL, max_attempts = attempts + 1, lost_count = 0,
    cancelled_at = NULL, cancelled_by = NULL
WHERE id = %(id)s AND state IN ('FAILED', 'CANCELLED')
RETURNING id, queue_name;

-- name: ready_queues
-- The queues that have READY tasks, for a worker serving every queue: a skip scan of the claim
-- order index (one index probe per queue), not a scan of the ready rows.
WITH RECURSIVE found AS (
    (SELECT queue_name FROM kubetasks_tasks WHERE state = 'READY' ORDER BY queue_name LIMIT 1)
    UNION ALL
    SELECT (SELECT t.queue_name FROM kubetasks_tasks AS t
            WHERE t.state = 'READY' AND t.queue_name > found.queue_name
            ORDER BY t.queue_name LIMIT 1)
    FROM found WHERE found.queue_name IS NOT NULL
)
SELECT queue_name FROM found
WHERE queue_name IS NOT NULL AND NOT (queue_name = ANY(%(excluded)s::text[]));

-- name: next_run_after
-- When a claim could next find work: the earliest run_after, or the next token of a queue's
-- rate if later. Paused queues, and queues at their cap (a finishing task frees the slot of
-- the worker that ran it, which claims again), count only at the poll interval.
SELECT min(greatest(first.run_after, s.tokens_at + (1 - s.tokens) * s.rate_period / s.rate_limit))
    AS next_run_after
FROM unnest(%(queue_names)s::text[]) AS q(queue_name)
LEFT JOIN kubetasks_queues AS s USING (queue_name)
CROSS JOIN LATERAL (
    SELECT run_after FROM kubetasks_tasks
    WHERE state = 'READY' AND queue_name = q.queue_name
    ORDER BY run_after
    LIMIT 1
) AS first
WHERE NOT coalesce(s.paused, false)
  AND (s.max_running IS NULL OR s.max_running > (
      SELECT count(*) FROM kubetasks_tasks AS r
      WHERE r.state = 'RUNNING' AND r.queue_name = q.queue_name));

-- name: queue_stats
SELECT queue_name,
       count(*) FILTER (WHERE state = 'READY' AND run_after <= now()) AS ready,
       count(*) FILTER (WHERE state = 'READY' AND run_after > now()) AS scheduled,
       count(*) FILTER (WHERE state = 'RUNNING') AS running,
       count(*) FILTER (WHERE expected_at < now()) AS overdue,
       min(expected_at) FILTER (WHERE state = 'READY') AS next_deadline
FROM kubetasks_tasks
WHERE state IN ('READY', 'RUNNING')
  AND (%(queue_names)s::text[] IS NULL OR queue_name = ANY(%(queue_names)s))
GROUP BY queue_name
ORDER BY queue_name;

-- name: queue_settings
SELECT queue_name, paused, max_running, rate_limit, rate_period FROM kubetasks_queues
WHERE queue_name = ANY(%(queue_names)s::text[])
ORDER BY queue_name;

-- name: set_queue_paused
-- Every worker reads the flag at its next claim; the NOTIFY wakes them to claim at once.
WITH saved AS (
    INSERT INTO kubetasks_queues AS s (queue_name, paused) VALUES (%(queue_name)s, %(paused)s)
    ON CONFLICT (queue_name) DO UPDATE SET paused = excluded.paused, updated_at = now()
    RETURNING queue_name, paused, max_running, rate_limit, rate_period
)
SELECT saved.*, pg_notify(%(channel)s, saved.queue_name) FROM saved;

-- name: set_queue_limits
-- A new or changed rate starts with a full bucket.
WITH saved AS (
    INSERT INTO kubetasks_queues AS s (queue_name, max_running, rate_limit, rate_period, tokens,
                                       tokens_at)
    VALUES (%(queue_name)s, %(max_running)s, %(rate_limit)s, %(rate_period)s::interval,
            coalesce(%(rate_limit)s, 0), clock_timestamp())
    ON CONFLICT (queue_name) DO UPDATE
    SET max_running = excluded.max_running, rate_limit = excluded.rate_limit,
        rate_period = excluded.rate_period, updated_at = now(),
        tokens = CASE WHEN (s.rate_limit, s.rate_period)
                           IS NOT DISTINCT FROM (excluded.rate_limit, excluded.rate_period)
                      THEN s.tokens ELSE excluded.tokens END,
        tokens_at = CASE WHEN (s.rate_limit, s.rate_period)
                              IS NOT DISTINCT FROM (excluded.rate_limit, excluded.rate_period)
                         THEN s.tokens_at ELSE excluded.tokens_at END
    RETURNING queue_name, paused, max_running, rate_limit, rate_period
)
SELECT saved.*, pg_notify(%(channel)s, saved.queue_name) FROM saved;

-- name: busy_pods
SELECT worker_pod_uid, count(*) AS running FROM kubetasks_tasks
WHERE state = 'RUNNING' AND queue_name = %(queue_name)s
GROUP BY worker_pod_uid;

-- name: oldest_ready
-- Seconds since the queue's longest-waiting due READY task could run (0 when none is due):
-- the first entry of kubetasks_tasks_next_run_after, one index probe however long the queue.
SELECT coalesce(extract(epoch FROM now() - min(run_after)), 0)::float8 AS seconds
FROM kubetasks_tasks
WHERE state = 'READY' AND queue_name = %(queue_name)s AND run_after <= now();

-- name: deadline_work
-- For each READY task with a deadline, in claim order: the estimated work (seconds) of it
-- and of every task claimed before it, and how many tasks that is. Tasks due within the
-- horizon count as ready. A task name that never finished is estimated at the default, raised to
-- `age_factor` times the age of its oldest running attempt (a lower bound on its duration).
WITH ready AS (
    SELECT priority, expected_at, run_after, id, task_name FROM kubetasks_tasks
    WHERE state = 'READY' AND queue_name = %(queue_name)s
      AND run_after <= now() + %(horizon)s::interval
    ORDER BY priority DESC, expected_at ASC NULLS LAST, run_after, id
    LIMIT %(scan_limit)s
), running_age AS (
    SELECT task_name, %(age_factor)s * extract(epoch FROM now() - min(last_attempted_at)) AS seconds
    FROM kubetasks_tasks WHERE state = 'RUNNING' AND queue_name = %(queue_name)s
    GROUP BY task_name
), estimated AS (
    SELECT r.*, coalesce(d.mean_seconds, greatest(%(default_seconds)s::float8, a.seconds))
               AS estimate_seconds
    FROM ready AS r LEFT JOIN kubetasks_durations AS d USING (task_name)
    LEFT JOIN running_age AS a USING (task_name)
), ordered AS (
    SELECT expected_at, estimate_seconds,
           sum(estimate_seconds) OVER claim_order AS work_seconds,
           row_number() OVER claim_order AS position
    FROM estimated
    WINDOW claim_order AS (ORDER BY priority DESC, expected_at ASC NULLS LAST, run_after, id)
)
SELECT expected_at, work_seconds, position FROM ordered
WHERE expected_at IS NOT NULL
ORDER BY work_seconds
LIMIT %(limit)s;

-- name: backlog_work
-- Estimated seconds of work of the tasks due now and running: their learned mean durations, or
-- for a task name that never finished, as in deadline_work.
WITH running_age AS (
    SELECT task_name, %(age_factor)s * extract(epoch FROM now() - min(last_attempted_at)) AS seconds
    FROM kubetasks_tasks WHERE state = 'RUNNING' AND queue_name = %(queue_name)s
    GROUP BY task_name
)
SELECT coalesce(sum(coalesce(d.mean_seconds, greatest(%(default_seconds)s::float8, a.seconds))), 0)
       AS work_seconds
FROM kubetasks_tasks AS t LEFT JOIN kubetasks_durations AS d USING (task_name)
LEFT JOIN running_age AS a USING (task_name)
WHERE t.queue_name = %(queue_name)s
  AND (t.state = 'RUNNING' OR (t.state = 'READY' AND t.run_after <= now()));

-- name: queue_statistics
-- Everything one scaling step reads of each queue given, in one round trip for any number of
-- queues (the operator reads every TaskQueue of a database together), whose cost per queue does
-- not grow with the table: each part reads a bounded slice of a partial index (READY in claim order, READY by
-- run_after, READY with a deadline, RUNNING), never the finished rows. The first `scan_limit`
-- tasks in claim order that are due (or due within the horizon) give the backlog work and the
-- deadline terms, as in backlog_work and deadline_work; ready, scheduled and overdue are counted
-- up to `scan_limit` (a count equal to it means "at least"); see Store.queue_statistics. The
-- ORDER BY of each capped count holds it to its index: without it the planner may take a
-- sequential scan as the cheaper way to find `scan_limit` rows, and wade through finished ones.
SELECT q.queue_name, stats.*
FROM unnest(%(queue_names)s::text[], %(scan_limits)s::int[], %(horizons)s::interval[],
            %(default_seconds)s::float8[], %(deadline_limits)s::int[]) WITH ORDINALITY
     AS q(queue_name, scan_limit, horizon, default_seconds, deadline_limit, n)
CROSS JOIN LATERAL (
    WITH running AS (
        SELECT task_name, worker_pod_uid, last_attempted_at, expected_at FROM kubetasks_tasks
        WHERE state = 'RUNNING' AND queue_name = q.queue_name
    ), running_age AS (
        SELECT task_name, %(age_factor)s * extract(epoch FROM now() - min(last_attempted_at)) AS seconds
        FROM running GROUP BY task_name
    ), scanned AS (
        SELECT priority, expected_at, run_after, id, task_name FROM kubetasks_tasks
        WHERE state = 'READY' AND queue_name = q.queue_name
          AND run_after <= now() + q.horizon
        ORDER BY priority DESC, expected_at ASC NULLS LAST, run_after, id
        LIMIT q.scan_limit
    ), estimated AS (
        SELECT s.*, coalesce(d.mean_seconds, greatest(q.default_seconds, a.seconds))
                   AS estimate_seconds
        FROM scanned AS s LEFT JOIN kubetasks_durations AS d USING (task_name)
        LEFT JOIN running_age AS a USING (task_name)
    ), ordered AS (
        SELECT expected_at, run_after, estimate_seconds,
               sum(estimate_seconds) OVER claim_order AS work_seconds,
               row_number() OVER claim_order AS position
        FROM estimated
        WINDOW claim_order AS (ORDER BY priority DESC, expected_at ASC NULLS LAST, run_after, id)
    ), deadlines AS (
        SELECT expected_at, work_seconds, position FROM ordered
        WHERE expected_at IS NOT NULL
        ORDER BY position LIMIT q.deadline_limit
    ), running_work AS (
        SELECT coalesce(sum(coalesce(d.mean_seconds, greatest(q.default_seconds, a.seconds))), 0)
               AS seconds
        FROM running AS r LEFT JOIN kubetasks_durations AS d USING (task_name)
        LEFT JOIN running_age AS a USING (task_name)
    )
    SELECT
        (SELECT count(*) FROM (
            SELECT 1 FROM kubetasks_tasks
            WHERE state = 'READY' AND queue_name = q.queue_name AND run_after <= now()
            ORDER BY run_after LIMIT q.scan_limit) AS due) AS ready,
        (SELECT count(*) FROM (
            SELECT 1 FROM kubetasks_tasks
            WHERE state = 'READY' AND queue_name = q.queue_name AND run_after > now()
            ORDER BY run_after LIMIT q.scan_limit) AS later) AS scheduled,
        (SELECT count(*) FROM running) AS running,
        least(q.scan_limit, (SELECT count(*) FROM (
            SELECT 1 FROM kubetasks_tasks
            WHERE state = 'READY' AND queue_name = q.queue_name
              AND expected_at IS NOT NULL AND expected_at < now()
            ORDER BY expected_at LIMIT q.scan_limit) AS late)
        + (SELECT count(*) FROM running WHERE expected_at < now())) AS overdue,
        (SELECT min(expected_at) FROM kubetasks_tasks
         WHERE state = 'READY' AND queue_name = q.queue_name AND expected_at IS NOT NULL)
            AS next_deadline,
        (SELECT coalesce(extract(epoch FROM now() - min(run_after)), 0)::float8 FROM kubetasks_tasks
         WHERE state = 'READY' AND queue_name = q.queue_name AND run_after <= now())
            AS oldest_ready_seconds,
        (SELECT coalesce(sum(estimate_seconds) FILTER (WHERE run_after <= now()), 0) FROM estimated)
        + (SELECT seconds FROM running_work) AS work_seconds,
        (SELECT count(*) FROM scanned) AS scanned,
        (SELECT coalesce(jsonb_object_agg(worker_pod_uid, tasks), '{}'::jsonb) FROM (
            SELECT worker_pod_uid, count(*) AS tasks FROM running
            WHERE worker_pod_uid IS NOT NULL GROUP BY worker_pod_uid) AS pods) AS busy_pods,
        (SELECT coalesce(array_agg(expected_at ORDER BY position), '{}') FROM deadlines)
            AS deadline_expected_at,
        (SELECT coalesce(array_agg(work_seconds ORDER BY position), '{}') FROM deadlines)
            AS deadline_work_seconds,
        (SELECT coalesce(array_agg(position ORDER BY position), '{}') FROM deadlines)
            AS deadline_positions,
        coalesce(s.paused, false) AS paused, s.max_running, s.rate_limit, s.rate_period
    FROM (SELECT 1) AS one
    LEFT JOIN kubetasks_queues AS s ON s.queue_name = q.queue_name
) AS stats
ORDER BY q.n;

-- name: prune_finished
WITH gone AS (
    DELETE FROM kubetasks_tasks
    WHERE id IN (
        SELECT id FROM kubetasks_tasks
        WHERE ((state = 'SUCCESSFUL' AND finished_at < now() - %(successful)s::interval)
           OR (state IN ('FAILED', 'CANCELLED') AND finished_at < now() - %(failed)s::interval))
        AND (%(queue_name)s::text IS NULL OR queue_name = %(queue_name)s)
        LIMIT %(limit)s
    )
    RETURNING 1
)
SELECT count(*) AS deleted FROM gone;

-- name: count_prunable
-- What prune_finished would delete now: a dry run's answer.
SELECT count(*) AS prunable FROM kubetasks_tasks
WHERE ((state = 'SUCCESSFUL' AND finished_at < now() - %(successful)s::interval)
   OR (state IN ('FAILED', 'CANCELLED') AND finished_at < now() - %(failed)s::interval))
  AND (%(queue_name)s::text IS NULL OR queue_name = %(queue_name)s);

-- name: lock_migrations
-- Held until the migration's transaction ends: two migrators serialise, the second finds the
-- work done.
SELECT pg_advisory_xact_lock(%(lock_key)s);

-- name: create_migrations_table
CREATE TABLE IF NOT EXISTS kubetasks_migrations (
    version    integer PRIMARY KEY,
    name       text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
);

-- name: applied_migrations
SELECT version FROM kubetasks_migrations;

-- name: record_migration
INSERT INTO kubetasks_migrations (version, name) VALUES (%(version)s, %(name)s);

-- name: listen_for_tasks
-- The worker's wake-up call: enqueue (trigger) and put-backs NOTIFY this channel
-- (store.CHANNEL) with the queue name as payload. LISTEN takes no parameter: a test holds this
-- name, and the trigger's, to store.CHANNEL.
LISTEN kubetasks;

-- name: register_schedules
-- Insert or update schedules by name. A schedule whose timing changed starts again from the
-- first tick the caller computed; one whose timing did not keeps its next tick, so that a
-- worker starting (or the operator reconciling) never moves a tick nor fires one twice.
INSERT INTO kubetasks_schedules AS s
    (name, queue_name, task_name, cron, every_seconds, timezone, args, kwargs, priority,
     max_attempts, missed, source, next_tick)
SELECT * FROM unnest(
    %(names)s::text[], %(queue_names)s::text[], %(task_names)s::text[], %(crons)s::text[],
    %(every_seconds)s::float8[], %(timezones)s::text[], %(args)s::jsonb[], %(kwargs)s::jsonb[],
    %(priorities)s::smallint[], %(max_attempts)s::integer[], %(missed)s::text[],
    %(sources)s::text[], %(next_ticks)s::timestamptz[])
ON CONFLICT (name) DO UPDATE
SET queue_name = excluded.queue_name, task_name = excluded.task_name, cron = excluded.cron,
    every_seconds = excluded.every_seconds, timezone = excluded.timezone, args = excluded.args,
    kwargs = excluded.kwargs, priority = excluded.priority, max_attempts = excluded.max_attempts,
    missed = excluded.missed, source = excluded.source, updated_at = now(),
    next_tick = CASE WHEN (s.cron, s.every_seconds, s.timezone)
                          IS DISTINCT FROM (excluded.cron, excluded.every_seconds, excluded.timezone)
                     THEN excluded.next_tick ELSE s.next_tick END
WHERE (s.queue_name, s.task_name, s.cron, s.every_seconds, s.timezone, s.args, s.kwargs,
       s.priority, s.max_attempts, s.missed, s.source)
      IS DISTINCT FROM
      (excluded.queue_name, excluded.task_name, excluded.cron, excluded.every_seconds,
       excluded.timezone, excluded.args, excluded.kwargs, excluded.priority,
       excluded.max_attempts, excluded.missed, excluded.source)
RETURNING name;

-- name: delete_schedules_of_source
-- The schedules a source (a TaskQueue) no longer declares.
DELETE FROM kubetasks_schedules
WHERE source = %(source)s AND name <> ALL(%(keep)s::text[])
RETURNING name;

-- name: delete_schedule
DELETE FROM kubetasks_schedules WHERE name = %(name)s RETURNING name;

-- name: due_schedules
-- With the database's clock, so that every firer, wherever it runs, agrees on what is due.
SELECT s.*, now() AS db_now FROM kubetasks_schedules AS s
WHERE s.next_tick <= now()
  AND (%(queue_names)s::text[] IS NULL OR s.queue_name = ANY(%(queue_names)s))
ORDER BY s.next_tick
LIMIT 1000;

-- name: fire_schedule
-- Exactly one firer per tick: the UPDATE matches only while next_tick is still the tick the
-- firer read (a concurrent firer waits for the first one's row lock, then finds next_tick
-- moved and matches nothing), and the (schedule_name, schedule_tick) unique index refuses a
-- second task for a tick whatever happens. The insert NOTIFYs the queue like any enqueue.
WITH advanced AS (
    UPDATE kubetasks_schedules
    SET next_tick = %(next_tick)s, last_tick = coalesce(%(tick)s, last_tick), updated_at = now()
    WHERE name = %(name)s AND next_tick = %(expected_tick)s
    RETURNING name, queue_name, task_name, args, kwargs, priority, max_attempts
), fired AS (
    INSERT INTO kubetasks_tasks
        (queue_name, task_name, priority, args, kwargs, max_attempts, schedule_name, schedule_tick)
    SELECT queue_name, task_name, priority, args, kwargs, max_attempts, name, %(tick)s
    FROM advanced WHERE %(tick)s::timestamptz IS NOT NULL
    ON CONFLICT (schedule_name, schedule_tick) WHERE schedule_name IS NOT NULL DO NOTHING
    RETURNING id
)
SELECT (SELECT count(*) FROM advanced) AS advanced, (SELECT id FROM fired) AS task_id;

-- name: next_schedule_tick
SELECT min(next_tick) AS next_tick FROM kubetasks_schedules
WHERE %(queue_names)s::text[] IS NULL OR queue_name = ANY(%(queue_names)s);

-- name: list_schedules
-- Each schedule with the task its last tick enqueued (found through the unique index).
SELECT s.*, t.id AS last_task_id, t.state AS last_task_state
FROM kubetasks_schedules AS s
LEFT JOIN kubetasks_tasks AS t ON t.schedule_name = s.name AND t.schedule_tick = s.last_tick
WHERE %(queue_name)s::text IS NULL OR s.queue_name = %(queue_name)s
ORDER BY s.queue_name, s.name;
