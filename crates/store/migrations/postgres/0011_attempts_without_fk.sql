-- Attempts no longer carry a foreign key to their run. Its check ran as a trigger per
-- inserted attempt (a lookup and a row lock on the run) and was about half the cost of the
-- attempt insert (docs/benchmarks.md). The write path keeps the reference itself: an
-- attempt is inserted only while its run exists (the insert joins `runs`), and retention
-- deletes a run's attempts with the run, in one transaction.
ALTER TABLE attempts DROP CONSTRAINT IF EXISTS attempts_run_id_fkey;
