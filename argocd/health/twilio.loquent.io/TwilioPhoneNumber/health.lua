-- Argo CD health of a TwilioPhoneNumber, from the operator's Ready and Synced
-- conditions (README: "Conditions and reasons").
--   Healthy      Ready=True and Synced=True: calls route to the webhook server.
--   Suspended    voiceRouting Disabled and handed back (Ready=True RoutingDisabled).
--   Degraded     a reason that retrying will not fix; someone has to act.
--   Progressing  everything else: not reconciled yet, a change being applied,
--                or a Twilio error being retried (so Synced=False never hides
--                behind Ready=True).
-- Written without Lua's string library, which Argo CD leaves out of
-- customizations unless useOpenLibs is set.

local degradedReasons = {
  Conflict = true,
  AccountNotReady = true,
  NumberNotFound = true,
  TrunkAttached = true,
  RestoreBlocked = true,
  TwilioRejected = true,
  NoAgent = true,
  AgentNotAllowed = true,
  WebhookUnreachable = true,
  Contested = true,
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
  return result("Progressing", "Waiting for the operator to reconcile the number")
end
if (obj.status.observedGeneration or 0) < generation then
  return result("Progressing", "Waiting for the operator to reconcile generation " .. generation)
end

local ready = current(obj.status.conditions, "Ready")
local synced = current(obj.status.conditions, "Synced")

for _, c in ipairs({ ready or {}, synced or {} }) do
  if c.status == "False" and degradedReasons[c.reason] then
    return result("Degraded", c.message or c.reason)
  end
end
if synced ~= nil and synced.status ~= "True" then
  return result("Progressing", synced.message or synced.reason)
end
if ready == nil then
  return result("Progressing", "Applying generation " .. generation)
end
if ready.status ~= "True" then
  return result("Progressing", ready.message or ready.reason)
end

local disabled = obj.spec ~= nil and obj.spec.voiceRouting == "Disabled"
if disabled then
  if ready.reason == "RoutingDisabled" then
    return result("Suspended", ready.message)
  end
  return result("Progressing", "Handing the number back to its original routing")
end
if ready.reason == "RoutingDisabled" then
  return result("Progressing", "Taking the number over")
end
if synced == nil then
  return result("Progressing", "Waiting for the first Twilio exchange")
end
return result("Healthy", ready.message)
