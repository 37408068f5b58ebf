-- Sigil schema v11 (SQLite): the certificates of a profile, newest first, read in the index's
-- order so that a limit stops the read; (profile) alone made every listing by profile sort all
-- of the profile's certificates (1.1 s at a million for the newest 100). The same number of
-- indexes to write per issuance: every query on profile alone is served by this one too.
DROP INDEX certificates_profile;
CREATE INDEX certificates_profile_created ON certificates (profile, created_at);
