-- The Postgres migration of the same name drops the attempts' foreign key to their run.
-- SQLite keeps it (dropping it needs a table rebuild), and the write path is the same on
-- both: an attempt is inserted only while its run exists, and a run's attempts are deleted
-- with it. Nothing to change here; the file keeps the two migration sets numbered alike.
SELECT 1;
