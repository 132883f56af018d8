package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// VoiceRouting says whether inbound calls to the number go to our webhook server.
// +kubebuilder:validation:Enum=Enabled;Disabled
type VoiceRouting string

const (
	// VoiceRoutingEnabled takes the number over: its Voice URL points at the webhook server.
	VoiceRoutingEnabled VoiceRouting = "Enabled"
	// VoiceRoutingDisabled hands the number back: its saved original routing is restored, the object stays.
	VoiceRoutingDisabled VoiceRouting = "Disabled"
)

// DeletionPolicy says what deleting the object does to the number in Twilio.
// +kubebuilder:validation:Enum=Restore;Orphan;Release
type DeletionPolicy string

const (
	// DeletionPolicyRestore restores the saved original routing before the object goes.
	DeletionPolicyRestore DeletionPolicy = "Restore"
	// DeletionPolicyOrphan leaves the number routed as it is.
	DeletionPolicyOrphan DeletionPolicy = "Orphan"
	// DeletionPolicyRelease releases the number (deletes it from the
	// account) when this operator bought it and the TwilioAccount allows
	// releases (spec.purchasing.allowRelease); otherwise it restores.
	DeletionPolicyRelease DeletionPolicy = "Release"
)

// Acquire says how a number comes into the Twilio account.
// +kubebuilder:validation:Enum=Existing;Purchase
type Acquire string

const (
	// AcquireExisting adopts a number that is already in the account.
	AcquireExisting Acquire = "Existing"
	// AcquirePurchase buys the number when it is not in the account, with
	// its routing set in the purchase, if the TwilioAccount allows purchases.
	AcquirePurchase Acquire = "Purchase"
)

// Messaging says whether the operator also routes a number's inbound SMS.
// +kubebuilder:validation:Enum=Enabled;Disabled
type Messaging string

const (
	// MessagingEnabled points the number's SMS at the webhook server while
	// its voice routing is Enabled.
	MessagingEnabled Messaging = "Enabled"
	// MessagingDisabled leaves the number's SMS routing as it is (restoring
	// it if the operator had taken it over).
	MessagingDisabled Messaging = "Disabled"
)

// LocalObjectReference names an object in the same namespace.
type LocalObjectReference struct {
	// Name of the object.
	// +kubebuilder:validation:MinLength=1
	Name string `json:"name"`
}

// AgentSpec says where the webhook server sends a call's media stream.
type AgentSpec struct {
	// URL of the agent's WebSocket endpoint; it speaks Twilio's Media Streams
	// protocol. A query string is allowed (and kept), a fragment is not.
	// +kubebuilder:validation:MaxLength=2048
	// +kubebuilder:validation:XValidation:rule="self.matches('^wss?://[^/?# ]+([/?][^# ]*)?$')",message="must be a ws:// or wss:// URL such as wss://agent.example.com/media: a host, then an optional path and query string, without spaces or a #fragment"
	URL string `json:"url"`
	// HeadersSecretRef names a Secret in this namespace whose keys are sent
	// as HTTP headers of the same name on the WebSocket handshake to the
	// agent, for example key Authorization with value "Bearer …": the
	// agent's own credentials. The Secret must carry the label
	// twilio.loquent.io/agent-headers: "true" (set by someone who may write
	// Secrets), so that editing a number can never send another Secret of the
	// namespace to an agent URL of the editor's choice. Handshake headers
	// (Host, Connection, Upgrade, Sec-WebSocket-*) are not sent.
	// +optional
	HeadersSecretRef *SecretReference `json:"headersSecretRef,omitempty"`
}

// RecordingSpec controls call recording.
type RecordingSpec struct {
	// Enabled records both tracks of each call in two channels. Consent rules
	// differ by country; turn it off where callers have not agreed.
	// +kubebuilder:default=true
	// +optional
	Enabled *bool `json:"enabled,omitempty"`
}

// FallbackAction is what a call does when its agent cannot take it.
// +kubebuilder:validation:Enum=Say;Dial;Original
type FallbackAction string

