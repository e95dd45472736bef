-- POST a fixed JSON body (login): wrk -s post_json.lua URL -- '<json>'
init = function(args)
  wrk.method = "POST"
  wrk.body = args[1]
  wrk.headers["Content-Type"] = "application/json"
end
