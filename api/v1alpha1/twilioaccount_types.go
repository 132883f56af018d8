package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// SecretReference names a Secret in the same namespace.
type SecretReference struct {
	// Name of the Secret.
	// +kubebuilder:validation:MinLength=1
	Name string `json:"name"`
}

// TwilioAccountSpec identifies a Twilio account (or subaccount) and how to reach its API.
type TwilioAccountSpec struct {
	// AccountSID is the Twilio account SID (AC followed by 32 hex digits).
	// +kubebuilder:validation:MaxLength=64
	// +kubebuilder:validation:XValidation:rule="self.matches('^AC[0-9a-fA-F]{32}$')",message="accountSid must be a Twilio account SID: AC followed by 32 hexadecimal characters, as shown in the Twilio Console"
	// +kubebuilder:validation:XValidation:rule="self == oldSelf",message="accountSid is immutable; create a new TwilioAccount instead"
	AccountSID string `json:"accountSid"`

	// CredentialsSecretRef names a Secret in this namespace with the key
	// authToken (always needed: Twilio signs webhooks with it) and optionally
	// apiKeySid and apiKeySecret, which are then used for REST calls instead.
	CredentialsSecretRef SecretReference `json:"credentialsSecretRef"`

	// APIURL overrides Twilio's REST base URL (https://api.twilio.com), for an
	// emulator or an egress proxy.
	// +kubebuilder:validation:Pattern=`^https?://[^/?#]+/?$`
	// +optional
	APIURL string `json:"apiURL,omitempty"`

	// Edge is the Twilio edge location for REST calls (for example ashburn).
	// +kubebuilder:validation:Pattern=`^[a-z0-9-]+$`
	// +optional
	Edge string `json:"edge,omitempty"`

	// Region is the Twilio region for REST calls (for example us1, ie1).
	// +kubebuilder:validation:Pattern=`^[a-z0-9]+$`
	// +optional
	Region string `json:"region,omitempty"`

	// MaxConcurrentRequests caps this account's in-flight REST requests from
	// this operator; unset, the manager's --twilio-max-concurrent-requests
	// applies. Twilio limits concurrency per account and answers 429 above it.
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=100
	// +optional
	MaxConcurrentRequests int32 `json:"maxConcurrentRequests,omitempty"`
	// Events is the default for the account's numbers that set no
	// spec.events: where recordings and other reports are delivered.
	// +optional
	Events *EventsSpec `json:"events,omitempty"`
	// Takeover paces how fast this account's numbers are pointed at the
	// webhook server (take-overs, re-points after a public URL change, drift
	// repairs); unset fields take the manager's --takeover-burst and
	// --takeover-per-minute. Hand-backs are never paced.
	// +optional
	Takeover *TakeoverPacing `json:"takeover,omitempty"`
	// Purchasing lets TwilioPhoneNumbers with spec.acquire: Purchase buy
	// numbers through this account, and (with allowRelease) release the
	// numbers the operator bought. Unset, nothing is ever bought or released.
	// +optional
	Purchasing *PurchasingSpec `json:"purchasing,omitempty"`
}

// PurchasingSpec are the rails of buying and releasing numbers.
// +kubebuilder:validation:XValidation:rule="!self.enabled || self.maxNumbers > 0",message="spec.purchasing.maxNumbers must be above 0 when purchases are enabled: it caps how many numbers the operator may buy and hold through this account"
type PurchasingSpec struct {
	// Enabled allows purchases.
	Enabled bool `json:"enabled"`
	// MaxNumbers caps how many numbers bought by the operator this account
	// may hold at once (bought and not released, pending purchases
	// included); a purchase over it waits with PurchaseLimitReached.
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=100000
	// +optional
	MaxNumbers int32 `json:"maxNumbers,omitempty"`
	// AllowRelease lets deletionPolicy: Release release (delete from the
	// account, ending its billing) a number the operator bought through
	// this account. Numbers the operator did not buy are never released.
	// +optional
	AllowRelease bool `json:"allowRelease,omitempty"`
}

// TakeoverPacing is a token bucket: Burst numbers at once, then PerMinute.
type TakeoverPacing struct {
	// Burst is how many numbers may be taken over at once.
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=100000
	// +optional
	Burst *int32 `json:"burst,omitempty"`
	// PerMinute is how many more numbers may be taken over each minute once
	// the burst is spent.
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=100000
	// +optional
	PerMinute *int32 `json:"perMinute,omitempty"`
}

// TwilioAccountStatus is what the operator observed of the account.
type TwilioAccountStatus struct {
	// FriendlyName is the account's name in Twilio.
	// +optional
	FriendlyName string `json:"friendlyName,omitempty"`
	// Type is the account type in Twilio (Trial or Full).
	// +optional
	Type string `json:"type,omitempty"`
	// AccountStatus is the account's status in Twilio (active, suspended, closed).
	// +optional
	AccountStatus string `json:"accountStatus,omitempty"`
	// NumbersInAccount counts the incoming phone numbers in the Twilio account.
	// +optional
	NumbersInAccount *int32 `json:"numbersInAccount,omitempty"`
	// NumbersManaged counts TwilioPhoneNumbers in this namespace that reference this account.
	// +optional
	NumbersManaged int32 `json:"numbersManaged"`
	// NumbersPurchased counts the numbers this operator bought through this
	// account that it still holds (bought, or being bought, and not released).
	// +optional
	NumbersPurchased int32 `json:"numbersPurchased,omitempty"`
	// ObservedGeneration is the generation last reconciled.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`
	// Conditions: Ready (credentials verified) and Synced (last API exchange succeeded).
	// +listType=map
	// +listMapKey=type
	// +optional
	Conditions []metav1.Condition `json:"conditions,omitempty"`
}

// TwilioAccount is a Twilio account (the seed's BYO account) whose numbers this cluster may route.
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=twacct,categories=twilio
// +kubebuilder:printcolumn:name="SID",type=string,JSONPath=`.spec.accountSid`
// +kubebuilder:printcolumn:name="NAME IN TWILIO",type=string,JSONPath=`.status.friendlyName`
// +kubebuilder:printcolumn:name="NUMBERS",type=integer,JSONPath=`.status.numbersInAccount`
// +kubebuilder:printcolumn:name="MANAGED",type=integer,JSONPath=`.status.numbersManaged`
// +kubebuilder:printcolumn:name="READY",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="REASON",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].reason`
// +kubebuilder:printcolumn:name="AGE",type=date,JSONPath=`.metadata.creationTimestamp`
type TwilioAccount struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec TwilioAccountSpec `json:"spec"`
	// Status defaults to observedGeneration 0, so that an object the
	// operator has not seen yet reads as in progress (kstatus), not Current.
	// +kubebuilder:default={observedGeneration: 0}
	Status TwilioAccountStatus `json:"status,omitempty"`
}

// TwilioAccountList is a list of TwilioAccounts.
// +kubebuilder:object:root=true
type TwilioAccountList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []TwilioAccount `json:"items"`
}
