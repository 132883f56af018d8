package twilio

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

const (
	acct  = "AC0123456789abcdef0123456789abcdef"
	token = "tok3n"
	pn    = "PN0123456789abcdef0123456789abcdef"
)

// wire records what reached an httptest server standing in for Twilio, to
// check the adapter's wire format. Behaviour against a faithful Twilio lives
// in the emulator-backed suites.
type wire struct {
	mu   sync.Mutex
	reqs []recorded
}

type recorded struct {
	method, path, user, pass string
	query, form              url.Values
}

func (w *wire) server(t *testing.T, answer func(w http.ResponseWriter, r *http.Request)) *httptest.Server {
	t.Helper()
	ts := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		form, _ := url.ParseQuery(string(body))
		u, p, _ := r.BasicAuth()
		w.mu.Lock()
		w.reqs = append(w.reqs, recorded{r.Method, r.URL.Path, u, p, r.URL.Query(), form})
		w.mu.Unlock()
		answer(rw, r)
	}))
	t.Cleanup(ts.Close)
	return ts
}

func (w *wire) all() []recorded {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]recorded(nil), w.reqs...)
}

func jsonAnswer(status int, v any) func(http.ResponseWriter, *http.Request) {
	return func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		_ = json.NewEncoder(w).Encode(v)
	}
}

func numberJSON(voiceURL any) map[string]any {
	return map[string]any{"sid": pn, "account_sid": acct, "phone_number": "+14155550100", "friendly_name": "Support",
		"voice_url": voiceURL, "voice_method": "POST", "voice_application_sid": "", "trunk_sid": nil}
}

func newClient(t *testing.T, base string, mutate func(*Config)) *REST {
	t.Helper()
	cfg := Config{AccountSID: acct, Username: acct, Password: token, APIURL: base}
	if mutate != nil {
		mutate(&cfg)
	}
	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	c.backoff = func(int) time.Duration { return time.Millisecond }
	return c
}

func TestUpdateRoutingWireFormat(t *testing.T) {
	var w wire
	ts := w.server(t, jsonAnswer(200, numberJSON("")))
	c := newClient(t, ts.URL, nil)
	empty, url := "", "https://voice.example.com/twilio/voice"
	n, err := c.UpdateRouting(context.Background(), pn, RoutingUpdate{VoiceURL: &url, VoiceApplicationSID: &empty})
	if err != nil {
		t.Fatal(err)
	}
	if n.SID != pn || n.Routing.VoiceURL != "" {
		t.Errorf("decoded %+v", n)
	}
	reqs := w.all()
	if len(reqs) != 1 {
		t.Fatalf("%d requests, want 1", len(reqs))
	}
	r := reqs[0]
	if r.method != http.MethodPost || r.path != "/2010-04-01/Accounts/"+acct+"/IncomingPhoneNumbers/"+pn+".json" {
		t.Errorf("request %s %s", r.method, r.path)
	}
	if r.user != acct || r.pass != token {
		t.Errorf("basic auth %q", r.user)
	}
	if r.form.Has("AccountSid") {
		t.Errorf("body carries AccountSid (that transfers the number): %v", r.form)
	}
	if got := r.form.Get("VoiceUrl"); got != url {
		t.Errorf("VoiceUrl = %q", got)
	}
	if !r.form.Has("VoiceApplicationSid") || r.form.Get("VoiceApplicationSid") != "" {
		t.Errorf("an explicit empty VoiceApplicationSid must be sent to clear it: %v", r.form)
	}
	for _, absent := range []string{"TrunkSid", "VoiceFallbackUrl", "StatusCallback", "VoiceMethod"} {
		if r.form.Has(absent) {
			t.Errorf("nil field %s was sent: %v", absent, r.form)
		}
	}
}

func TestAPIKeyCredentialsUseAccountPath(t *testing.T) {
	var w wire
	ts := w.server(t, jsonAnswer(200, map[string]any{"sid": acct, "friendly_name": "Prod", "type": "Full", "status": "active"}))
	c := newClient(t, ts.URL, func(cfg *Config) { cfg.Username, cfg.Password = "SK0123456789abcdef0123456789abcdef", "keySecret" })
	info, err := c.VerifyAccount(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if info.FriendlyName != "Prod" || info.Type != "Full" || info.Status != "active" {
		t.Errorf("info %+v", info)
	}
	r := w.all()[0]
	if r.user != "SK0123456789abcdef0123456789abcdef" || r.path != "/2010-04-01/Accounts/"+acct+".json" {
		t.Errorf("user %q path %q", r.user, r.path)
	}
}

func TestFindNumberComparesExactly(t *testing.T) {
	var w wire
	// Twilio's PhoneNumber filter matches partial numbers: the answer may hold others.
	other := numberJSON("x")
	other["phone_number"] = "+141555501001"
	ts := w.server(t, jsonAnswer(200, map[string]any{"incoming_phone_numbers": []any{other}, "next_page_uri": nil}))
	c := newClient(t, ts.URL, nil)
	_, err := c.FindNumber(context.Background(), "+14155550100")
	if !errors.Is(err, ErrNumberNotFound) || !IsNotFound(err) {
		t.Fatalf("err = %v, want ErrNumberNotFound", err)
	}
	q := w.all()[0].query
	if q.Get("PhoneNumber") != "+14155550100" || q.Get("PageSize") != "1000" {
		t.Errorf("query %v", q)
	}
}

func TestErrorClasses(t *testing.T) {
	tests := []struct {
		name      string
		status    int
		body      any
		class     Class
		auth, nf  bool
		wantCalls int
	}{
		{"401 bad credentials", 401, map[string]any{"code": 20003, "message": "Authenticate", "status": 401}, ClassTerminal, true, false, 1},
		{"404 not found", 404, map[string]any{"code": 20404, "message": "not found", "status": 404}, ClassTerminal, false, true, 1},
		{"400 invalid", 400, map[string]any{"code": 21502, "message": "Invalid url", "status": 400}, ClassTerminal, false, false, 1},
		{"429 retried then wait", 429, map[string]any{"code": 20429, "message": "Too Many Requests", "status": 429}, ClassWait, false, false, 3},
		{"500", 500, map[string]any{"code": 20500, "message": "Internal", "status": 500}, ClassTransient, false, false, 1},
		{"502 html", 502, "<html>bad gateway</html>", ClassTransient, false, false, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var w wire
			ts := w.server(t, jsonAnswer(tt.status, tt.body))
			c := newClient(t, ts.URL, func(cfg *Config) { cfg.MaxRetries = 2 })
			_, err := c.FetchNumber(context.Background(), pn)
			if err == nil {
				t.Fatal("no error")
			}
			if got := ClassOf(err); got != tt.class {
				t.Errorf("class %v, want %v (%v)", got, tt.class, err)
			}
			if IsAuth(err) != tt.auth || IsNotFound(err) != tt.nf {
				t.Errorf("IsAuth %v IsNotFound %v", IsAuth(err), IsNotFound(err))
			}
			if n := len(w.all()); n != tt.wantCalls {
				t.Errorf("%d calls, want %d", n, tt.wantCalls)
			}
		})
	}
}

