-- kubetasks migration 0006: queue statistics that stay flat as the table grows.
-- The operator's statistics read the earliest deadline of a queue's READY tasks and count the
-- overdue ones (up to a cap) from this index, one probe or one bounded range however many tasks
-- wait; only tasks with a deadline are in it, so enqueueing tasks without one costs nothing more.
CREATE INDEX kubetasks_tasks_ready_deadline ON kubetasks_tasks (queue_name, expected_at)
    WHERE state = 'READY' AND expected_at IS NOT NULL;
