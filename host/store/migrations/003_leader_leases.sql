-- migration 3: leader leases
--
-- v3: leadership as a lease in a table rather than a session lock, so a leader that hangs
-- (frozen, swapped out, partitioned but still connected) loses it after its ttl.

CREATE TABLE jr_leaders (
  name       text PRIMARY KEY,
  owner      text NOT NULL,
  expires_at timestamptz NOT NULL
);
