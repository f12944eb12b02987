-- Redis Cluster: sweep.lua for one AOR (the caller walks the expiry buckets and calls this on
-- each due AOR's slot; docs/REDIS.md, "Redis Cluster"). Drops the AOR's expired bindings.
--
-- KEYS[1] AOR value `P{<AOR>}aor`, KEYS[2] its closed-flows marker
-- ARGV[1] now (ms)
-- Returns {bindings removed, index_effects items...}: always the effects, so the caller also
-- repairs a stale bucket entry.

local old = decode_set(redis.call('GET', KEYS[1]))
local live = live_at(old, tonumber(ARGV[1]))
if #live ~= #old then write_aor(KEYS[1], old, live, KEYS[2]) end
local fx = index_effects(old, live)
return { #old - #live, fx[1], fx[2], fx[3], fx[4], fx[5] }
