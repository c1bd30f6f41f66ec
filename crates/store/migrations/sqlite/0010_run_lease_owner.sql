-- Who holds a run's lease: one delivery of its tick (a token the worker draws per
-- delivery). A second copy of the tick (a redelivery, a republish) leaves a run whose
-- lease another live delivery holds, so a worker can create the run before the fire time
-- without two copies both sending (docs/architecture.md, Workers). NULL: free to take.
ALTER TABLE runs ADD COLUMN lease_owner TEXT;
