package twilio

import (
	"context"
	"testing"

	"github.com/loquent/twilio-voice-operator/internal/twiliosim"
)

// TestSMSRoutingRoundTripsAndServicesAreListed writes every SMS routing field
// through twilio-go and reads it back, clears the SMS application with an
// explicit empty value, and lists Messaging Services with their numbers, all
// against the emulator over HTTP.
func TestSMSRoutingRoundTripsAndServicesAreListed(t *testing.T) {
	sim, c := startSim(t)
	ctx := context.Background()
	n := sim.AddNumber(twiliosim.Number{AccountSID: acct, PhoneNumber: "+14155550100", SmsApplicationSID: "AP" + "0123456789abcdef0123456789abcdef"})
	url, get, fb := "https://sms.example.com/in", "GET", "https://sms.example.com/fallback"
	got, err := c.UpdateRouting(ctx, n.SID, RoutingUpdate{SmsURL: &url, SmsMethod: &get, SmsFallbackURL: &fb, SmsFallbackMethod: &get, SmsApplicationSID: ptrTo("")})
	if err != nil {
		t.Fatal(err)
	}
	want := Routing{SmsURL: url, SmsMethod: "GET", SmsFallbackURL: fb, SmsFallbackMethod: "GET"}
	r := got.Routing
	if (Routing{SmsURL: r.SmsURL, SmsMethod: r.SmsMethod, SmsFallbackURL: r.SmsFallbackURL, SmsFallbackMethod: r.SmsFallbackMethod, SmsApplicationSID: r.SmsApplicationSID}) != want {
		t.Fatalf("SMS routing after the update: %+v, want %+v", r, want)
	}
	if eff, _, _, _ := sim.EffectiveSmsURL(n.PhoneNumber); eff != url {
		t.Fatalf("Twilio would send SMS to %q, want %q", eff, url)
	}

	other := sim.AddNumber(twiliosim.Number{AccountSID: acct, PhoneNumber: "+14155550101"})
	override := sim.AddMessagingService(twiliosim.MessagingService{AccountSID: acct, FriendlyName: "Support", InboundRequestURL: "https://svc.example.com/in", NumberSIDs: []string{n.SID}})
	sim.AddMessagingService(twiliosim.MessagingService{AccountSID: acct, FriendlyName: "Defers", UseInboundWebhookOnNumber: true, NumberSIDs: []string{other.SID}})
	for range 60 { // more than the default page of 50
		sim.AddMessagingService(twiliosim.MessagingService{AccountSID: acct, FriendlyName: "empty"})
	}
	if eff, _, _, _ := sim.EffectiveSmsURL(n.PhoneNumber); eff != "https://svc.example.com/in" {
		t.Fatalf("a Messaging Service overrides the number's SmsUrl: got %q", eff)
	}
	services, err := c.MessagingServices(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(services) != 62 {
		t.Fatalf("listed %d services, want 62", len(services))
	}
	byName := map[string]MessagingService{}
	for _, s := range services {
		byName[s.FriendlyName] = s
	}
	if s := byName["Support"]; s.SID != override.SID || s.UseInboundWebhookOnNumber || len(s.PhoneNumbers) != 1 || s.PhoneNumbers[0] != n.PhoneNumber {
		t.Fatalf("Support service: %+v", s)
	}
	if s := byName["Defers"]; !s.UseInboundWebhookOnNumber || len(s.PhoneNumbers) != 1 || s.PhoneNumbers[0] != other.PhoneNumber {
		t.Fatalf("Defers service: %+v", s)
	}
}

func ptrTo[T any](v T) *T { return &v }
