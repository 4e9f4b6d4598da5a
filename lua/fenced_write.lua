-- marketcore: write reports only where their writer holds the symbol's lease with this token.
--
-- The check and the write are one atomic step at the storage: a node paused or
-- partitioned past its lease TTL cannot overwrite a newer owner's report, and a
-- token older than the last accepted one is refused.
--
-- One call carries one or more reports of one writer node: a script call costs
-- far more than the work inside it, so the sink sends up to 100 per call (in
-- Redis Cluster, only reports whose keys share a slot).
--
-- ARGV[1]  report TTL in ms          ARGV[2]  stream MAXLEN (0: no stream)
-- ARGV[3]  audit MAXLEN (0: none)    ARGV[4]  the writer's node id
-- ARGV[5]  "1" when the stream or the audit is on, else "0"
-- then per report:
--   KEYS  lease, token, report (+ stream, audit when ARGV[5] is "1"), one hash tag
--   ARGV  epoch, counter, the report as JSON (+ the symbol when ARGV[5] is "1")
--
-- Returns one code per report:
--   1  written
--   0  refused: another node holds the lease, or a newer token was accepted
--  -1  not written: no lease (expired or lost; the writer cannot prove it)
--  -2  not written: the writer holds the lease under a newer token
--      (this report was built before the token changed)
--  -3  not written: an error (a key of the wrong type)
local ttl, stream_len, audit_len, node = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4]
local extras = ARGV[5] == '1'
local key_stride, arg_stride = 3, 3
if extras then key_stride, arg_stride = 5, 4 end

local function write(k, a)
  local holder = redis.call('GET', KEYS[k + 1])
  if not holder then return -1 end
  if holder ~= node then return 0 end
  local token = redis.call('HMGET', KEYS[k + 2], 'epoch', 'counter', 'ae', 'ac')
  local epoch, counter = tonumber(ARGV[a + 1]), tonumber(ARGV[a + 2])
  if tonumber(token[1]) ~= epoch or tonumber(token[2]) ~= counter then return -2 end
  local accepted_epoch, accepted_counter = tonumber(token[3]), tonumber(token[4])
  if accepted_epoch ~= nil and (accepted_epoch > epoch
      or (accepted_epoch == epoch and accepted_counter > counter)) then
    return 0
  end
  redis.call('SET', KEYS[k + 3], ARGV[a + 3], 'PX', ttl)
  if stream_len > 0 then
    redis.call('XADD', KEYS[k + 4], 'MAXLEN', '~', stream_len, '*', 'report', ARGV[a + 3])
  end
  if accepted_epoch ~= epoch or accepted_counter ~= counter then
    redis.call('HSET', KEYS[k + 2], 'ae', ARGV[a + 1], 'ac', ARGV[a + 2])
    if audit_len > 0 then
      redis.call('XADD', KEYS[k + 5], 'MAXLEN', '~', audit_len, '*', 'symbol', ARGV[a + 4],
                 'node', node, 'epoch', ARGV[a + 1], 'token', ARGV[a + 2])
    end
  end
  return 1
end

local codes = {}
for i = 0, #KEYS / key_stride - 1 do
  local ok, code = pcall(write, i * key_stride, 5 + i * arg_stride)
  codes[i + 1] = ok and code or -3
end
return codes