func TestUnusableTokenIsTerminalWithoutRequest(t *testing.T) {
	var w wire
	ts := w.server(t, jsonAnswer(200, numberJSON(nil)))
	c := newClient(t, ts.URL, func(cfg *Config) { cfg.Password = "tok-en" })
	_, err := c.FetchNumber(context.Background(), pn)
	if !IsAuth(err) || ClassOf(err) != ClassTerminal {
		t.Fatalf("err %v: want terminal auth error", err)
	}
	if len(w.all()) != 0 {
		t.Error("a request was sent with unusable credentials")
	}
}

func TestConcurrencyBudgetAndContext(t *testing.T) {
	var inFlight, peak atomic.Int32
	release := make(chan struct{})
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := inFlight.Add(1)
		for {
			p := peak.Load()
			if n <= p || peak.CompareAndSwap(p, n) {
				break
			}
		}
		select {
		case <-release:
		case <-r.Context().Done():
		}
		inFlight.Add(-1)
		jsonAnswer(200, numberJSON(nil))(w, r)
	}))
	defer ts.Close()
	c := newClient(t, ts.URL, func(cfg *Config) { cfg.MaxConcurrent = 2 })

	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	errs := make(chan error, 5)
	for range 5 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := c.FetchNumber(ctx, pn)
			errs <- err
		}()
	}
	for inFlight.Load() < 2 {
		time.Sleep(time.Millisecond)
	}
	cancel() // every call, running or queued, must return
	wg.Wait()
	close(release)
	close(errs)
	for err := range errs {
		if err == nil || ClassOf(err) != ClassTransient {
			t.Errorf("err %v after cancel", err)
		}
	}
	if p := peak.Load(); p != 2 {
		t.Errorf("peak in-flight %d, want the budget of 2", p)
	}
}

func TestInventoryListsOncePerInterval(t *testing.T) {
	var w wire
	ts := w.server(t, jsonAnswer(200, map[string]any{"incoming_phone_numbers": []any{numberJSON("https://a")}, "next_page_uri": nil}))
	inv := NewInventory(newClient(t, ts.URL, nil))
	now := time.Unix(1000, 0)
	inv.now = func() time.Time { return now }

	var wg sync.WaitGroup
	for range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, found, err := inv.Lookup(context.Background(), "+14155550100", time.Minute); err != nil || !found {
				t.Errorf("lookup: found %v err %v", found, err)
			}
		}()
	}
	wg.Wait()
	if n := len(w.all()); n != 1 {
		t.Fatalf("%d list calls for 20 concurrent lookups, want 1", n)
	}
	inv.Record(Number{SID: pn, PhoneNumber: "+14155550100", Routing: Routing{VoiceURL: "https://b"}})
	n, _, _ := inv.Lookup(context.Background(), "+14155550100", time.Minute)
	if n.Routing.VoiceURL != "https://b" {
		t.Errorf("recorded write not reflected: %q", n.Routing.VoiceURL)
	}
	now = now.Add(2 * time.Minute)
	if c, err := inv.Count(context.Background(), time.Minute); err != nil || c != 1 {
		t.Errorf("count %d err %v", c, err)
	}
	if n := len(w.all()); n != 2 {
		t.Errorf("%d list calls after the interval, want 2", n)
	}
}

// A write recorded while a list is in flight must survive that list, which
// may carry the state from before the write.
func TestInventoryKeepsWritesNewerThanTheList(t *testing.T) {
	listing := make(chan struct{})
	release := make(chan struct{})
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(listing)
		<-release
		jsonAnswer(200, map[string]any{"incoming_phone_numbers": []any{numberJSON("https://before-our-write")}, "next_page_uri": nil})(w, r)
	}))
	defer ts.Close()
	inv := NewInventory(newClient(t, ts.URL, nil))
	done := make(chan struct{})
	go func() {
		defer close(done)
		_, _ = inv.Count(context.Background(), time.Minute)
	}()
	<-listing
	inv.Record(Number{SID: pn, PhoneNumber: "+14155550100", Routing: Routing{VoiceURL: "https://ours"}})
	close(release)
	<-done
	n, found, err := inv.Lookup(context.Background(), "+14155550100", time.Minute)
	if err != nil || !found || n.Routing.VoiceURL != "https://ours" {
		t.Fatalf("after the list: %+v found=%v err=%v; the recorded write was lost", n.Routing, found, err)
	}
}
