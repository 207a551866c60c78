-- When an idle worker should wake for the next scheduled task: the earliest run_after of each
-- queue's READY rows, read from an index instead of a scan of them all.
CREATE INDEX kubetasks_tasks_next_run_after ON kubetasks_tasks (queue_name, run_after)
    WHERE state = 'READY';
