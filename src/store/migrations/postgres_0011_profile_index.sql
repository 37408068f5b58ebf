-- Sigil schema v11 (PostgreSQL): the certificates of a profile, newest first, read in the
-- index's order so that a limit stops the read. The planner here already walked the
-- (created_at, profile) index backward when the profile is most of the store (3-4 ms for the
-- newest 100 at 300,000 either way); for a profile that is a small part of it,
-- (profile, created_at) reads its newest directly instead of walking past the others. The
-- same index as SQLite's v11 (where (profile) alone sorted all of the profile's certificates),
-- and the same number of indexes to write per issuance.
DROP INDEX certificates_profile;
CREATE INDEX certificates_profile_created ON certificates (profile, created_at);
