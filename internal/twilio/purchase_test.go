package twilio

import (
	"context"
	"errors"
	"net/http"
	"testing"

	"github.com/loquent/twilio-voice-operator/internal/twiliosim"
)

// startSim runs the Twilio emulator with the test account and returns it
// and a client of that account talking to it over HTTP.
func startSim(t *testing.T) (*twiliosim.Server, *REST) {
	t.Helper()
	sim := twiliosim.New()
	sim.AddAccount(twiliosim.Account{SID: acct, AuthToken: token})
	base, err := sim.Start("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sim.Close() })
	return sim, newClient(t, base, nil)
}

func phones(nums []AvailableNumber) []string {
	out := make([]string, 0, len(nums))
	for _, n := range nums {
		out = append(out, n.PhoneNumber)
	}
	return out
}

func equal(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestAvailableNumbersSearch(t *testing.T) {
	sim, c := startSim(t)
	ctx := context.Background()
	sim.AddAvailable(twiliosim.AvailableNumber{PhoneNumber: "+14155550123", Locality: "San Francisco", Region: "CA", PostalCode: "94105"})
	sim.AddAvailable(twiliosim.AvailableNumber{PhoneNumber: "+14155557867", Locality: "Oakland", Region: "CA", Capabilities: &twiliosim.Capabilities{Voice: true}})
	sim.AddAvailable(twiliosim.AvailableNumber{PhoneNumber: "+12125550142", Locality: "New York", Region: "NY"})
	sim.AddAvailable(twiliosim.AvailableNumber{PhoneNumber: "+18005550100", Type: twiliosim.NumberTypeTollFree})
	no := false

	for _, tc := range []struct {
		q    AvailableQuery
		want []string
	}{
		{AvailableQuery{Country: "US"}, []string{"+14155550123", "+14155557867", "+12125550142"}},
		{AvailableQuery{Country: "US", AreaCode: "415"}, []string{"+14155550123", "+14155557867"}},
		{AvailableQuery{Country: "US", Contains: "STOP"}, []string{"+14155557867"}},
		{AvailableQuery{Country: "US", InRegion: "NY"}, []string{"+12125550142"}},
		{AvailableQuery{Country: "US", InLocality: "Oakland"}, []string{"+14155557867"}},
		{AvailableQuery{Country: "US", InPostalCode: "94105"}, []string{"+14155550123"}},
		{AvailableQuery{Country: "US", SmsEnabled: &no}, []string{"+14155557867"}},
		{AvailableQuery{Country: "US", Limit: 2}, []string{"+14155550123", "+14155557867"}},
		{AvailableQuery{Country: "US", Type: NumberTypeTollFree}, []string{"+18005550100"}},
		{AvailableQuery{Country: "GB", Type: NumberTypeMobile}, []string{}},
	} {
		sim.ResetRequests()
		got, err := c.AvailableNumbers(ctx, tc.q)
		if err != nil {
			t.Fatalf("%+v: %v", tc.q, err)
		}
		if !equal(phones(got), tc.want) {
			t.Errorf("%+v: got %v, want %v", tc.q, phones(got), tc.want)
		}
		if n := sim.CountRequests(twiliosim.KindListAvailable); n != 1 {
			t.Errorf("%+v: %d searches, want one request", tc.q, n)
		}
	}

	got, err := c.AvailableNumbers(ctx, AvailableQuery{Country: "US", InPostalCode: "94105"})
	if err != nil || len(got) != 1 {
		t.Fatalf("got %v, %v", got, err)
	}
	want := AvailableNumber{PhoneNumber: "+14155550123", FriendlyName: "(415) 555-0123", Locality: "San Francisco", Region: "CA",
		PostalCode: "94105", Country: "US", AddressRequirements: "none", Capabilities: Capabilities{Voice: true, SMS: true, MMS: true}}
	if got[0] != want {
		t.Errorf("decoded %+v, want %+v", got[0], want)
	}
	if r := sim.Requests()[len(sim.Requests())-1]; r.AccountSID != acct || r.Query.Get("InPostalCode") != "94105" {
		t.Errorf("request %s %v", r.Path, r.Query)
	}
}

// A query the client can see is wrong is refused without a request, and
// an unknown country is Twilio's 404.
func TestAvailableNumbersRefusals(t *testing.T) {
	sim, c := startSim(t)
	ctx := context.Background()
	for _, q := range []AvailableQuery{{Country: "USA"}, {Country: "US", Type: "Voip"}, {Country: "US", AreaCode: "41"}, {Country: "US", Limit: -1}} {
		if _, err := c.AvailableNumbers(ctx, q); err == nil {
			t.Errorf("%+v accepted", q)
		}
	}
	if n := len(sim.Requests()); n != 0 {
		t.Errorf("%d requests for invalid queries", n)
	}
	_, err := c.AvailableNumbers(ctx, AvailableQuery{Country: "XX"})
	if !IsNotFound(err) || ClassOf(err) != ClassTerminal {
		t.Errorf("unknown country: %v (%v)", err, ClassOf(err))
	}
}

func TestBuyNumberRoutesInThePurchase(t *testing.T) {
	sim, c := startSim(t)
	sim.AddAvailable(twiliosim.AvailableNumber{PhoneNumber: "+14155550123"})
	voice, status, get := "https://voice.example.com/twilio/voice", "https://voice.example.com/twilio/status", "GET"

	n, err := c.BuyNumber(context.Background(), "+14155550123", "Front desk", RoutingUpdate{VoiceURL: &voice, VoiceMethod: &get, StatusCallback: &status})
	if err != nil {
		t.Fatal(err)
	}
	if n.PhoneNumber != "+14155550123" || n.SID == "" || n.FriendlyName != "Front desk" ||
		n.Routing.VoiceURL != voice || n.Routing.VoiceMethod != get || n.Routing.StatusCallback != status {
		t.Errorf("bought %+v", n)
	}
	stored, ok := sim.NumberByPhone("+14155550123")
	if !ok || stored.AccountSID != acct || stored.VoiceURL != voice {
		t.Errorf("emulator has %+v, %v", stored, ok)
	}
	reqs := sim.Requests()
	if len(reqs) != 1 || reqs[0].Kind != twiliosim.KindCreateNumber || reqs[0].AccountSID != acct {
		t.Fatalf("requests %+v", reqs)
	}
	form := reqs[0].Form
	if form.Has("AccountSid") || form.Has("VoiceFallbackUrl") || form.Has("TrunkSid") || form.Get("VoiceUrl") != voice {
		t.Errorf("create form %v: want the routing set, no body AccountSid, no nil field", form)
	}
}

func TestBuyNumberUnavailable(t *testing.T) {
	sim, c := startSim(t)
	sim.AddAvailable(twiliosim.AvailableNumber{PhoneNumber: "+14155550123"})
	ctx := context.Background()
	if _, err := c.BuyNumber(ctx, "+14155550123", "", RoutingUpdate{}); err != nil {
		t.Fatal(err)
	}
	_, err := c.BuyNumber(ctx, "+14155550123", "", RoutingUpdate{})
	if !errors.Is(err, ErrNumberUnavailable) || ClassOf(err) != ClassTerminal {
		t.Errorf("buying a bought number: %v (%v), want ErrNumberUnavailable, Terminal", err, ClassOf(err))
	}
	_, err = c.BuyNumber(ctx, "4155550123", "", RoutingUpdate{})
	if err == nil || errors.Is(err, ErrNumberUnavailable) {
		t.Errorf("an invalid number: %v, want an error other than ErrNumberUnavailable", err)
	}
}

// A purchase is retried after a 429 (refused unprocessed) and after
// nothing else: a 5xx, a reset or a lost answer may hide a purchase.
func TestBuyNumberRetriesOnlyTooManyRequests(t *testing.T) {
	sim, c := startSim(t)
	ctx := context.Background()
	for _, e164 := range []string{"+14155550101", "+14155550102", "+14155550103", "+14155550104"} {
		sim.AddAvailable(twiliosim.AvailableNumber{PhoneNumber: e164})
	}
	creates := func(r twiliosim.Request) bool { return r.Kind == twiliosim.KindCreateNumber }

	sim.FailNext(creates, twiliosim.Fault{Status: http.StatusTooManyRequests, Code: 20429}, 1)
	if _, err := c.BuyNumber(ctx, "+14155550101", "", RoutingUpdate{}); err != nil {
		t.Errorf("after a 429: %v", err)
	}
	if n := sim.CountRequests(twiliosim.KindCreateNumber); n != 2 {
		t.Errorf("%d create requests after a 429, want 2", n)
	}

	for _, tc := range []struct {
		e164   string
		fault  twiliosim.Fault
		bought bool
	}{
		{"+14155550102", twiliosim.Fault{Status: http.StatusInternalServerError}, false},
		{"+14155550103", twiliosim.Fault{Reset: true}, false},
		{"+14155550104", twiliosim.Fault{LoseAnswer: true}, true},
	} {
		sim.ResetRequests()
		sim.FailNext(creates, tc.fault, 1)
		_, err := c.BuyNumber(ctx, tc.e164, "", RoutingUpdate{})
		if err == nil || ClassOf(err) != ClassTransient {
			t.Errorf("%+v: %v (%v), want a Transient error", tc.fault, err, ClassOf(err))
		}
		if n := sim.CountRequests(twiliosim.KindCreateNumber); n != 1 {
			t.Errorf("%+v: %d create requests, want exactly 1", tc.fault, n)
		}
		_, findErr := c.FindNumber(ctx, tc.e164)
		if (findErr == nil) != tc.bought {
			t.Errorf("%+v: looking the number up: %v, want bought=%v", tc.fault, findErr, tc.bought)
		}
	}
}

func TestReleaseNumber(t *testing.T) {
	sim, c := startSim(t)
	sim.AddAvailable(twiliosim.AvailableNumber{PhoneNumber: "+14155550123"})
	ctx := context.Background()
	n, err := c.BuyNumber(ctx, "+14155550123", "", RoutingUpdate{})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.ReleaseNumber(ctx, n.SID); err != nil {
		t.Fatal(err)
	}
	if _, ok := sim.Number(n.SID); ok {
		t.Error("released number still in the account")
	}
	if r := sim.Requests()[1]; r.Method != http.MethodDelete || r.AccountSID != acct || r.NumberSID != n.SID {
		t.Errorf("release request %s %s", r.Method, r.Path)
	}
	if err := c.ReleaseNumber(ctx, n.SID); !IsNotFound(err) {
		t.Errorf("releasing again: %v, want not found", err)
	}
}
