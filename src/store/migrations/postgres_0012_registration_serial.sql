-- Sigil schema v12: the registration that holds a certificate, found from its serial. A
-- renewal moves its registration to the new certificate (so the next renewal push and the
-- withdrawal go by the certificate the device holds), and a renewal must not read every
-- registration to find it. Unique: a certificate belongs to one registration at most (a renewal
-- moves the one it has; an unlinked registration's serial is NULL, which repeats freely).
CREATE UNIQUE INDEX registrations_serial ON registrations (serial);
