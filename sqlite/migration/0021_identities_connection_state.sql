-- The dashboard's device list filters on connection state ("which devices
-- are connected?"); without an index such a WHERE reads every identity.
CREATE INDEX identities_connection_state ON identities(connection_state);
