-- Argo CD health of a TwilioAccount, from the operator's Ready and Synced
-- conditions (README: "Conditions and reasons").
--   Healthy      Ready=True (credentials verified) and Synced=True.
--   Degraded     credentials or their Secret need fixing, or Twilio refused.
--   Progressing  not verified yet, a Twilio error being retried, or handing its
--                numbers back before it (or its Secret) can go.
-- Written without Lua's string library, which Argo CD leaves out of
-- customizations unless useOpenLibs is set.

local degradedReasons = {
  InvalidCredentials = true,
  SecretNotFound = true,
  SecretInvalid = true,
  TwilioRejected = true,
  Conflict = true,
  APIURLNotAllowed = true,
}

local hs = {}
local generation = obj.metadata.generation or 0

local function result(status, message)
  hs.status = status
  hs.message = message
  return hs
end

-- current returns the condition of this type if it describes this generation.
local function current(conditions, type)
  for _, c in ipairs(conditions) do
    if c.type == type then
      if (c.observedGeneration or generation) < generation then
        return nil
      end
      return c
    end
  end
  return nil
end

if obj.status == nil or obj.status.conditions == nil then
  return result("Progressing", "Waiting for the operator to verify the credentials")
end
if (obj.status.observedGeneration or 0) < generation then
  return result("Progressing", "Waiting for the operator to reconcile generation " .. generation)
end

local ready = current(obj.status.conditions, "Ready")
local synced = current(obj.status.conditions, "Synced")
local handback = current(obj.status.conditions, "NumbersHandedBack")

for _, c in ipairs({ ready or {}, synced or {} }) do
  if c.status == "False" and degradedReasons[c.reason] then
    return result("Degraded", c.message or c.reason)
  end
end
if synced ~= nil and synced.status ~= "True" then
  return result("Progressing", synced.message or synced.reason)
end
if ready == nil then
  return result("Progressing", "Verifying the credentials with Twilio")
end
if ready.status ~= "True" then
  return result("Progressing", ready.message or ready.reason)
end
if synced == nil then
  return result("Progressing", "Waiting for the first Twilio exchange")
end
if handback ~= nil and handback.status == "False" then
  return result("Progressing", handback.message or handback.reason)
end
return result("Healthy", ready.message)
