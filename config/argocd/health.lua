-- Argo CD health check for both hookline kinds (argocd-cm:
-- resource.customizations.health.hookline.io_WebhookEndpoint and
-- resource.customizations.health.hookline.io_Subscription). Both follow one status
-- contract (docs/status.md): observedGeneration, then Stalled, Ready and Reconciling.
-- Delivery health (Delivering, Degraded) is deliberately not part of it: a receiver that
-- is down for a minute must not fail a sync. An endpoint the dispatcher disabled, and a
-- subscription whose filter does not compile, are Ready=False and Stalled=True: Degraded.
local hs = {}
if obj.status == nil or obj.status.observedGeneration == nil or obj.metadata.generation == nil
    or obj.status.observedGeneration ~= obj.metadata.generation then
  hs.status = "Progressing"
  hs.message = "Waiting for the hookline operator to observe the latest spec"
  return hs
end
local ready, stalled, reconciling
if obj.status.conditions ~= nil then
  for _, c in ipairs(obj.status.conditions) do
    if c.type == "Ready" then ready = c end
    if c.type == "Stalled" and c.status == "True" then stalled = c end
    if c.type == "Reconciling" and c.status == "True" then reconciling = c end
  end
end
if stalled ~= nil then
  hs.status = "Degraded"
  hs.message = stalled.reason .. ": " .. (stalled.message or "")
  return hs
end
if ready == nil or ready.observedGeneration ~= obj.metadata.generation then
  hs.status = "Progressing"
  hs.message = "Waiting for the hookline operator to report readiness"
  return hs
end
if ready.status == "True" then
  if ready.reason == "Suspended" then
    hs.status = "Suspended"
  else
    hs.status = "Healthy"
  end
  hs.message = ready.message
  return hs
end
hs.status = "Progressing"
if reconciling ~= nil then
  hs.message = reconciling.reason .. ": " .. (reconciling.message or "")
else
  hs.message = ready.reason .. ": " .. (ready.message or "")
end
return hs