const (
	// FallbackSay speaks fallback.message and hangs up.
	FallbackSay FallbackAction = "Say"
	// FallbackDial dials fallback.number.
	FallbackDial FallbackAction = "Dial"
	// FallbackOriginal redirects the call to the saved original Voice URL,
	// so the platform the number came from answers it. A number whose
	// original had no Voice URL (empty, an application or a trunk) gets Say.
	FallbackOriginal FallbackAction = "Original"
)

// FallbackSpec says what happens to a call whose agent cannot take it: the
// agent is unreachable or refused, or the media stream ends without the call
// being hung up. The webhook server puts the fallback after </Connect> in the
// call's TwiML, where Twilio goes on once the stream ends. Agents end calls
// by hanging them up (Twilio's REST API), not by closing the stream.
// +kubebuilder:validation:XValidation:rule="self.action != 'Dial' || has(self.number)",message="fallback.number is required when fallback.action is Dial: the E.164 number to dial, for example +14155550100"
// +kubebuilder:validation:XValidation:rule="!(has(self.voiceFallbackURL) && has(self.originalAsVoiceFallback) && self.originalAsVoiceFallback)",message="set at most one of fallback.voiceFallbackURL and fallback.originalAsVoiceFallback"
type FallbackSpec struct {
	// Action is Say (the default: fallback.message, then hang up), Dial
	// (fallback.number) or Original (redirect to the saved original Voice URL).
	// +kubebuilder:default=Say
	// +optional
	Action FallbackAction `json:"action,omitempty"`
	// Message spoken by Say; by default "Sorry, this number cannot take your
	// call right now. Goodbye."
	// +kubebuilder:validation:MaxLength=1000
	// +optional
	Message string `json:"message,omitempty"`
	// Number dialled by Dial, in E.164 form.
	// +kubebuilder:validation:MaxLength=16
	// +kubebuilder:validation:XValidation:rule="self.matches('^[+][1-9][0-9]{1,14}$')",message="fallback.number must be in E.164 form: a plus sign, the country code and the number, digits only (for example +14155550100)"
	// +optional
	Number string `json:"number,omitempty"`
	// OriginalAsVoiceFallback also sets the number's VoiceFallbackUrl in
	// Twilio to the saved original Voice URL while it routes here, so that
	// Twilio asks the old platform when the webhook server cannot answer
	// (cluster or ingress down). Restore puts the original fallback back.
	// +optional
	OriginalAsVoiceFallback bool `json:"originalAsVoiceFallback,omitempty"`
	// VoiceFallbackURL does the same with a URL of your choice.
	// +kubebuilder:validation:MaxLength=2048
	// +kubebuilder:validation:XValidation:rule="self.matches('^https?://[^/?#]+([/?#].*)?$')",message="fallback.voiceFallbackURL must be an absolute http:// or https:// URL, for example https://old-platform.example.com/voice"
	// +optional
	VoiceFallbackURL string `json:"voiceFallbackURL,omitempty"`
}

// EventsSpec says where what Twilio reports about a number's calls and
// messages is delivered.
type EventsSpec struct {
	// Sink receives the events as CloudEvents 1.0 over HTTP.
	// +optional
	Sink *EventSink `json:"sink,omitempty"`
	// CallStatus, on a number, also delivers call lifecycle events: the
	// take-over points the number's StatusCallback at the webhook server's
	// /twilio/status (the original status callback is saved and restored
	// with the rest of the routing). Off by default.
	// +optional
	CallStatus bool `json:"callStatus,omitempty"`
}

// EventSink is an HTTP endpoint that accepts CloudEvents 1.0 (binary mode):
// a Knative Eventing broker, an Argo Events webhook event source, or any
// service of yours. The webhook server's agent egress policy applies to it.
type EventSink struct {
	// URL of the sink, http:// or https://.
	// +kubebuilder:validation:MaxLength=2048
	// +kubebuilder:validation:XValidation:rule="self.matches('^https?://[^/?# ]+([/?][^# ]*)?$')",message="must be an http:// or https:// URL such as http://broker-ingress.knative-eventing.svc/voice/default, without spaces or a #fragment"
	URL string `json:"url"`
}

