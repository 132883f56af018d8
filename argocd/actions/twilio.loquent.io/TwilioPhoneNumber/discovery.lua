-- The original system's two buttons, offered when they would change something.
-- voiceRouting defaults to Enabled when the field is absent.
local actions = {}
local routing = "Enabled"
if obj.spec ~= nil and obj.spec.voiceRouting ~= nil then
  routing = obj.spec.voiceRouting
end
actions["restore"] = {
  ["displayName"] = "Restore original voice routing",
  ["iconClass"] = "fa fa-fw fa-undo",
  ["disabled"] = routing == "Disabled",
}
actions["configure"] = {
  ["displayName"] = "Configure voice routing",
  ["iconClass"] = "fa fa-fw fa-phone",
  ["disabled"] = routing == "Enabled",
}
return actions
