package devenv

import (
	"encoding/json"
	"fmt"
	"strings"

	"github.com/loquent/twilio-voice-operator/internal/twiliosim"
)

// SampleNumber is one number of the emulated customer.
type SampleNumber struct {
	// Name is the TwilioPhoneNumber's name.
	Name string
	// E164 is the number.
	E164 string
	// FriendlyName is its name in Twilio.
	FriendlyName string
	// Routing sets the routing it has before the operator takes it over.
	Routing func(*twiliosim.Number)
	// Fallback is the object's spec.fallback (flow-style YAML), or "".
	Fallback string
	// Messaging sets spec.messaging: Enabled (its SMS routed too).
	Messaging bool
}

// SalesFallbackMessage is what a caller of the sales line hears when its
// agent cannot take the call (its spec.fallback).
const SalesFallbackMessage = "Our assistant is unavailable right now. Please call back in a few minutes."

// OriginalURL is the support line's Voice URL before the takeover.
const OriginalURL = "https://old-platform.example.com/voice"

// OriginalSMSURL is the support line's SmsUrl before the takeover.
const OriginalSMSURL = "https://old-platform.example.com/sms"

// SampleNumbers are the emulated customer's numbers: one with a Voice URL
// called by GET (so an exact restore shows) and an SmsUrl, its SMS routed
// too; one with none; one on a TwiML application (which takes precedence
// over any Voice URL).
var SampleNumbers = []SampleNumber{
	{"support-line", "+14155550100", "Support line", func(n *twiliosim.Number) {
		n.VoiceURL, n.VoiceMethod = OriginalURL, "GET"
		n.SmsURL = OriginalSMSURL
	}, "", true},
	{"sales-line", "+14155550101", "Sales line", nil, "{action: Say, message: " + `"` + SalesFallbackMessage + `"}`, false},
	{"ivr-line", "+14155550102", "IVR line", func(n *twiliosim.Number) { n.VoiceApplicationSID = "APde400000000000000000000000000002" }, "", false},
}

// AddSampleNumbers puts SampleNumbers into the emulated account, and a few
// San Francisco numbers (PurchaseNumber among them) on sale.
func (e *Env) AddSampleNumbers() {
	for _, n := range SampleNumbers {
		tw := e.Emulator.AddNumber(twiliosim.Number{AccountSID: AccountSID, PhoneNumber: n.E164, FriendlyName: n.FriendlyName})
		if n.Routing != nil {
			e.Emulator.UpdateNumber(tw.SID, n.Routing)
		}
	}
	e.Emulator.AddAvailable(twiliosim.AvailableNumber{PhoneNumber: PurchaseNumber, Locality: "San Francisco", Region: "CA", PostalCode: "94105"})
	e.Emulator.SeedAvailable("US", 4)
}

// PurchaseNumber is the number on sale that PurchaseYAML buys.
const PurchaseNumber = "+14155550142"

// PurchaseYAML is a TwilioPhoneNumber that buys PurchaseNumber through the
// sample account (which allows one purchase and releases), routed to the
// sample agent, and released when deleted.
func (e *Env) PurchaseYAML() string {
	return fmt.Sprintf(`apiVersion: twilio.loquent.io/v1alpha1
kind: TwilioPhoneNumber
metadata: {name: new-line, namespace: default}
spec:
  accountRef: {name: acme}
  phoneNumber: "%s"
  acquire: Purchase
  deletionPolicy: Release
  agent: {url: "%s"}
`, PurchaseNumber, e.AgentURL)
}

// SampleYAML is what a platform team would apply: the credentials Secret, the
// TwilioAccount (pointed at the emulator, allowing one purchase; with
// Options.EventSinkURL as its events sink when set) and one
// TwilioPhoneNumber per sample number, each routed to the sample agent.
func (e *Env) SampleYAML() string {
	var b strings.Builder
	fmt.Fprintf(&b, `apiVersion: v1
kind: Secret
metadata: {name: acme-twilio, namespace: default}
stringData: {authToken: %s}
---
apiVersion: twilio.loquent.io/v1alpha1
kind: TwilioAccount
metadata: {name: acme, namespace: default}
spec:
  accountSid: %s
  credentialsSecretRef: {name: acme-twilio}
  apiURL: %s
  purchasing: {enabled: true, maxNumbers: 1, allowRelease: true}
`, AuthToken, AccountSID, e.EmulatorURL)
	if e.opts.EventSinkURL != "" {
		fmt.Fprintf(&b, "  events: {sink: {url: %q}}\n", e.opts.EventSinkURL)
	}
	for _, n := range SampleNumbers {
		fmt.Fprintf(&b, `---
apiVersion: twilio.loquent.io/v1alpha1
kind: TwilioPhoneNumber
metadata: {name: %s, namespace: default}
spec:
  accountRef: {name: acme}
  phoneNumber: "%s"
  agent: {url: "%s"}
`, n.Name, n.E164, e.AgentURL)
		if n.Fallback != "" {
			fmt.Fprintf(&b, "  fallback: %s\n", n.Fallback)
		}
		if n.Messaging {
			b.WriteString("  messaging: Enabled\n")
		}
	}
	return b.String()
}

// sampleNumbersJSON is SampleNumbers in cmd/twiliosim's --numbers-file format.
func sampleNumbersJSON() []byte {
	type spec struct {
		PhoneNumber         string `json:"phoneNumber"`
		FriendlyName        string `json:"friendlyName"`
		VoiceURL            string `json:"voiceUrl,omitempty"`
		VoiceMethod         string `json:"voiceMethod,omitempty"`
		VoiceApplicationSID string `json:"voiceApplicationSid,omitempty"`
		TrunkSID            string `json:"trunkSid,omitempty"`
		SmsURL              string `json:"smsUrl,omitempty"`
	}
	specs := make([]spec, 0, len(SampleNumbers))
	for _, sn := range SampleNumbers {
		n := twiliosim.Number{PhoneNumber: sn.E164, FriendlyName: sn.FriendlyName}
		if sn.Routing != nil {
			sn.Routing(&n)
		}
		specs = append(specs, spec{n.PhoneNumber, n.FriendlyName, n.VoiceURL, n.VoiceMethod, n.VoiceApplicationSID, n.TrunkSID, n.SmsURL})
	}
	data, _ := json.Marshal(specs) // strings only: cannot fail
	return data
}
