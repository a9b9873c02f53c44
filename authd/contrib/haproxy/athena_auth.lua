-- athena_auth.lua: forward authentication for HAProxy (2.6+, Lua 5.3)
-- through athena-authd, with HAProxy's own HTTP client.
--
--   global
--       lua-load /etc/haproxy/athena_auth.lua
--   frontend api
--       http-request lua.athena_auth http://127.0.0.1:9099/auth users.read if { path_beg /users/ }
--
-- Arguments: athena-authd's URL, and the rights the route needs (comma
-- list, may be empty).  The client's key headers and X-Athena-Client go to
-- athena-authd together with the route's rights and X-Forwarded-For set to
-- the client's address (any client copy of it or of X-Athena-Rights is not
-- sent).  Allowed (2xx): the request continues with X-Athena-Key-Id,
-- X-Athena-Public-Id and X-Athena-Client set from the answer (empty when
-- it has none, so a client's own copies never reach the upstream) and the
-- key headers removed (X-Athena-Key, and those athena-authd lists in
-- x-envoy-auth-headers-to-remove: Authorization only when it carried the key).  Denied: athena-authd's status and JSON body go to
-- the client, with its Retry-After and RateLimit-* headers (a 429).  athena-authd unreachable or not answering: 503
-- "API key validation unavailable".  An allowed request's RateLimit-Limit,
-- -Remaining and -Reset are kept in the variables txn.athena_ratelimit_limit,
-- txn.athena_ratelimit_remaining and txn.athena_ratelimit_reset, for
-- http-response set-header to send to the client.

local KEY_HEADERS = { "x-athena-key", "x-api-key", "authorization" }
local IDENTITY_HEADERS = { "x-athena-key-id", "x-athena-public-id", "x-athena-client" }
local RATE_LIMIT_HEADERS = { "ratelimit-limit", "ratelimit-remaining", "ratelimit-reset" }
local UNAVAILABLE_BODY = '{"status":"error","message":"API key validation unavailable"}'
local TIMEOUT_MS = 3000

-- First value of a header in one of HAProxy's header tables (index 0 in
-- req_get_headers, 1 in some httpclient versions)
local function FirstValue(headers, name)
  local values = headers and headers[name]
  if values == nil then
    return nil
  end
  return values[0] or values[1]
end

-- Answer the client directly and end the transaction, with the rate limit
-- headers of athena-authd's answer (when there is one)
local function Reply(txn, status, body, answer_headers)
  local reply = txn:reply()
  reply:set_status(status)
  reply:add_header("content-type", "application/json")
  reply:add_header("cache-control", "no-store")
  for _, name in ipairs(RATE_LIMIT_HEADERS) do
    local value = FirstValue(answer_headers, name)
    if value ~= nil then
      reply:add_header(name, value)
    end
  end
  local retry_after = FirstValue(answer_headers, "retry-after")
  if retry_after ~= nil then
    reply:add_header("retry-after", retry_after)
  end
  reply:set_body(body)
  txn:done(reply)
end

core.register_action("athena_auth", { "http-req" }, function(txn, url, rights)
  local request = txn.http:req_get_headers()
  local headers = {}
  for _, name in ipairs(KEY_HEADERS) do
    local value = FirstValue(request, name)
    if value ~= nil then
      headers[name] = { value }
    end
  end
  local client = FirstValue(request, "x-athena-client")
  if client ~= nil then
    headers["x-athena-client"] = { client }
  end
  headers["x-athena-rights"] = { rights or "" }
  headers["x-forwarded-for"] = { txn.f:src() }

  local ok, response = pcall(function()
    return core.httpclient():get{ url = url, headers = headers, timeout = TIMEOUT_MS }
  end)
  local status = (ok and response and tonumber(response.status)) or 0

  if status >= 200 and status < 300 then
    for _, name in ipairs(IDENTITY_HEADERS) do
      txn.http:req_set_header(name, FirstValue(response.headers, name) or "")
    end
    -- the key headers athena-authd names (as for Envoy), and always X-Athena-Key
    txn.http:req_del_header("x-athena-key")
    local to_remove = FirstValue(response.headers, "x-envoy-auth-headers-to-remove") or ""
    for name in string.gmatch(to_remove, "[^,%s]+") do
      txn.http:req_del_header(name)
    end
    for _, name in ipairs(RATE_LIMIT_HEADERS) do
      local value = FirstValue(response.headers, name)
      if value ~= nil then
        txn:set_var("txn.athena_" .. string.gsub(name, "-", "_"), value)
      end
    end
    return
  end
  -- only athena-authd's own verdicts are JSON; HAProxy's httpclient answers
  -- a failed connection with its own 503 page
  local content_type = ok and response and FirstValue(response.headers, "content-type") or ""
  if status >= 400 and status < 600 and string.find(content_type, "application/json", 1, true) then
    Reply(txn, status, response.body, response.headers)
  else
    Reply(txn, 503, UNAVAILABLE_BODY, nil)
  end
end, 2)
