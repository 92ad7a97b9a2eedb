-- Calls made to a partner's API, per channel, for the hourly limit its docs publish
-- (TourCMS: calls per hour per channel). In the database, not in a process, so the limit
-- holds across restarts and across the nodes of a platform. Rows older than an hour are
-- deleted as calls are counted.
CREATE TABLE api_calls (
    channel   TEXT NOT NULL,
    called_at INTEGER NOT NULL
);
CREATE INDEX api_calls_channel ON api_calls (channel, called_at);

-- One row per channel: taking it serialises the nodes counting that channel's calls, and it
-- holds until when the partner asked us to wait (Retry-After, an exhausted
-- X-RateLimit-Remaining), for every node.
CREATE TABLE api_channels (
    channel     TEXT PRIMARY KEY,
    quiet_until INTEGER NOT NULL DEFAULT 0
);
