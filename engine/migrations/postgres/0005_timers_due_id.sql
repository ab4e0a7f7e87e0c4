-- Issue 17: claims take due timers in (due, id) order. With only (due), many
-- timers due at the same instant (a holiday's deadlines, a backlog after a
-- stop) were sorted whole at every claim; with (due, id) a claim reads its
-- first rows off the index. The lease index, of claimed rows only (a
-- pending timer is not in it, so scheduling one costs no entry), finds the
-- claims to give back and the next lease to end without reading every
-- pending timer.
DROP INDEX timers_due;
CREATE INDEX timers_due ON timers (due, id);
CREATE INDEX timers_lease ON timers (lease_until) WHERE lease_until IS NOT NULL;
