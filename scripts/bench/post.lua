-- wrk script: POST a chat completion request body on every request, keep-alive.
--   wrk -t1 -c32 -d5s --latency -s scripts/bench/post.lua http://127.0.0.1:PORT/v1/chat/completions
-- The body is chat-300.json beside this script (a 300-byte OpenAI chat request for gpt-4o-mini, stream false),
-- or the file named by WRK_BODY. WRK_AUTH, when set, is sent as `Authorization: Bearer $WRK_AUTH`.

local function script_dir()
  local source = debug.getinfo(1, "S").source
  if source:sub(1, 1) == "@" then
    return source:sub(2):match("^(.*)/[^/]*$") or "."
  end
  return "."
end

local path = os.getenv("WRK_BODY") or (script_dir() .. "/chat-300.json")
local file = assert(io.open(path, "rb"), "cannot open request body " .. path)
local body = file:read("*a")
file:close()

wrk.method = "POST"
wrk.body = body
wrk.headers["Content-Type"] = "application/json"
local key = os.getenv("WRK_AUTH")
if key and key ~= "" then
  wrk.headers["Authorization"] = "Bearer " .. key
end
