package twilio

import (
	openapi "github.com/twilio/twilio-go/rest/api/v2010"
)

// Routing is a number's complete inbound routing. For calls Twilio uses the
// first of TrunkSID, VoiceApplicationSID and VoiceURL that is set; for
// messages SmsApplicationSID before SmsURL, unless the number is in a
// Messaging Service that overrides both (see MessagingService).
type Routing struct {
	VoiceURL             string
	VoiceMethod          string
	VoiceFallbackURL     string
	VoiceFallbackMethod  string
	StatusCallback       string
	StatusCallbackMethod string
	VoiceApplicationSID  string
	TrunkSID             string
	SmsURL               string
	SmsMethod            string
	SmsFallbackURL       string
	SmsFallbackMethod    string
	SmsApplicationSID    string
}

// Number is what the operator reads of an IncomingPhoneNumber.
type Number struct {
	SID          string
	PhoneNumber  string
	FriendlyName string
	Routing      Routing
}

// AccountInfo is what the operator reads of an account.
type AccountInfo struct {
	SID          string
	FriendlyName string
	Type         string
	Status       string
}

// RoutingUpdate lists the routing fields to write. A nil field is left as it
// is in Twilio; a pointer to "" is sent as an explicit empty value, which
// clears the field.
type RoutingUpdate struct {
	VoiceURL             *string
	VoiceMethod          *string
	VoiceFallbackURL     *string
	VoiceFallbackMethod  *string
	StatusCallback       *string
	StatusCallbackMethod *string
	VoiceApplicationSID  *string
	TrunkSID             *string
	SmsURL               *string
	SmsMethod            *string
	SmsFallbackURL       *string
	SmsFallbackMethod    *string
	SmsApplicationSID    *string
}

// Empty reports whether the update writes nothing.
func (u RoutingUpdate) Empty() bool {
	return u == RoutingUpdate{}
}

func str(p *string) string {
	if p == nil {
		return ""
	}
	return *p
}

func numberFrom(p *openapi.ApiV2010IncomingPhoneNumber) Number {
	return Number{
		SID:          str(p.Sid),
		PhoneNumber:  str(p.PhoneNumber),
		FriendlyName: str(p.FriendlyName),
		Routing: Routing{
			VoiceURL:             str(p.VoiceUrl),
			VoiceMethod:          str(p.VoiceMethod),
			VoiceFallbackURL:     str(p.VoiceFallbackUrl),
			VoiceFallbackMethod:  str(p.VoiceFallbackMethod),
			StatusCallback:       str(p.StatusCallback),
			StatusCallbackMethod: str(p.StatusCallbackMethod),
			VoiceApplicationSID:  str(p.VoiceApplicationSid),
			TrunkSID:             str(p.TrunkSid),
			SmsURL:               str(p.SmsUrl),
			SmsMethod:            str(p.SmsMethod),
			SmsFallbackURL:       str(p.SmsFallbackUrl),
			SmsFallbackMethod:    str(p.SmsFallbackMethod),
			SmsApplicationSID:    str(p.SmsApplicationSid),
		},
	}
}

func updateParams(accountSID string, u RoutingUpdate) *openapi.UpdateIncomingPhoneNumberParams {
	p := &openapi.UpdateIncomingPhoneNumberParams{}
	// The path account selects the owner. Never SetAccountSid: in the body it
	// transfers the number to another account.
	p.SetPathAccountSid(accountSID)
	set := func(v *string, f func(string) *openapi.UpdateIncomingPhoneNumberParams) {
		if v != nil {
			f(*v)
		}
	}
	set(u.VoiceURL, p.SetVoiceUrl)
	set(u.VoiceMethod, p.SetVoiceMethod)
	set(u.VoiceFallbackURL, p.SetVoiceFallbackUrl)
	set(u.VoiceFallbackMethod, p.SetVoiceFallbackMethod)
	set(u.StatusCallback, p.SetStatusCallback)
	set(u.StatusCallbackMethod, p.SetStatusCallbackMethod)
	set(u.VoiceApplicationSID, p.SetVoiceApplicationSid)
	set(u.TrunkSID, p.SetTrunkSid)
	set(u.SmsURL, p.SetSmsUrl)
	set(u.SmsMethod, p.SetSmsMethod)
	set(u.SmsFallbackURL, p.SetSmsFallbackUrl)
	set(u.SmsFallbackMethod, p.SetSmsFallbackMethod)
	set(u.SmsApplicationSID, p.SetSmsApplicationSid)
	return p
}

// MessagingService is a Messaging Service of the account and the numbers in
// its sender pool. Unless UseInboundWebhookOnNumber is set, its inbound
// settings override the SMS routing of those numbers.
type MessagingService struct {
	SID                       string
	FriendlyName              string
	InboundRequestURL         string
	UseInboundWebhookOnNumber bool
	// PhoneNumbers are the E.164 numbers in the sender pool.
	PhoneNumbers []string
}