// TwilioPhoneNumberSpec is one number's desired inbound voice routing.
type TwilioPhoneNumberSpec struct {
	// AccountRef names the TwilioAccount, in this namespace, that owns the number. Immutable.
	// +kubebuilder:validation:XValidation:rule="self == oldSelf",message="accountRef is immutable; delete this TwilioPhoneNumber (its original routing is restored) and create one that names the other account"
	AccountRef LocalObjectReference `json:"accountRef"`

	// PhoneNumber in E.164 form, for example +14155550100, quoted in YAML.
	// Immutable. The schema takes an integer too, only to refuse it with a
	// message that says to quote it (YAML reads +14155550100 unquoted as a
	// number and drops the plus sign).
	// +kubebuilder:validation:XIntOrString
	// +kubebuilder:validation:Type=""
	// +kubebuilder:validation:XValidation:rule="type(self) == string && self.matches('^[+][1-9][0-9]{1,14}$')",messageExpression="type(self) != string ? 'phoneNumber must be a quoted string such as \"+14155550100\": unquoted, YAML reads it as the integer ' + string(self) + ' and drops the plus sign' : 'phoneNumber must be in E.164 form: a plus sign, the country code and the number, digits only, at most 15 digits (for example +14155550100)'"
	// +kubebuilder:validation:XValidation:rule="self == oldSelf",message="phoneNumber is immutable; create a new TwilioPhoneNumber for another number"
	PhoneNumber string `json:"phoneNumber"`

	// Acquire Existing (default) takes over a number already in the Twilio
	// account. Purchase buys it when it is not there, through a TwilioAccount
	// whose spec.purchasing allows it, with its voice routing set in the
	// purchase itself; a number that is already in the account is taken
	// over as usual (and was not bought by the operator).
	// +kubebuilder:default=Existing
	// +optional
	Acquire Acquire `json:"acquire,omitempty"`

	// VoiceRouting Enabled points the number's Voice URL at the webhook server,
	// saving what it had; Disabled restores what was saved and keeps the object.
	// +kubebuilder:default=Enabled
	// +optional
	VoiceRouting VoiceRouting `json:"voiceRouting,omitempty"`

	// Agent is where this number's calls go.
	// +optional
	Agent *AgentSpec `json:"agent,omitempty"`

	// Messaging Enabled also points the number's inbound SMS at the webhook
	// server (/twilio/events) while voiceRouting is Enabled. Its SMS routing
	// (SmsUrl, SmsMethod, SmsFallbackUrl/Method, SmsApplicationSid) is saved
	// first and restored on hand-back, and each message reaches the events
	// sink as io.loquent.twilio.message.received. A number in a Messaging
	// Service whose inbound settings override the number's is reported in the
	// Messaging condition and left as it is. Default Disabled.
	// +kubebuilder:default=Disabled
	// +optional
	Messaging Messaging `json:"messaging,omitempty"`

	// Fallback is what a call does when its agent cannot take it; unset, the
	// call ends.
	// +optional
	Fallback *FallbackSpec `json:"fallback,omitempty"`

	// Events says where recordings and other reports about this number go;
	// unset, the TwilioAccount's spec.events applies.
	// +optional
	Events *EventsSpec `json:"events,omitempty"`

	// Recording of this number's calls; on by default.
	// +kubebuilder:default={enabled: true}
	// +optional
	Recording RecordingSpec `json:"recording,omitempty"`

	// DeletionPolicy Restore (default) restores the saved routing when the
	// object is deleted; Orphan leaves the number as it is; Release releases
	// a number this operator bought when the account allows releases (any
	// other number is restored instead, and the refusal reported).
	// +kubebuilder:default=Restore
	// +optional
	DeletionPolicy DeletionPolicy `json:"deletionPolicy,omitempty"`

	// AllowTrunkDetach lets the operator detach the number from its Elastic SIP
	// trunk to take it over (the trunk SID is saved and put back on restore).
	// Without it a number on a trunk is left alone and reported.
	// +optional
	AllowTrunkDetach bool `json:"allowTrunkDetach,omitempty"`
}

