-- Configure Voice: take the number over again. The operator saves its
-- current routing and points it at the webhook server (voiceRouting: Enabled).
-- Refused where it would change nothing.
if obj.metadata.deletionTimestamp ~= nil then
  error("TwilioPhoneNumber " .. obj.metadata.name .. " is being deleted: it is not taken over again", 0)
end
if obj.status ~= nil and obj.status.conditions ~= nil then
  for _, c in ipairs(obj.status.conditions) do
    if c.type == "Ready" and c.status == "False" and c.reason == "Conflict" then
      error("TwilioPhoneNumber " .. obj.metadata.name .. " does not manage its number (Conflict): " .. (c.message or "another TwilioPhoneNumber does"), 0)
    end
  end
end
if obj.spec.voiceRouting == nil or obj.spec.voiceRouting == "Enabled" then
  error("voiceRouting is already Enabled: the operator routes the number to the webhook server", 0)
end
obj.spec.voiceRouting = "Enabled"
return obj
