-- Restore: hand the number back. The operator writes the saved original
-- routing back to Twilio and keeps the object (voiceRouting: Disabled).
-- Refused where it would change nothing.
if obj.metadata.deletionTimestamp ~= nil then
  error("TwilioPhoneNumber " .. obj.metadata.name .. " is being deleted: its deletionPolicy decides whether the original routing is restored", 0)
end
if obj.status ~= nil and obj.status.conditions ~= nil then
  for _, c in ipairs(obj.status.conditions) do
    if c.type == "Ready" and c.status == "False" and c.reason == "Conflict" then
      error("TwilioPhoneNumber " .. obj.metadata.name .. " does not manage its number (Conflict): " .. (c.message or "another TwilioPhoneNumber does"), 0)
    end
  end
end
if obj.spec.voiceRouting == "Disabled" then
  error("voiceRouting is already Disabled: the number is handed back to its original routing", 0)
end
obj.spec.voiceRouting = "Disabled"
return obj