// SavedRouting is a number's complete voice routing (and, once the operator
// has routed its SMS, its SMS routing) as Twilio had it before the operator
// took it over; restore writes every field back, empty ones as explicit
// empty values.
type SavedRouting struct {
	// +optional
	VoiceURL string `json:"voiceUrl,omitempty"`
	// +optional
	VoiceMethod string `json:"voiceMethod,omitempty"`
	// +optional
	VoiceFallbackURL string `json:"voiceFallbackUrl,omitempty"`
	// +optional
	VoiceFallbackMethod string `json:"voiceFallbackMethod,omitempty"`
	// +optional
	StatusCallback string `json:"statusCallback,omitempty"`
	// +optional
	StatusCallbackMethod string `json:"statusCallbackMethod,omitempty"`
	// +optional
	VoiceApplicationSID string `json:"voiceApplicationSid,omitempty"`
	// +optional
	TrunkSID string `json:"trunkSid,omitempty"`
	// SMSSaved is true when the SMS fields hold the number's SMS routing as
	// it was before the operator pointed its SMS at the webhook server.
	// +optional
	SMSSaved bool `json:"smsSaved,omitempty"`
	// +optional
	SmsURL string `json:"smsUrl,omitempty"`
	// +optional
	SmsMethod string `json:"smsMethod,omitempty"`
	// +optional
	SmsFallbackURL string `json:"smsFallbackUrl,omitempty"`
	// +optional
	SmsFallbackMethod string `json:"smsFallbackMethod,omitempty"`
	// +optional
	SmsApplicationSID string `json:"smsApplicationSid,omitempty"`
}

// PurchaseStatus is the operator's record of buying a number. The copy that
// counts is the signed annotation twilio.loquent.io/purchase; this is the
// copy users read.
type PurchaseStatus struct {
	// IntentID names the purchase; the create call puts it in the bought
	// number's FriendlyName, so that a purchase whose answer was lost is
	// recognised in the account instead of bought again.
	IntentID string `json:"intentId"`
	// RequestedAt is when the intent was recorded, before the create call.
	RequestedAt metav1.Time `json:"requestedAt"`
	// PhoneNumberSID is the number bought (PN…); empty while pending.
	// +optional
	PhoneNumberSID string `json:"phoneNumberSid,omitempty"`
	// PurchasedAt is when the operator saw the number bought.
	// +optional
	PurchasedAt *metav1.Time `json:"purchasedAt,omitempty"`
}

// TwilioPhoneNumberStatus is what the operator observed and saved.
type TwilioPhoneNumberStatus struct {
	// PhoneNumberSID is the number's IncomingPhoneNumber SID (PN…).
	// +optional
	PhoneNumberSID string `json:"phoneNumberSid,omitempty"`
	// FriendlyName is the number's friendly name in Twilio.
	// +optional
	FriendlyName string `json:"friendlyName,omitempty"`
	// VoiceURL is the Voice URL last observed in Twilio.
	// +optional
	VoiceURL string `json:"voiceUrl,omitempty"`
	// ConfiguredVoiceURL is the Voice URL this operator last pointed the
	// number at, while it routes here. After a change of the public URL, the
	// earlier one is recognised as the operator's own: re-pointed without a
	// drift warning, and never saved as the original.
	// +optional
	ConfiguredVoiceURL string `json:"configuredVoiceURL,omitempty"`

	// PreviousVoiceURL keeps the seed's three states: absent = not configured
	// by this operator; "" = configured, Twilio had no Voice URL;
	// "https://…" = configured, this original saved for restore.
	// +optional
	PreviousVoiceURL *string `json:"previousVoiceURL,omitempty"`
	// Original is the saved original as kubectl get shows it (PREVIOUS URL):
	// the Voice URL, "(none)" when Twilio had none, "(application AP…)" or
	// "(trunk TK…)"; absent when the operator saved nothing (not configured).
	// +optional
	Original string `json:"original,omitempty"`
	// SavedRouting is the full original routing, present exactly when PreviousVoiceURL is.
	// +optional
	SavedRouting *SavedRouting `json:"savedRouting,omitempty"`
	// Purchase records this operator's purchase of the number (with
	// spec.acquire: Purchase): the intent, written before the create call,
	// then the number bought. Absent for numbers the operator did not buy.
	// +optional
	Purchase *PurchaseStatus `json:"purchase,omitempty"`
	// MessagingServiceSID is the Messaging Service (MG…) whose sender pool
	// holds the number, when spec.messaging is Enabled and it is in one.
	// +optional
	MessagingServiceSID string `json:"messagingServiceSid,omitempty"`

	// ObservedGeneration is the generation last reconciled.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`
	// Conditions: Ready (live routing equals desired), Synced (last Twilio
	// exchange succeeded), Messaging (with spec.messaging Enabled: whether
	// inbound SMS reach the webhook server), Reconciling and Stalled.
	// +listType=map
	// +listMapKey=type
	// +optional
	Conditions []metav1.Condition `json:"conditions,omitempty"`
}

