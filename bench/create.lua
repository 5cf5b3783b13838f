-- wrk script for the create benchmark: every request is a distinct valid create (one per
-- tenant and provider, as the contract allows), rotating through the tenants' tokens.
local tokens = {}
for line in io.lines(os.getenv("BENCH_TOKENS")) do tokens[#tokens + 1] = line end
local i = 0

request = function()
  i = i + 1
  local n = #tokens
  local token = tokens[((i - 1) % n) + 1]
  local provider = math.floor((i - 1) / n) % 25 + 1
  local body = string.format(
    '{"provider":"bench%02d","credentials":{"api_key":"key_%d_secret","sender":"+15550100000"},'
    .. '"enabled_capabilities":["send_sms"],"metadata":{"n":%d}}', provider, i, i)
  return wrk.format("POST", "/api/v1/integrations",
    {["Authorization"] = "Bearer " .. token, ["Content-Type"] = "application/json"}, body)
end
