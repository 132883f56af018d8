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
	// ConditionReconciling (kstatus, abnormal-true) is True while the operator
	// is still working towards the desired state: waiting for an account,
	// applying a change, retrying Twilio. kubectl wait, Flux and kpt read the
	// object as InProgress.
	ConditionReconciling = "Reconciling"
	// ConditionStalled (kstatus, abnormal-true) is True when the operator
	// cannot make progress without a human: a Conflict, a number missing from
	// the account, refused credentials… Its reason is the Ready (or Synced)
	// reason. kubectl wait, Flux and kpt read the object as Failed.
	ConditionStalled = "Stalled"
	// ConditionNumbersHandedBack on a TwilioAccount being deleted is False
	// while some of its TwilioPhoneNumbers still hold saved originals; the
	// account (and its credentials Secret) stay until they are handed back.
	ConditionNumbersHandedBack = "NumbersHandedBack"
	// ConditionMessaging on a TwilioPhoneNumber with spec.messaging Enabled
	// is True when the number's inbound SMS reach the webhook server. It is
	// absent when messaging is Disabled.
	ConditionMessaging = "Messaging"
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
	// egress policy refuses (loopback, link-local, outside the allow-list…),
	// or spec.agent.headersSecretRef names a Secret that is missing or lacks
	// the label LabelAgentHeaders; the number is not taken over.
	ReasonAgentNotAllowed = "AgentNotAllowed"
	// ReasonRestoreBlocked: deletion with deletionPolicy Restore cannot reach Twilio.
	ReasonRestoreBlocked = "RestoreBlocked"
	// ReasonWebhookUnreachable: the preflight (a request signed as Twilio
	// would sign it, to the public voice URL) did not come back with an
	// answer that streams the call to the number's agent; nothing is taken
	// over through the account until it does.
	ReasonWebhookUnreachable = "WebhookUnreachable"
	// ReasonContested: the number's live routing is another install's voice
	// URL, or kept flipping back to the same foreign URL; the operator stops
	// re-applying (and never saves that URL as the original) until the
	// object changes.
	ReasonContested = "Contested"
	// ReasonTakeoverPaced: the account's take-over pace (spec.takeover or the
	// manager's --takeover-burst/--takeover-per-minute) is spent; the number
	// is taken over when its turn comes.
	ReasonTakeoverPaced = "TakeoverPaced"
	// ReasonNumbersStillRouted: a TwilioAccount being deleted waits for its
	// numbers that hold saved originals to be handed back.
	ReasonNumbersStillRouted = "NumbersStillRouted"
	// ReasonNumbersHandedBack: none of a deleting TwilioAccount's numbers
	// holds a saved original any more.
	ReasonNumbersHandedBack = "NumbersHandedBack"

	// ReasonSMSRouted: the number's inbound SMS go to the webhook server.
	ReasonSMSRouted = "SMSRouted"
	// ReasonInMessagingService: the number is in a Messaging Service whose
	// inbound settings override the number's SmsUrl; the operator leaves its
	// SMS routing as it is (it never detaches a number from a service).
	ReasonInMessagingService = "InMessagingService"
	// ReasonVoiceNotRouted: spec.messaging is Enabled, but the number's voice
	// routing is not (yet) taken over; SMS follow it.
	ReasonVoiceNotRouted = "VoiceNotRouted"

	// ReasonPurchaseNotAllowed: spec.acquire is Purchase and the number is
	// not in the account, but the TwilioAccount does not allow purchases.
	ReasonPurchaseNotAllowed = "PurchaseNotAllowed"
	// ReasonPurchaseLimitReached: buying the number would put the account
	// over spec.purchasing.maxNumbers.
	ReasonPurchaseLimitReached = "PurchaseLimitReached"
	// ReasonNumberUnavailable: Twilio does not sell the number (bought by
	// someone else, or never on sale); nothing was bought.
	ReasonNumberUnavailable = "NumberUnavailable"
	// ReasonPurchaseLost: this operator bought the number, and it is no longer
	// in the account; it is never bought again on its own.
	ReasonPurchaseLost = "PurchaseLost"

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

// Finalizers of the account life cycle.
const (
	// AccountFinalizer keeps a TwilioAccount while numbers that route through
	// it hold saved originals: their restore needs its credentials.
	AccountFinalizer = "twilio.loquent.io/hand-back-numbers"
	// CredentialsFinalizer keeps a TwilioAccount's credentials Secret (it
	// stays readable while terminating) until no account that uses it needs
	// it for a restore, so deleting a whole bundle still hands every number back.
	CredentialsFinalizer = "twilio.loquent.io/credentials-in-use" //nolint:gosec // a finalizer name, not a credential
)

// LabelAgentHeaders marks a Secret whose keys may be sent as headers to an
// agent (spec.agent.headersSecretRef); only Secrets labelled "true" are used.
const LabelAgentHeaders = "twilio.loquent.io/agent-headers"

// VoiceURLInstallParam is the query parameter that marks a Voice URL as set by
// an install of this operator; its value names the install (--install-id).
// A number at another install's marked URL is Contested, never taken over,
// and that URL is never saved as an original.
const VoiceURLInstallParam = "tvo-install"

// Annotations written by the operator.
const (
	// AnnotationSavedRouting holds a copy of status.savedRouting, signed with
	// the operator's guard key and bound to the object's namespace, name and
	// number, written (with the finalizer) before the first Twilio write, so a
	// lost status (a backup restore, a re-created object) cannot lose the
	// number's original routing. One the operator did not sign proves nothing.
	AnnotationSavedRouting = "twilio.loquent.io/saved-routing"
	// AnnotationPurchase holds the operator's purchase record of the number
	// (status.purchase), signed the same way: written before the create call
	// that buys it, and the only proof that counts for a release.
	AnnotationPurchase = "twilio.loquent.io/purchase"
)
