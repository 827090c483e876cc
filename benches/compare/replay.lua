-- wrk script for benches/compare.sh: replays pre-signed WeChat callbacks (one per line,
-- QUERY<TAB>BODY, written by `cargo run --example bench_requests`).
--
--   wrk -t1 -c64 -d6s -s replay.lua URL -- REQFILE EXPECT
--
-- Every raw HTTP request is built in init() (wrk starts its clock after init); request()
-- only indexes a table. A run longer than the file wraps around: those re-sent requests are
-- counted as "replayed" (a server that refuses replays then refuses them: raise RATE_CAP).
-- response() counts non-2xx answers and 2xx bodies that lack EXPECT (plain substring).
-- Adapted from the team's load harness (bench/replay.lua), one wrk thread.

local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

local reqs, i = {}, 0
local expect = "success"
nreq, sent, non2xx, bad = 0, 0, 0, 0

function init(args)
  local file = args[1]
  if args[2] and args[2] ~= "" then expect = args[2] end
  -- Optional: each connection waits DELAY_MS after every answer (an offered rate of about
  -- connections x 1000 / (DELAY_MS + latency) requests per second) instead of saturating.
  local pause = tonumber(args[3] or "")
  if pause and pause > 0 then
    delay = function() return pause end
  end
  local path = wrk.path
  local sep = path:find("?", 1, true) and "&" or "?"
  local head = " HTTP/1.1\r\nHost: " .. wrk.headers["Host"] ..
    "\r\nContent-Type: text/xml\r\nContent-Length: "
  for line in io.lines(file) do
    local tab = line:find("\t", 1, true)
    local q, body = line:sub(1, tab - 1), line:sub(tab + 1)
    reqs[#reqs + 1] = "POST " .. path .. sep .. q .. head .. #body .. "\r\n\r\n" .. body
  end
  nreq = #reqs
  assert(nreq > 0, "no requests in " .. file)
end

function request()
  i = i + 1
  if i > nreq then i = 1 end
  sent = sent + 1
  return reqs[i]
end

function response(status, headers, body)
  if status < 200 or status > 299 then
    non2xx = non2xx + 1
  elseif not body:find(expect, 1, true) then
    bad = bad + 1
  end
end

function done(summary, latency, requests)
  -- done() runs in wrk's main Lua state: the counters live in the threads' states.
  local nx, b, replayed = 0, 0, 0
  for _, t in ipairs(threads) do
    nx = nx + t:get("non2xx")
    b = b + t:get("bad")
    local ts, tn = t:get("sent"), t:get("nreq")
    if ts > tn then replayed = replayed + (ts - tn) end
  end
  local e = summary.errors
  io.write(string.format(
    "RESULT rps=%.1f requests=%d p50_ms=%.3f p99_ms=%.3f non2xx=%d bad_body=%d " ..
    "sock_err=%d replayed=%d\n",
    summary.requests / (summary.duration / 1e6), summary.requests,
    latency:percentile(50) / 1000, latency:percentile(99) / 1000, nx, b,
    e.connect + e.read + e.write + e.timeout, replayed))
end
