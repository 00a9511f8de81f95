-- wrk script of the prefs benchmark: one scenario (BENCH_SCENARIO), requests spread over the users
-- of a token file (BENCH_TOKENS: lines `user_id username token`, users in random order), a
-- bearer token on every request.
--
-- The requests are formatted once, in init(), one per token line (PATCH bodies with random
-- values), and then sent round-robin, so request() costs wrk nothing and the load generator stays
-- far from its own limit. done() prints one machine-readable RESULT line.
--
-- Scenarios (the data set is described in bench/tools/src/main.rs):
--   edx_get         GET   /api/user/v1/preferences/{username}
--   edx_patch       PATCH /api/user/v1/preferences/{username}  (merge patch of key-1, key-4, key-7)
--   record_get      GET   /api/v2/user/me/preference/{id}/     (one of the user's global records)
--   ns_get          GET   /preferences/bench-app
--   ns_patch        PATCH /preferences/bench-app               (merge patch of opt-1, opt-4, opt-7)

local scenario = os.getenv("BENCH_SCENARIO") or "edx_get"
local token_file = os.getenv("BENCH_TOKENS") or "tokens.txt"
local client = "bench-app"
local merge_patch = "application/merge-patch+json"

local requests = {}
local count = 0
local next_index = 0

local function digits7()
   return string.format("%07d", math.random(0, 9999999))
end

local function build(user_id, username, token)
   local headers = { ["Authorization"] = "Bearer " .. token }
   if scenario == "edx_get" then
      return wrk.format("GET", "/api/user/v1/preferences/" .. username, headers)
   elseif scenario == "edx_patch" then
      headers["Content-Type"] = merge_patch
      local body = string.format('{"key-1":"value-1-%s","key-4":"value-4-%s","key-7":"value-7-%s"}',
                                 digits7(), digits7(), digits7())
      return wrk.format("PATCH", "/api/user/v1/preferences/" .. username, headers, body)
   elseif scenario == "record_get" then
      local id = (user_id - 1) * 20 + 1 + math.random(0, 9)
      return wrk.format("GET", "/api/v2/user/me/preference/" .. id .. "/", headers)
   elseif scenario == "ns_get" then
      return wrk.format("GET", "/preferences/" .. client, headers)
   elseif scenario == "ns_patch" then
      headers["Content-Type"] = merge_patch
      local body = string.format(
         '{"opt-1":{"enabled":false,"label":"item-1-%s"},"opt-4":{"enabled":false,"label":"item-4-%s"},'
            .. '"opt-7":{"enabled":false,"label":"item-7-%s"}}',
         digits7(), digits7(), digits7())
      return wrk.format("PATCH", "/preferences/" .. client, headers, body)
   end
   error("unknown BENCH_SCENARIO " .. scenario)
end

function init(args)
   math.randomseed(os.time() + (tonumber(tostring({}):match("0x(%x+)") or "0", 16) % 100000))
   local file = assert(io.open(token_file, "r"), "cannot open " .. token_file)
   for line in file:lines() do
      local user_id, username, token = line:match("^(%d+) (%S+) (%S+)$")
      if user_id then
         count = count + 1
         requests[count] = build(tonumber(user_id), username, token)
      end
   end
   file:close()
   assert(count > 0, token_file .. " holds no tokens")
   next_index = math.random(0, count - 1)
end

function request()
   next_index = next_index + 1
   if next_index > count then
      next_index = 1
   end
   return requests[next_index]
end

function done(summary, latency, requests)
   local errors = summary.errors
   io.write(string.format(
      "RESULT requests=%d duration_us=%d p50_us=%d p99_us=%d max_us=%d "
         .. "err_connect=%d err_read=%d err_write=%d err_status=%d err_timeout=%d\n",
      summary.requests, summary.duration, latency:percentile(50.0), latency:percentile(99.0), latency.max,
      errors.connect, errors.read, errors.write, errors.status, errors.timeout))
end
