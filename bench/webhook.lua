-- wrk script for the webhook benchmark: every request is a distinct event, signed in advance
-- by bench/run.py (wrk's Lua has no HMAC), one per line of $BENCH_WEBHOOKS:
-- path <TAB> signature <TAB> body. Each event moves a delivery attempt of its own.
local requests = {}
for line in io.lines(os.getenv("BENCH_WEBHOOKS")) do
  local path, signature, body = line:match("^([^\t]+)\t([^\t]+)\t(.*)$")
  requests[#requests + 1] = wrk.format("POST", path,
    {["Content-Type"] = "application/json", ["X-Bench-Signature"] = signature}, body)
end
local i = 0

request = function()
  i = i + 1
  return requests[((i - 1) % #requests) + 1]
end
