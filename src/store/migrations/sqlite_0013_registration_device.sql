-- Sigil schema v13: a device's registrations for a credential, found without reading them all.
-- A withdrawal asks whether another registration of the same device and credential holds what
-- the MDM delivered (then taking it back would undo that one's delivery).
CREATE INDEX registrations_device ON registrations (device_id, credential);
