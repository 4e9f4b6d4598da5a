-- marketcore: acquire a symbol's writer lease and hand out a fencing token, atomically.
--
-- KEYS[1]  lease key   string: the holder's node id, expires after the lease TTL (PX)
-- KEYS[2]  token key   hash:   epoch, counter, run, quiet, holder, ae, ac
-- ARGV[1]  node id
-- ARGV[2]  holder instance ("<node id>#<nonce>", unique per process)
-- ARGV[3]  lease TTL in ms
-- ARGV[4]  the highest epoch the caller has seen (0 when none)
--
-- Tokens are (epoch, counter). The epoch changes whenever this server's run_id
-- differs from the one that issued the last token (a restart without
-- persistence, a restored snapshot, a failover) or the token hash is absent; the
-- new epoch is the server's time in ms, and never less than any epoch seen
-- before, so every new token compares newer than every older one. After an
-- epoch change nobody acquires for one TTL ("quiet"), so a lease a paused node
-- still believes in has run out before a new writer starts.
--
-- Returns one of
--   {"OK", epoch, counter}      acquired (or re-issued to the same holder instance)
--   {"HELD", holder, pttl}      another holder has it
--   {"WAIT", ms, epoch}         a new epoch is in its quiet time; try again after ms
local ttl = tonumber(ARGV[3])
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
local run = string.match(redis.call('INFO', 'server'), 'run_id:(%w+)')
local state = redis.call('HMGET', KEYS[2], 'epoch', 'run', 'quiet')
local epoch = tonumber(state[1])
if epoch == nil or state[2] ~= run then
  local fresh = now
  if epoch ~= nil and epoch + 1 > fresh then fresh = epoch + 1 end
  local seen = tonumber(ARGV[4]) or 0
  if seen + 1 > fresh then fresh = seen + 1 end
  redis.call('HSET', KEYS[2], 'epoch', string.format('%.0f', fresh), 'counter', 0,
             'run', run, 'quiet', string.format('%.0f', now + ttl))
  return {'WAIT', ttl, fresh}
end
local quiet = tonumber(state[3]) or 0
if now < quiet then
  return {'WAIT', quiet - now, epoch}
end
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ttl) then
  local counter = redis.call('HINCRBY', KEYS[2], 'counter', 1)
  redis.call('HSET', KEYS[2], 'holder', ARGV[2])
  return {'OK', epoch, counter}
end
local holder = redis.call('GET', KEYS[1])
if holder == ARGV[1] and redis.call('HGET', KEYS[2], 'holder') == ARGV[2] then
  -- This very process holds the lease but lost its token (the epoch moved on):
  -- a new token under the lease it already holds.
  local counter = redis.call('HINCRBY', KEYS[2], 'counter', 1)
  redis.call('PEXPIRE', KEYS[1], ttl)
  return {'OK', epoch, counter}
end
return {'HELD', holder or '', redis.call('PTTL', KEYS[1])}
