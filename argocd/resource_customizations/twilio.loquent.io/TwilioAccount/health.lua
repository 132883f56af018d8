-- Health of a TwilioAccount (twilio.loquent.io, twilio-voice-operator).
--
-- The operator writes two kstatus conditions with every status write:
--   Stalled=True      a human must act: InvalidCredentials, SecretNotFound,
--                     SecretInvalid, TwilioRejected, Conflict, APIURLNotAllowed
--   Reconciling=True  work under way: verifying the credentials, retrying
--                     Twilio, handing its numbers back (NumbersHandedBack=False)
-- Degraded     Stalled=True for the current generation, and nothing else.
-- Progressing  not reconciled yet, generation not observed, Reconciling=True.
-- Healthy      everything else.
-- Objects written by an operator older than Stalled and Reconciling are read
-- from their Ready, Synced and NumbersHandedBack reasons instead.
--
-- Deleting: Argo CD v3.5 and v3.6 do not run this script for an object with
-- metadata.deletionTimestamp (they show Progressing "Pending deletion"); the
-- branch below serves versions that do (argoproj/argo-cd#27595) and
-- `argocd admin settings resource-overrides health`.
--
-- Only the base and table libraries are used: argocd-cm runs health checks
-- without useOpenLibs.

local hs = {}
local metadata = obj.metadata or {}
local generation = metadata.generation or 0
local status = obj.status or {}
local conditions = status.conditions or {}

local function find(conditionType)
  for _, c in ipairs(conditions) do
    if c.type == conditionType then
      return c
    end
  end
  return nil
end

-- current: the condition describes the object's current generation.
local function current(c)
  return c ~= nil and (c.observedGeneration == nil or c.observedGeneration >= generation)
end

local function isTrue(c)
  return current(c) and c.status == "True"
end

local function isFalse(c)
  return current(c) and c.status == "False"
end

local function text(c)
  if c.message ~= nil and c.message ~= "" then
    return c.message
  end
  return c.reason or c.type
end

local function result(healthStatus, message)
  hs.status = healthStatus
  hs.message = message
  return hs
end

local ready = find("Ready")
local synced = find("Synced")
local stalled = find("Stalled")
local reconciling = find("Reconciling")
local handBack = find("NumbersHandedBack")

if metadata.deletionTimestamp ~= nil then
  if isTrue(stalled) then
    if isFalse(handBack) then
      return result("Degraded", text(stalled) .. "; " .. text(handBack))
    end
    return result("Degraded", text(stalled))
  end
  if isFalse(handBack) then
    return result("Progressing", text(handBack))
  end
  local waits = {}
  for _, f in ipairs(metadata.finalizers or {}) do
    if f == "twilio.loquent.io/hand-back-numbers" then
      table.insert(waits, f .. " (the operator keeps the account until its numbers are handed back)")
    else
      table.insert(waits, f)
    end
  end
  if #waits == 0 then
    return result("Progressing", "Pending deletion")
  end
  return result("Progressing", "Pending deletion; blocked by finalizers: " .. table.concat(waits, ", "))
end

local observed = status.observedGeneration or 0
if observed == 0 or status.conditions == nil then
  return result("Progressing", "Waiting for the operator to verify the credentials")
end
if observed < generation then
  return result("Progressing", "Waiting for the operator to reconcile generation " .. generation)
end

local function healthy()
  if ready == nil then
    return result("Healthy", "Reconciled")
  end
  return result("Healthy", text(ready))
end

if stalled ~= nil or reconciling ~= nil then
  if isTrue(stalled) then
    return result("Degraded", text(stalled))
  end
  if not current(stalled) or not current(reconciling) then
    return result("Progressing", "Waiting for the operator to reconcile generation " .. generation)
  end
  if reconciling.status == "True" then
    local message = text(reconciling)
    if ready == nil then
      message = "Verifying the credentials with Twilio"
    end
    if current(synced) and synced.status == "False" and text(synced) ~= message then
      message = message .. "; " .. text(synced)
    end
    return result("Progressing", message)
  end
  return healthy()
end

-- Written before Stalled and Reconciling existed: the reasons say it.
local stalledReasons = {
  InvalidCredentials = true,
  SecretNotFound = true,
  SecretInvalid = true,
  TwilioRejected = true,
  Conflict = true,
  APIURLNotAllowed = true,
}
if isFalse(ready) and stalledReasons[ready.reason] then
  return result("Degraded", text(ready))
end
if current(synced) and synced.status ~= "True" then
  return result("Progressing", text(synced))
end
if not current(ready) then
  return result("Progressing", "Verifying the credentials with Twilio")
end
if ready.status ~= "True" then
  return result("Progressing", text(ready))
end
if isFalse(handBack) then
  return result("Progressing", text(handBack))
end
return healthy()
