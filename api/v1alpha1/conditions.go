package v1alpha1

// Condition types shared by both kinds.
const (
	// ConditionReady on a TwilioPhoneNumber is True when the number's live
	// routing in Twilio equals the desired routing (ours when Enabled, the
	// saved original when Disabled). On a TwilioAccount it is True once the
	// credentials were verified against the Twilio API.
	ConditionReady = "Ready"
	// ConditionSynced is True when the last exchange with Twilio succeeded.
	ConditionSynced = "Synced"
)

// Condition reasons. CamelCase, stable: users and Argo CD health checks match on them.
const (
	// ReasonConfigured: the number routes inbound calls to the webhook server.
	ReasonConfigured = "Configured"
	// ReasonOriginalUnknown: the number already routed to the webhook server when
	// first observed and no original routing was saved anywhere, so none was recorded.
	ReasonOriginalUnknown = "OriginalUnknown"
	// ReasonRoutingDisabled: voiceRouting is Disabled and the number's original routing is in place.
	ReasonRoutingDisabled = "RoutingDisabled"
	// ReasonProgressing: a change is being applied.
	ReasonProgressing = "Progressing"
	// ReasonConflict: another, older TwilioPhoneNumber in the cluster owns the same number.
	ReasonConflict = "Conflict"
	// ReasonAccountNotReady: the referenced TwilioAccount is missing or not Ready.
	ReasonAccountNotReady = "AccountNotReady"
	// ReasonNumberNotFound: the number is not in the referenced Twilio account.
	ReasonNumberNotFound = "NumberNotFound"
	// ReasonTrunkAttached: the number is on a SIP trunk and spec.allowTrunkDetach is false.
	ReasonTrunkAttached = "TrunkAttached"
	// ReasonNoAgent: voiceRouting is Enabled but spec.agent is not set, so a
	// call would only hear a goodbye; the number is not taken over.
	ReasonNoAgent = "NoAgent"
	// ReasonAgentNotAllowed: spec.agent.url names a destination the agent
	// egress policy refuses (loopback, link-local, outside the allow-list…);
	// the number is not taken over.
	ReasonAgentNotAllowed = "AgentNotAllowed"
	// ReasonRestoreBlocked: deletion with deletionPolicy Restore cannot reach Twilio.
	ReasonRestoreBlocked = "RestoreBlocked"

	// ReasonSynced: the last Twilio exchange succeeded.
	ReasonSynced = "Synced"
	// ReasonTwilioAPIError: Twilio answered with a server error or could not be reached; retried with backoff.
	ReasonTwilioAPIError = "TwilioAPIError"
	// ReasonRateLimited: Twilio answered 429 (too many concurrent requests); retried with backoff.
	ReasonRateLimited = "RateLimited"
	// ReasonTwilioRejected: Twilio refused the request (4xx); the same request is
	// not sent again until something it depends on changes.
	ReasonTwilioRejected = "TwilioRejected"

	// ReasonVerified: the account's credentials were accepted by Twilio.
	ReasonVerified = "Verified"
	// ReasonInvalidCredentials: Twilio refused the account's credentials.
	ReasonInvalidCredentials = "InvalidCredentials"
	// ReasonSecretNotFound: the credentials Secret does not exist.
	ReasonSecretNotFound = "SecretNotFound"
	// ReasonSecretInvalid: the credentials Secret lacks a required key or has an unusable value.
	ReasonSecretInvalid = "SecretInvalid"
	// ReasonAPIURLNotAllowed: spec.apiURL is neither Twilio's API nor allowed
	// by the manager's --allowed-api-urls; no credentials are sent there.
	ReasonAPIURLNotAllowed = "APIURLNotAllowed"
)

// Annotations written by the operator.
const (
	// AnnotationSavedRouting holds a copy of status.savedRouting, signed with
	// the operator's guard key and bound to the object's namespace, name and
	// number, written (with the finalizer) before the first Twilio write, so a
	// lost status (a backup restore, a re-created object) cannot lose the
	// number's original routing. One the operator did not sign proves nothing.
	AnnotationSavedRouting = "twilio.loquent.io/saved-routing"
)
