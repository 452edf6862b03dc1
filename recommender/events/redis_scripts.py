"""The Lua scripts of the Redis event bus (``recommender.events.redis_bus``), each run atomically by Redis.

Every key a script touches carries the hash tag of one shard (``recommender.events.redis_bus_shards``), so
each runs on the node holding that shard, on Redis Cluster too. The key layout they work on is described in
``recommender.events.redis_bus``. The request path's scripts (decision, reward, activation) answer -2 on a
shard retired by a change of the shard count (``recommender.events.redis_bus_layout``): nothing is written
there, and the caller retries on the layout in force.
"""

# KEYS: decision, stream, joined marker, retired marker, then rows to (re)store. ARGV: decision JSON, slots, due,
# decision TTL ms, event id, deferred, row TTL ms, then the rows' texts. 1 stored, 0 the event id is already
# pending, -1 it was joined within the last recovery seconds, -2 the shard is retired.
PUT = """
if redis.call('EXISTS', KEYS[4]) == 1 then return -2 end
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
if redis.call('EXISTS', KEYS[3]) == 1 then return -1 end
for i = 5, #KEYS do redis.call('SET', KEYS[i], ARGV[i + 3], 'PX', ARGV[7]) end
redis.call('HSET', KEYS[1], 'd', ARGV[1], 'slots', ARGV[2], 'due', ARGV[3], 'deferred', ARGV[6], 'activated', '0')
redis.call('PEXPIRE', KEYS[1], ARGV[4])
redis.call('XADD', KEYS[2], '*', 'e', ARGV[5], 'due', ARGV[3])
return 1
"""

# KEYS: decision, rewards, reward ids, joined marker, retired marker. ARGV: reward JSON, slot, now, reward id
# ('' for none), completion rule ('' none, 'first', 'max'), the reward's value, the top of the reward range.
# 1 accepted, 0 unknown/closed, -1 bad slot, 2 a reward with this id was accepted already (nothing added), 3
# accepted and dropped: the decision was closed early within its window (its joined event cannot change), -2
# the shard is retired. The rewards
# and reward ids take the decision's TTL, or none when a joiner has taken the decision (PTTL -1). A reward
# that settles its slot (the rule) marks it in the decision ('s<slot>'); once every slot is, 'complete' is 1.
REWARD = """
if redis.call('EXISTS', KEYS[5]) == 1 then return -2 end
if ARGV[4] ~= '' and redis.call('SISMEMBER', KEYS[3], ARGV[4]) == 1 then return 2 end
local h = redis.call('HMGET', KEYS[1], 'due', 'slots', 'batch', 'complete')
if not h[1] then
  local early = redis.call('GET', KEYS[4])
  if early and early ~= '1' and tonumber(ARGV[3]) <= tonumber(early) then return 3 end
  return 0
end
if tonumber(ARGV[3]) > tonumber(h[1]) then return 0 end
if h[3] then
  if h[4] == '1' then return 3 end
  return 0
end
if tonumber(ARGV[2]) >= tonumber(h[2]) then return -1 end
if ARGV[5] == 'first' or (ARGV[5] == 'max' and tonumber(ARGV[6]) >= tonumber(ARGV[7])) then
  if redis.call('HSETNX', KEYS[1], 's' .. ARGV[2], '1') == 1 then
    if redis.call('HINCRBY', KEYS[1], 'settled', 1) >= tonumber(h[2]) then
      redis.call('HSET', KEYS[1], 'complete', '1')
    end
  end
end
redis.call('RPUSH', KEYS[2], ARGV[1])
local ttl = redis.call('PTTL', KEYS[1])
if ttl > 0 then redis.call('PEXPIRE', KEYS[2], ttl) else redis.call('PERSIST', KEYS[2]) end
if ARGV[4] ~= '' then
  redis.call('SADD', KEYS[3], ARGV[4])
  if ttl > 0 then redis.call('PEXPIRE', KEYS[3], ttl) else redis.call('PERSIST', KEYS[3]) end
end
return 1
"""

# KEYS: decision, rewards and reward-id keys of decisions a joiner has just taken. They no longer expire
# (module docstring, "Expiry"); a key already gone stays gone.
HOLD = """
for i = 1, #KEYS do redis.call('PERSIST', KEYS[i]) end
return 0
"""

# KEYS: decision, retired marker. ARGV: now. 1 activated, 0 unknown or closed, -2 the shard is retired.
ACTIVATE = """
if redis.call('EXISTS', KEYS[2]) == 1 then return -2 end
local h = redis.call('HMGET', KEYS[1], 'due', 'batch')
if not h[1] or h[2] or tonumber(ARGV[1]) > tonumber(h[1]) then return 0 end
redis.call('HSET', KEYS[1], 'activated', '1')
return 1
"""

# KEYS: decision and rewards keys of each decision, in pairs. ARGV: batch id. Per decision, in order:
# {0} expired, {1} taken, {2, decision, activated, rewards}. One call closes up to CLOSE_CHUNK decisions.
CLOSE = """
local out = {}
for i = 1, #KEYS, 2 do
  local h = redis.call('HMGET', KEYS[i], 'd', 'batch', 'activated')
  if not h[1] then
    out[#out + 1] = {0}
  elseif h[2] and h[2] ~= ARGV[1] then
    out[#out + 1] = {1}
  else
    redis.call('HSET', KEYS[i], 'batch', ARGV[1])
    out[#out + 1] = {2, h[1], h[3] or '0', redis.call('LRANGE', KEYS[i + 1], 0, -1)}
  end
end
return out
"""

# KEYS: stream, then per decision its decision, rewards, joined marker and reward-ids keys, then (when ARGV[3]
# is '1') the batches hash. ARGV: consumer group, recovery ms, '1' to delete the manifest, batch id, then per
# decision its stream entry id and joined marker ('1', or the due time of a decision closed early). One chunk
# of a batch's commit, atomic like the transaction it replaces and one command instead of 2 + 2n: the entries
# acknowledged and deleted, the decision and its rewards deleted, the joined marker kept and the reward ids
# kept for the recovery time (a reused id is refused, a retried reward a no-op). Returns the decisions count.
COMMIT = """
local n = (#ARGV - 4) / 2
if n > 0 then
  local ids = {}
  for j = 1, n do ids[j] = ARGV[3 + 2 * j] end
  redis.call('XACK', KEYS[1], ARGV[1], unpack(ids))
  redis.call('XDEL', KEYS[1], unpack(ids))
end
for j = 1, n do
  local k = 4 * j - 2
  redis.call('DEL', KEYS[k], KEYS[k + 1])
  redis.call('SET', KEYS[k + 2], ARGV[4 + 2 * j], 'PX', ARGV[2])
  redis.call('PEXPIRE', KEYS[k + 3], ARGV[2])
end
if ARGV[3] == '1' then redis.call('HDEL', KEYS[#KEYS], ARGV[4]) end
return n
"""

# KEYS: batches hash. ARGV: batch id, expected stamp, owner, now, new stamp.
ADOPT = """
local raw = redis.call('HGET', KEYS[1], ARGV[1])
if not raw then return 0 end
local manifest = cjson.decode(raw)
if manifest['stamp'] ~= ARGV[2] then return 0 end
manifest['owner'] = ARGV[3]
manifest['touched'] = tonumber(ARGV[4])
manifest['stamp'] = ARGV[5]
redis.call('HSET', KEYS[1], ARGV[1], cjson.encode(manifest))
return 1
"""
