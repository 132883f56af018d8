-- Configure Voice: take the number over again. The operator saves its
-- current routing and points it at the webhook server (voiceRouting: Enabled).
obj.spec.voiceRouting = "Enabled"
return obj
