-- A deadline may not precede run_after when a task is enqueued; a retry, though, may well be
-- scheduled past the deadline (the task is late, and still to be run), so the check now holds
-- for tasks that have not been attempted.
ALTER TABLE kubetasks_tasks DROP CONSTRAINT kubetasks_deadline_after_run_after;
ALTER TABLE kubetasks_tasks ADD CONSTRAINT kubetasks_deadline_after_run_after
    CHECK (expected_at IS NULL OR attempts > 0 OR expected_at >= run_after);
