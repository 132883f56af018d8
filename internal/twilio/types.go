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
	applyRouting(p, u)
	return p
}

// routingParams is what twilio-go's create and update parameters of an
// IncomingPhoneNumber have in common: a setter per routing field.
type routingParams[P any] interface {
	SetVoiceUrl(string) P
	SetVoiceMethod(string) P
	SetVoiceFallbackUrl(string) P
	SetVoiceFallbackMethod(string) P
	SetStatusCallback(string) P
	SetStatusCallbackMethod(string) P
	SetVoiceApplicationSid(string) P
	SetTrunkSid(string) P
	SetSmsUrl(string) P
	SetSmsMethod(string) P
	SetSmsFallbackUrl(string) P
	SetSmsFallbackMethod(string) P
	SetSmsApplicationSid(string) P
}

// applyRouting sets the non-nil fields of u on p.
func applyRouting[P routingParams[P]](p P, u RoutingUpdate) {
	for _, f := range []struct {
		v   *string
		set func(string) P
	}{
		{u.VoiceURL, p.SetVoiceUrl}, {u.VoiceMethod, p.SetVoiceMethod},
		{u.VoiceFallbackURL, p.SetVoiceFallbackUrl}, {u.VoiceFallbackMethod, p.SetVoiceFallbackMethod},
		{u.StatusCallback, p.SetStatusCallback}, {u.StatusCallbackMethod, p.SetStatusCallbackMethod},
		{u.VoiceApplicationSID, p.SetVoiceApplicationSid}, {u.TrunkSID, p.SetTrunkSid},
		{u.SmsURL, p.SetSmsUrl}, {u.SmsMethod, p.SetSmsMethod},
		{u.SmsFallbackURL, p.SetSmsFallbackUrl}, {u.SmsFallbackMethod, p.SetSmsFallbackMethod},
		{u.SmsApplicationSID, p.SetSmsApplicationSid},
	} {
		if f.v != nil {
			f.set(*f.v)
		}
	}
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
