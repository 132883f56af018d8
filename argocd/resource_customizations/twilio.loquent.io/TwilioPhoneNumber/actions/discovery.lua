-- Resource actions of a TwilioPhoneNumber: the original system's Restore and
-- Configure Voice buttons. Each is offered only where it changes something:
--   restore    voiceRouting Enabled (the CRD default when unset): hand back
--   configure  voiceRouting Disabled: take over again
-- and neither on a number being deleted (its deletionPolicy decides what
-- happens to the routing) nor on a Conflict loser (another TwilioPhoneNumber
-- manages the number, so nothing this object says reaches Twilio).
local actions = {}

local function conflictLoser()
  if obj.status == nil or obj.status.conditions == nil then
    return false
  end
  for _, c in ipairs(obj.status.conditions) do
    if c.type == "Ready" then
      return c.status == "False" and c.reason == "Conflict"
    end
  end
  return false
end

if obj.metadata.deletionTimestamp ~= nil or conflictLoser() then
  return actions
end

local routing = "Enabled"
if obj.spec ~= nil and obj.spec.voiceRouting ~= nil then
  routing = obj.spec.voiceRouting
end
if routing == "Enabled" then
  actions["restore"] = {
    ["displayName"] = "Restore original voice routing",
    ["iconClass"] = "fa fa-fw fa-undo",
  }
elseif routing == "Disabled" then
  actions["configure"] = {
    ["displayName"] = "Configure voice routing",
    ["iconClass"] = "fa fa-fw fa-phone",
  }
end
return actions
