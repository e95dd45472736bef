-- Session refresh with rotation: every refresh token works once. A queue of live tokens
-- (one per line in the file given as the first script argument): each request takes the
-- oldest, each answer puts the new one at the back. Keep more tokens than connections.
local queue, first, last = {}, 1, 0

init = function(args)
  for line in io.lines(args[1]) do
    last = last + 1
    queue[last] = line
  end
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/json"
end

request = function()
  local token = "exhausted"
  if first <= last then
    token = queue[first]
    queue[first] = nil
    first = first + 1
  end
  return wrk.format(nil, nil, nil, '{"refresh_token": "' .. token .. '"}')
end

response = function(status, headers, body)
  local token = body:match('"refresh_token"%s*:%s*"([^"]+)"')
  if token then
    last = last + 1
    queue[last] = token
  end
end