// TwilioPhoneNumber declares one Twilio number's inbound voice routing.
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=twnum,categories=twilio
// +kubebuilder:printcolumn:name="NUMBER",type=string,JSONPath=`.spec.phoneNumber`
// +kubebuilder:printcolumn:name="FRIENDLY NAME",type=string,JSONPath=`.status.friendlyName`
// +kubebuilder:printcolumn:name="ROUTING",type=string,JSONPath=`.spec.voiceRouting`
// +kubebuilder:printcolumn:name="PREVIOUS URL",type=string,JSONPath=`.status.original`
// +kubebuilder:printcolumn:name="READY",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="REASON",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].reason`
// +kubebuilder:printcolumn:name="AGE",type=date,JSONPath=`.metadata.creationTimestamp`
type TwilioPhoneNumber struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec TwilioPhoneNumberSpec `json:"spec"`
	// Status defaults to observedGeneration 0, so that an object the
	// operator has not seen yet reads as in progress (kstatus), not Current.
	// +kubebuilder:default={observedGeneration: 0}
	Status TwilioPhoneNumberStatus `json:"status,omitempty"`
}

// TwilioPhoneNumberList is a list of TwilioPhoneNumbers.
// +kubebuilder:object:root=true
type TwilioPhoneNumberList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []TwilioPhoneNumber `json:"items"`
}

// RecordingEnabled reports whether calls to this number are recorded (the default).
func (n *TwilioPhoneNumber) RecordingEnabled() bool {
	return n.Spec.Recording.Enabled == nil || *n.Spec.Recording.Enabled
}

// RoutingEnabled reports whether the number should route to the webhook server.
func (n *TwilioPhoneNumber) RoutingEnabled() bool {
	return n.Spec.VoiceRouting != VoiceRoutingDisabled
}

// MessagingEnabled reports whether the number's SMS should route to the
// webhook server too (spec.messaging Enabled; it applies while voice routing
// is Enabled).
func (n *TwilioPhoneNumber) MessagingEnabled() bool {
	return n.Spec.Messaging == MessagingEnabled
}

// HoldsOriginal reports whether the operator saved the number's original
// routing on this object, i.e. it has taken the number over. Only status
// counts: users cannot write it, while anyone who may edit the object can
// write annotations.
func (n *TwilioPhoneNumber) HoldsOriginal() bool {
	return n.Status.SavedRouting != nil
}

// OwnsBefore orders TwilioPhoneNumbers that claim the same number; the first
// owns it. An object holding a saved original (it took the number over) is
// never displaced; otherwise the older object wins, and objects created in
// the same second (the timestamp's resolution) are ordered by namespace/name.
// The operator and the webhook server both use this order, so the object that
// routes a number is the one whose agent answers it.
func OwnsBefore(a, b *TwilioPhoneNumber) bool {
	if ha, hb := a.HoldsOriginal(), b.HoldsOriginal(); ha != hb {
		return ha
	}
	if !a.CreationTimestamp.Equal(&b.CreationTimestamp) {
		return a.CreationTimestamp.Before(&b.CreationTimestamp)
	}
	if a.Namespace != b.Namespace {
		return a.Namespace < b.Namespace
	}
	return a.Name < b.Name
}
